/**
 * Failure classification at the worker boundary: a permanent failure (bad digest, unknown
 * manifest, unsupported media type, malformed tar, 4xx from the registry) fails the job at once
 * (BullMQ `UnrecoverableError`), so the pull fails with the reason instead of retrying for
 * minutes; anything else (timeouts, 429, 5xx, connection resets, Redis or S3 hiccups, a lost
 * lock) is thrown as is and retried with backoff.
 */
import { UnrecoverableError } from 'bullmq';
import {
  InvalidDigestError,
  InvalidImageConfigError,
  InvalidManifestError,
  InvalidMediaTypeError,
  InvalidPlatformError,
  InvalidReferenceError,
  NoMatchingPlatformError,
  RegistryError,
  UnsupportedMediaTypeError,
} from '@stevedore/oci';
import { CorruptObjectError, DigestMismatchError, MalformedTarError } from '@stevedore/store';
import { CompressionMismatchError, CorruptLayerError } from './compression.ts';

const PERMANENT: readonly (abstract new (...args: never[]) => Error)[] = [
  InvalidDigestError,
  InvalidImageConfigError,
  InvalidManifestError,
  InvalidMediaTypeError,
  InvalidPlatformError,
  InvalidReferenceError,
  NoMatchingPlatformError,
  UnsupportedMediaTypeError,
  CorruptObjectError,
  DigestMismatchError,
  MalformedTarError,
  CompressionMismatchError,
  CorruptLayerError,
];

/** zlib's codes for corrupt compressed input (gzip or zstd): the blob itself is bad. */
const CORRUPT_INPUT_CODES = new Set(['Z_DATA_ERROR', 'ERR_ZSTD_INVALID_PARAM', 'ERR__ZSTD_DECOMPRESS_ERROR']);

/** Causes followed at most, against cycles. */
const MAX_CAUSE_DEPTH = 8;

function permanentItself(err: Error): boolean {
  if (err instanceof UnrecoverableError) return true;
  if (err instanceof RegistryError) return !err.temporary;
  if (PERMANENT.some((kind) => err instanceof kind)) return true;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && CORRUPT_INPUT_CODES.has(code);
}

/** The first permanent failure in `err`'s cause chain (a backend may wrap a digest mismatch). */
export function permanentCause(err: unknown): Error | undefined {
  let current: unknown = err;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && current instanceof Error; depth++) {
    if (permanentItself(current)) return current;
    current = current.cause;
  }
  return undefined;
}

/**
 * The error to throw from a processor: a permanent failure becomes unrecoverable, its message
 * naming both the operation and the underlying reason.
 */
export function classifyFailure(err: unknown): unknown {
  const cause = permanentCause(err);
  if (cause === undefined || err instanceof UnrecoverableError) return err;
  const outer = (err as Error).message;
  const failure = new UnrecoverableError(
    cause === err || outer.includes(cause.message) ? outer : `${outer}: ${cause.message}`,
  );
  failure.cause = err;
  return failure;
}
