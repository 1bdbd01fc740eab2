/**
 * A blob download as a Readable that verifies the content while it streams.
 *
 * Every byte pushed downstream goes through one digester and one byte count; the stream ends only
 * after the size and the digest matched, and errors otherwise ({@link SizeMismatchError},
 * {@link DigestMismatchError}), so a consumer piping it into storage never sees success on bad
 * bytes. A transfer that breaks (connection reset, body cut short, timeout) is resumed from the
 * first missing byte: with `Range: bytes=N-` once the server showed it supports ranges
 * (`Accept-Ranges: bytes` or a 206), else by downloading again and skipping the N bytes already
 * delivered; the same digest computation continues either way, so the digest covers exactly what
 * the consumer received. Resumes are bounded by the retry policy.
 */
import { Readable } from 'node:stream';
import type { Digest, Digester } from './digest.ts';
import { DigestMismatchError, isTemporary, RegistryError, SizeMismatchError } from './errors.ts';
import { discard, errorFromResponse, header, type HttpResult, type Logger, type Response } from './http.ts';
import { retryDelay, sleep, type RetryPolicy } from './retry.ts';
import { chunksOf } from './streams.ts';

/** Opens the blob at `offset` (with a Range header when `range` is true) after redirects. */
export type BlobOpener = (offset: number, range: boolean, signal: AbortSignal) => Promise<HttpResult>;

export interface BlobStreamOptions {
  open: BlobOpener;
  expected: { digest: Digest; size: number };
  /** Names the blob in errors, e.g. `127.0.0.1:5000/repo@sha256:…`. */
  reference: string;
  /** Bytes the consumer already has; `digester` must have hashed exactly them. */
  offset: number;
  digester: Digester;
  retry: RetryPolicy;
  random: () => number;
  logger: Logger | undefined;
  signal: AbortSignal | undefined;
}

const OPERATION = 'fetch blob';
/** Body bytes read from the socket ahead of the consumer before the body is paused. */
const BODY_QUEUE_BYTES = 1024 * 1024;
/** `Content-Range: bytes START-END/TOTAL` (RFC 9110 §14.4); TOTAL may be `*`. */
const CONTENT_RANGE = /^bytes (\d+)-(\d+)\/(\d+|\*)$/;

/**
 * The verifying blob stream returned by `RegistryClient.fetchBlob`. `bytesReceived` counts bytes
 * delivered so far, the initial offset included.
 */
export class BlobStream extends Readable {
  readonly expected: { readonly digest: Digest; readonly size: number };
  readonly reference: string;
  readonly #options: BlobStreamOptions;
  readonly #controller = new AbortController();
  readonly #signal: AbortSignal;
  #received: number;
  #started = false;
  #wakeReader: (() => void) | undefined;

  constructor(options: BlobStreamOptions) {
    super();
    this.#options = options;
    this.expected = options.expected;
    this.reference = options.reference;
    this.#received = options.offset;
    this.#signal =
      options.signal === undefined
        ? this.#controller.signal
        : AbortSignal.any([options.signal, this.#controller.signal]);
  }

  get bytesReceived(): number {
    return this.#received;
  }

  override _read(): void {
    const wake = this.#wakeReader;
    this.#wakeReader = undefined;
    wake?.();
    if (this.#started) return;
    this.#started = true;
    this.#run().then(
      () => {
        if (!this.destroyed) this.push(null);
      },
      (err: unknown) => {
        if (!this.destroyed) this.destroy(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.#controller.abort(err ?? new Error(`${OPERATION} ${this.reference}: stream destroyed`));
    const wake = this.#wakeReader;
    this.#wakeReader = undefined;
    wake?.();
    callback(err);
  }

  /** Resolves when the consumer wants more (or the stream is torn down). */
  #readRequested(): Promise<void> {
    return new Promise((resolve) => {
      this.#wakeReader = resolve;
    });
  }

  async #run(): Promise<void> {
    const { expected, retry } = this.#options;
    const attempts = Math.max(1, retry.attempts);
    // Resuming from a caller's offset, try a Range request: a 200 instead is handled by skipping.
    let rangeSupported = this.#received > 0;
    // Resuming a download the consumer already completed: nothing to fetch, only to verify.
    const complete = this.#received === expected.size && expected.size > 0;
    for (let attempt = 1; !complete; attempt++) {
      // The request was retried by the HTTP layer already: when it fails, the download fails.
      const { response, skip } = await this.#open(rangeSupported, (supported) => {
        rangeSupported = supported;
      });
      try {
        await this.#transfer(response, skip);
        break;
      } catch (err) {
        if (this.#signal.aborted) throw this.#signal.reason;
        if (!isTemporary(err) || attempt >= attempts) throw this.#final(err, attempt);
        const wait = retryDelay(attempt - 1, retry, undefined, this.#options.random) ?? 0;
        this.#options.logger?.warn(`resuming ${OPERATION} ${this.reference}`, {
          attempt,
          of: attempts,
          at: this.#received,
          size: expected.size,
          range: rangeSupported,
          error: err instanceof Error ? err.message : String(err),
          waitMs: wait,
        });
        await sleep(wait, this.#signal);
      }
    }
    const actual = this.#options.digester.digest();
    if (actual !== expected.digest) {
      throw new DigestMismatchError({
        reference: this.reference,
        operation: OPERATION,
        expected: expected.digest,
        actual,
      });
    }
  }

  /** The error to fail with once retrying is over, naming the attempts when there were several. */
  #final(err: unknown, attempt: number): Error {
    if (attempt <= 1 || !(err instanceof Error)) return err instanceof Error ? err : new Error(String(err));
    if (err instanceof SizeMismatchError) {
      return new SizeMismatchError({
        reference: this.reference,
        operation: OPERATION,
        expected: err.expected,
        actual: err.actual,
        detail: `${err.message.slice(`${OPERATION} ${this.reference}: `.length)} (after ${attempt} attempts)`,
        temporary: err.temporary,
        cause: err.cause,
      });
    }
    if (err instanceof RegistryError) return err;
    return new RegistryError(`${OPERATION} ${this.reference}: ${err.message} (after ${attempt} attempts)`, {
      reference: this.reference,
      operation: OPERATION,
      temporary: isTemporary(err),
      cause: err,
    });
  }

  /** Requests the blob from the current offset; returns the response and the bytes to skip. */
  async #open(
    rangeSupported: boolean,
    noteRange: (supported: boolean) => void,
  ): Promise<{ response: Response; skip: number }> {
    const { expected } = this.#options;
    const start = this.#received;
    const { response, attempts } = await this.#options.open(start, start > 0 && rangeSupported, this.#signal);
    let skip: number;
    if (response.statusCode === 206) {
      noteRange(true);
      skip = await this.#checkPartial(response, start);
    } else if (response.statusCode === 200) {
      noteRange(header(response, 'accept-ranges')?.toLowerCase() === 'bytes');
      await this.#checkLength(response, expected.size);
      // A full body although bytes were already delivered: skip them, hashing only the rest.
      skip = start;
    } else {
      throw await errorFromResponse(response, { reference: this.reference, operation: OPERATION }, attempts);
    }
    return { response, skip };
  }

  /** Streams one response to the end, or throws; a short body is a temporary error. */
  async #transfer(response: Response, skip: number): Promise<void> {
    const { expected } = this.#options;
    try {
      await this.#stream(response, skip);
    } catch (err) {
      if (err instanceof RegistryError || this.#signal.aborted) throw err;
      // The connection broke or timed out mid-body: report it as the bytes that are missing.
      throw new SizeMismatchError({
        reference: this.reference,
        operation: OPERATION,
        expected: expected.size,
        actual: this.#received,
        detail: `transfer broke after ${this.#received} of ${expected.size} bytes: ${err instanceof Error ? err.message : String(err)}`,
        temporary: isTemporary(err),
        cause: err,
      });
    }
    if (this.#received < expected.size) {
      throw new SizeMismatchError({
        reference: this.reference,
        operation: OPERATION,
        expected: expected.size,
        actual: this.#received,
        detail: `truncated body, received ${this.#received} of ${expected.size} bytes`,
        temporary: true,
      });
    }
  }

  /**
   * Pushes the body downstream through the digester, skipping `skip` bytes already delivered. The
   * body's chunks go on as the socket delivered them (`chunksOf`): `for await` on the body would
   * concatenate the chunks buffered while the consumer was busy into new Buffers.
   */
  async #stream(response: Response, skip: number): Promise<void> {
    const { expected } = this.#options;
    for await (const input of chunksOf(response.body, BODY_QUEUE_BYTES)) {
      let chunk = input;
      if (skip > 0) {
        const dropped = Math.min(skip, chunk.byteLength);
        skip -= dropped;
        chunk = chunk.subarray(dropped);
        if (chunk.byteLength === 0) continue;
      }
      if (this.#received + chunk.byteLength > expected.size) {
        response.body.destroy();
        throw new SizeMismatchError({
          reference: this.reference,
          operation: OPERATION,
          expected: expected.size,
          actual: this.#received + chunk.byteLength,
          detail: `body is longer than the expected size ${expected.size}`,
          temporary: false,
        });
      }
      this.#options.digester.update(chunk);
      this.#received += chunk.byteLength;
      if (!this.push(chunk)) await this.#readRequested();
      if (this.destroyed) {
        response.body.destroy();
        return;
      }
    }
  }

  /** A full (200) body must announce the descriptor's size when it announces one. */
  async #checkLength(response: Response, size: number): Promise<void> {
    const length = header(response, 'content-length');
    if (length === undefined) return;
    if (Number(length) !== size) {
      await discard(response);
      throw new SizeMismatchError({
        reference: this.reference,
        operation: OPERATION,
        expected: size,
        actual: Number(length),
        detail: `Content-Length ${length} does not match the expected size ${size}`,
        temporary: false,
      });
    }
  }

  /** A 206 must start where asked and cover the rest of the blob; returns bytes to skip (none). */
  async #checkPartial(response: Response, start: number): Promise<number> {
    const { size } = this.#options.expected;
    const match = CONTENT_RANGE.exec(header(response, 'content-range') ?? '');
    const first = match === null ? NaN : Number(match[1]);
    const last = match === null ? NaN : Number(match[2]);
    const total = match?.[3];
    if (first !== start || last !== size - 1 || (total !== '*' && Number(total) !== size)) {
      await discard(response);
      throw new SizeMismatchError({
        reference: this.reference,
        operation: OPERATION,
        expected: size,
        actual: Number.isNaN(last) ? 0 : last + 1,
        detail: `Content-Range "${header(response, 'content-range') ?? ''}" does not continue at byte ${start} to the end (${size} bytes)`,
        temporary: false,
      });
    }
    return 0;
  }
}
