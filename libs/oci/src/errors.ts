/**
 * Structured registry errors, classified as temporary (retry later) or permanent.
 *
 * One class, {@link RegistryError}, carries the HTTP status, the registry's error codes
 * (OCI distribution spec, "Error Codes"), the reference and the operation. A few tiny subclasses
 * name content failures so callers can test `instanceof`. {@link isTemporary} is the single
 * classification the job queue uses to decide between retrying and failing for good.
 *
 * No error made here carries request or response headers, or a `cause` that could: credentials
 * never leave the client through an error.
 */

/** Error codes defined by the OCI distribution spec, plus the ones distribution adds. */
export type RegistryErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | (string & {});

export interface RegistryErrorOptions {
  /** HTTP status of the response, when the failure came from one. */
  status?: number;
  /** `errors[].code` values of the registry's error body. */
  codes?: readonly string[];
  /** The reference, repository or blob the operation was about (never a URL with a query). */
  reference: string;
  /** What the client was doing, e.g. "get manifest", "fetch blob", "push blob". */
  operation: string;
  /** Whether retrying later may succeed. Defaults from the status and codes. */
  temporary?: boolean;
  /** The underlying error. Never pass anything that holds headers or credentials. */
  cause?: unknown;
}

/** HTTP statuses worth retrying: request timeout, too many requests, and every 5xx. */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

/** A failed registry operation. `message` names the operation and the reference. */
export class RegistryError extends Error {
  override name = 'RegistryError';
  readonly status: number | undefined;
  readonly codes: readonly RegistryErrorCode[];
  readonly reference: string;
  readonly operation: string;
  readonly temporary: boolean;

  constructor(message: string, options: RegistryErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = options.status;
    this.codes = options.codes ?? [];
    this.reference = options.reference;
    this.operation = options.operation;
    this.temporary =
      options.temporary ??
      ((options.status !== undefined && isRetryableStatus(options.status)) ||
        this.codes.includes('TOOMANYREQUESTS'));
  }
}

/** Content whose digest is not the one asked for. Permanent: the bytes will not change. */
export class DigestMismatchError extends RegistryError {
  override name = 'DigestMismatchError';
  readonly expected: string;
  readonly actual: string;

  constructor(options: { reference: string; operation: string; expected: string; actual: string }) {
    super(
      `${options.operation} ${options.reference}: digest mismatch, expected ${options.expected}, got ${options.actual}`,
      { reference: options.reference, operation: options.operation, temporary: false },
    );
    this.expected = options.expected;
    this.actual = options.actual;
  }
}

/**
 * Content whose length is not the one announced. A body cut short is temporary (the transfer broke);
 * a body longer than the descriptor's size, or a server announcing another size, is permanent.
 */
export class SizeMismatchError extends RegistryError {
  override name = 'SizeMismatchError';
  readonly expected: number;
  readonly actual: number;

  constructor(options: {
    reference: string;
    operation: string;
    expected: number;
    actual: number;
    detail: string;
    temporary: boolean;
    cause?: unknown;
  }) {
    super(`${options.operation} ${options.reference}: ${options.detail}`, {
      reference: options.reference,
      operation: options.operation,
      temporary: options.temporary,
      cause: options.cause,
    });
    this.expected = options.expected;
    this.actual = options.actual;
  }
}

/** A manifest body above the limit the client reads. Permanent. */
export class ManifestTooLargeError extends RegistryError {
  override name = 'ManifestTooLargeError';
  readonly limit: number;

  constructor(options: { reference: string; limit: number; size: number | undefined }) {
    const got = options.size === undefined ? 'more' : String(options.size);
    super(
      `get manifest ${options.reference}: manifest too large, ${got} bytes exceeds the limit of ${options.limit}`,
      { reference: options.reference, operation: 'get manifest', temporary: false },
    );
    this.limit = options.limit;
  }
}

/**
 * A manifest the client cannot use: Docker schema 1, an unknown manifest type, an unknown layer
 * type. Wraps the parser's `UnsupportedMediaTypeError` (media-types.ts) as a permanent
 * {@link RegistryError} naming the reference. Permanent.
 */
export class UnsupportedManifestTypeError extends RegistryError {
  override name = 'UnsupportedManifestTypeError';
  readonly mediaType: string;

  constructor(options: { reference: string; operation: string; mediaType: string; cause?: unknown }) {
    super(`${options.operation} ${options.reference}: unsupported media type "${options.mediaType}"`, {
      reference: options.reference,
      operation: options.operation,
      temporary: false,
      cause: options.cause,
    });
    this.mediaType = options.mediaType;
  }
}

/**
 * Error codes of Node and undici for connections that broke or timed out: worth retrying.
 * Refused connections are included: a registry restarting behind a load balancer refuses briefly.
 */
const TEMPORARY_NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
  // A body shorter than its Content-Length: the transfer broke.
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** Causes followed at most, against cycles. */
const MAX_CAUSE_DEPTH = 8;

/**
 * Whether retrying the operation later may succeed: a temporary {@link RegistryError}, or a broken
 * or timed-out connection anywhere in the `cause` chain. Aborts are never temporary: someone asked
 * to stop.
 */
export function isTemporary(err: unknown): boolean {
  let current: unknown = err;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && current instanceof Error; depth++) {
    if (current.name === 'AbortError') return false;
    if (current instanceof RegistryError) return current.temporary;
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && TEMPORARY_NETWORK_CODES.has(code)) return true;
    current = current.cause;
  }
  return false;
}

/** Error body bytes read at most: enough for any registry's JSON errors, bounded against abuse. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;

/** Longest registry error message quoted in our messages. */
const MAX_QUOTED_MESSAGE = 200;

/**
 * Parses a registry error body (`{"errors":[{"code","message","detail"}]}`). Anything else gives no
 * codes and no message: bodies of proxies and load balancers are HTML.
 */
export function parseErrorBody(body: Uint8Array): { codes: string[]; message: string | undefined } {
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    // Not JSON (an HTML error page, a truncated body): the status alone describes the failure.
    return { codes: [], message: undefined };
  }
  const errors = (json as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors)) return { codes: [], message: undefined };
  const codes: string[] = [];
  const messages: string[] = [];
  for (const e of errors as unknown[]) {
    if (typeof e !== 'object' || e === null) continue;
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (typeof code === 'string') codes.push(code);
    if (typeof message === 'string' && message !== '') messages.push(message);
  }
  const joined = messages.join('; ');
  return {
    codes,
    message: joined === '' ? undefined : joined.slice(0, MAX_QUOTED_MESSAGE),
  };
}
