/**
 * In-order hashing of a whole stream (a layer's diffID, on import and on rebuild) off the main
 * thread, on one worker of the limiter's pool (chosen by the stream's number, so concurrent streams
 * spread over the workers), whose queue keeps the pieces in order. The caller names shared blocks
 * it filled (limiter.ts BlockPool): the bytes are not copied again, and the block goes back to the
 * pool once the worker has read it.
 */
import { parseDigest, type Digest } from '@stevedore/oci';
import type { Limiter } from './limiter.ts';
import type { DigestBlockRequest, DigestEndRequest } from './worker.ts';

let nextStream = 1;

export class StreamHasher {
  readonly #limiter: Limiter;
  readonly #stream = nextStream++;
  #size = 0;
  #failure: unknown;

  constructor(limiter: Limiter) {
    this.#limiter = limiter;
  }

  /** Bytes hashed so far (known before the digest). */
  get size(): number {
    return this.#size;
  }

  /**
   * Adds the first `length` bytes of shared block `block`, after everything added before.
   * Resolves once the worker has read them (the block may then be reused); a failure also fails
   * {@link StreamHasher.digest}.
   */
  updateBlock(block: number, length: number): Promise<void> {
    this.#size += length;
    return this.#limiter.pool
      .run<DigestBlockRequest>({ op: 'digest-block', stream: this.#stream, block, length }, [], this.#stream)
      .then(
        () => undefined,
        (err: unknown) => {
          this.#failure ??= err;
          throw err;
        },
      );
  }

  /** The sha256 of everything added (call once every update has settled). */
  async digest(): Promise<Digest> {
    this.#rethrow();
    const res = await this.#limiter.pool.run<DigestEndRequest>(
      { op: 'digest-end', stream: this.#stream, discard: false },
      [],
      this.#stream,
    );
    // Updates queued before digest-end answered first: any failure among them is known now.
    this.#rethrow();
    return parseDigest(res.digest);
  }

  /** Drops the stream's state in the worker (after a failure). */
  async discard(): Promise<void> {
    await this.#limiter.pool.run<DigestEndRequest>(
      { op: 'digest-end', stream: this.#stream, discard: true },
      [],
      this.#stream,
    );
  }

  #rethrow(): void {
    if (this.#failure !== undefined) throw new Error('stream hashing failed', { cause: this.#failure });
  }
}
