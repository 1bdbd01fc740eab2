/**
 * The store's error classes. Each message names the thing that failed (a key, a digest, a diffID,
 * an offset in a tar stream). All but {@link ObjectNotFoundError} are permanent: retrying the same
 * input gives the same error.
 */

/** A backend key (or a record, a blob, a layer) does not exist. */
export class ObjectNotFoundError extends Error {
  override readonly name = 'ObjectNotFoundError';
  readonly key: string;

  constructor(key: string, message = `not found: ${key}`, options?: ErrorOptions) {
    super(message, options);
    this.key = key;
  }
}

/** Stored content does not match the key it is stored under (bit rot, tampering, a bug). */
export class CorruptObjectError extends Error {
  override readonly name = 'CorruptObjectError';
  readonly key: string;

  constructor(key: string, message: string, options?: ErrorOptions) {
    super(`corrupt object ${key}: ${message}`, options);
    this.key = key;
  }
}

/** The layer stream is not a tar archive the store can split (truncated, bad checksum, …). */
export class MalformedTarError extends Error {
  override readonly name = 'MalformedTarError';
  /** Offset of the problem in the uncompressed tar stream. */
  readonly offset: number;

  constructor(offset: number, message: string, options?: ErrorOptions) {
    super(`malformed tar at byte ${offset}: ${message}`, options);
    this.offset = offset;
  }
}

/**
 * Content hashed to another digest than the one it was announced with (blob or diffID), or a
 * reference pinned to a digest asked to point at another one.
 */
export class DigestMismatchError extends Error {
  override readonly name = 'DigestMismatchError';
  readonly expected: string;
  readonly actual: string;

  constructor(what: string, expected: string, actual: string) {
    super(`${what}: expected ${expected}, got ${actual}`);
    this.expected = expected;
    this.actual = actual;
  }
}

/** A record refers to something that is not in the store (e.g. an image record before its layers). */
export class MissingDependencyError extends Error {
  override readonly name = 'MissingDependencyError';
}

/** A stored record or format file cannot be decoded (unknown version, bad JSON, bad magic). */
export class InvalidFormatError extends Error {
  override readonly name = 'InvalidFormatError';
}

/**
 * Errors that travel through storage layers unwrapped: permanent content errors and aborts, so
 * callers can tell them apart by class (or name, for aborts).
 */
export function isPassThrough(err: unknown): err is Error {
  return (
    err instanceof DigestMismatchError ||
    err instanceof MalformedTarError ||
    err instanceof CorruptObjectError ||
    (err instanceof Error && err.name === 'AbortError')
  );
}
