/**
 * The registry client's HTTP layer: one request with retries (408, 429, 5xx, broken or timed-out
 * connections; exponential backoff with full jitter; `Retry-After` honoured), capped body reads,
 * and structured errors from responses.
 *
 * Nothing here logs or throws URLs with their query (presigned redirect URLs carry signatures) or
 * headers (they carry Authorization).
 */
import type { Readable } from 'node:stream';
import { request, type Dispatcher } from 'undici';
import {
  isRetryableStatus,
  isTemporary,
  MAX_ERROR_BODY_BYTES,
  parseErrorBody,
  RegistryError,
} from './errors.ts';
import { DEFAULT_RETRY_POLICY, parseRetryAfter, retryDelay, sleep, type RetryPolicy } from './retry.ts';

/** Optional sink for the client's diagnostics. Messages never contain credentials or signed URLs. */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** Shared settings of every request a client makes. */
export interface HttpContext {
  dispatcher: Dispatcher | undefined;
  userAgent: string;
  retry: RetryPolicy;
  logger: Logger | undefined;
  /** Time to wait for response headers. */
  headersTimeoutMs: number;
  /** Longest silence while reading a body. */
  bodyTimeoutMs: number;
  random: () => number;
}

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
export type Response = Dispatcher.ResponseData;
/** A request body, made afresh for every attempt (a stream cannot be replayed). */
export type BodyFactory = () => Uint8Array | string | Readable;

export interface HttpRequest {
  url: URL;
  method: HttpMethod;
  headers?: Record<string, string>;
  body?: BodyFactory;
  signal?: AbortSignal | undefined;
  /** Names the thing in errors and logs, e.g. `localhost:5000/repo:tag`. */
  reference: string;
  /** Names the operation in errors and logs, e.g. `get manifest`. */
  operation: string;
  /** False to try once (the caller retries at a higher level). Default true. */
  retry?: boolean;
}

export interface HttpResult {
  response: Response;
  /** Attempts made, the last included. */
  attempts: number;
}

export const DEFAULT_HTTP_TIMEOUTS = Object.freeze({ headersTimeoutMs: 30_000, bodyTimeoutMs: 60_000 });

export function makeHttpContext(options: {
  dispatcher?: Dispatcher | undefined;
  userAgent?: string | undefined;
  retry?: Partial<RetryPolicy> | undefined;
  logger?: Logger | undefined;
  headersTimeoutMs?: number | undefined;
  bodyTimeoutMs?: number | undefined;
  random?: (() => number) | undefined;
}): HttpContext {
  return {
    dispatcher: options.dispatcher,
    userAgent: options.userAgent ?? 'stevedore/0.1',
    retry: { ...DEFAULT_RETRY_POLICY, ...options.retry },
    logger: options.logger,
    headersTimeoutMs: options.headersTimeoutMs ?? DEFAULT_HTTP_TIMEOUTS.headersTimeoutMs,
    bodyTimeoutMs: options.bodyTimeoutMs ?? DEFAULT_HTTP_TIMEOUTS.bodyTimeoutMs,
    random: options.random ?? Math.random,
  };
}

/** The first value of a header. */
export function header(res: Response, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** Every value of a header (WWW-Authenticate may come several times). */
export function headerValues(res: Response, name: string): string[] {
  const v = res.headers[name.toLowerCase()];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/** Origin and path only: safe to print (no query with signatures, no userinfo). */
export function safeUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** Discards the rest of a body so the connection can be reused; errors of a dying body are moot. */
export async function discard(res: Response): Promise<void> {
  try {
    await res.body.dump({ limit: MAX_ERROR_BODY_BYTES });
  } catch {
    // The response is being thrown away: a failure to drain it only costs the connection, which
    // undici then closes.
    res.body.destroy();
  }
}

/**
 * Reads a body up to `limit` bytes. `over` is true when there was more (the rest is not read and
 * the body destroyed).
 */
export async function readCapped(body: Readable, limit: number): Promise<{ bytes: Buffer; over: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.byteLength;
    if (size > limit) {
      body.destroy();
      return { bytes: Buffer.concat(chunks), over: true };
    }
    chunks.push(chunk);
  }
  return { bytes: Buffer.concat(chunks, size), over: false };
}

/** A {@link RegistryError} from a failed response, reading its error body (capped). */
export async function errorFromResponse(
  res: Response,
  req: { reference: string; operation: string },
  attempts = 1,
): Promise<RegistryError> {
  let codes: string[] = [];
  let detail: string | undefined;
  try {
    const { bytes } = await readCapped(res.body, MAX_ERROR_BODY_BYTES);
    ({ codes, message: detail } = parseErrorBody(bytes));
  } catch {
    // The status already tells what failed; a body that broke while being read adds nothing.
  }
  const parts = [`${req.operation} ${req.reference}: HTTP ${res.statusCode}`];
  if (codes.length > 0) parts.push(codes.join(', '));
  let message = parts.join(' ');
  if (detail !== undefined) message += `: ${detail}`;
  if (attempts > 1) message += ` (after ${attempts} attempts)`;
  return new RegistryError(message, {
    status: res.statusCode,
    codes,
    reference: req.reference,
    operation: req.operation,
  });
}

/**
 * Sends a request, retrying temporary failures within the policy. Returns the last response
 * whatever its status (the caller decides what is success); throws a temporary
 * {@link RegistryError} when the connection failed on every attempt, or the signal's reason.
 */
export async function send(ctx: HttpContext, req: HttpRequest): Promise<HttpResult> {
  const attempts = req.retry === false ? 1 : Math.max(1, ctx.retry.attempts);
  for (let attempt = 1; ; attempt++) {
    req.signal?.throwIfAborted();
    let response: Response;
    try {
      response = await request(req.url, {
        method: req.method,
        headers: { 'user-agent': ctx.userAgent, ...req.headers },
        body: req.body?.() ?? null,
        signal: req.signal,
        dispatcher: ctx.dispatcher,
        headersTimeout: ctx.headersTimeoutMs,
        bodyTimeout: ctx.bodyTimeoutMs,
      });
    } catch (err) {
      if (req.signal?.aborted === true) throw req.signal.reason;
      if (!isTemporary(err) || attempt >= attempts) {
        const why = err instanceof Error ? err.message : String(err);
        throw new RegistryError(
          `${req.operation} ${req.reference}: ${why}${attempt > 1 ? ` (after ${attempt} attempts)` : ''}`,
          { reference: req.reference, operation: req.operation, temporary: isTemporary(err), cause: err },
        );
      }
      const wait = retryDelay(attempt - 1, ctx.retry, undefined, ctx.random) ?? 0;
      ctx.logger?.warn(`retrying ${req.operation} ${req.reference}`, {
        attempt,
        of: attempts,
        error: err instanceof Error ? err.message : String(err),
        waitMs: wait,
      });
      await sleep(wait, req.signal);
      continue;
    }
    if (!isRetryableStatus(response.statusCode) || attempt >= attempts)
      return { response, attempts: attempt };
    const retryAfter = parseRetryAfter(header(response, 'retry-after'));
    const wait = retryDelay(attempt - 1, ctx.retry, retryAfter, ctx.random);
    if (wait === undefined) return { response, attempts: attempt };
    await discard(response);
    ctx.logger?.warn(`retrying ${req.operation} ${req.reference}`, {
      attempt,
      of: attempts,
      status: response.statusCode,
      waitMs: wait,
    });
    await sleep(wait, req.signal);
  }
}
