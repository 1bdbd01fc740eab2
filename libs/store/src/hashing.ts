/**
 * In-order hashing of a whole stream (a layer's diffID) off the main thread, on one worker of the
 * limiter's pool (chosen by the stream's number, so concurrent streams spread over the workers),
 * whose queue keeps the pieces in order. Two ways to feed it: {@link StreamHasher.update} copies
 * bytes into blocks of its own (the layer reader), {@link StreamHasher.updateBlock} names a shared
 * block the caller filled (the importer: the tar's bytes are copied once, into the shared blocks
 * that the object workers read too). The main thread's cost is at most a copy (memcpy speed)
 * instead of sha256; backpressure comes from the bounded number of blocks.
 */
import { parseDigest, type Digest } from '@stevedore/oci';
import type { Limiter } from './limiter.ts';
import type { DigestBlockRequest, DigestEndRequest, DigestUpdateRequest } from './worker.ts';

/** Bytes per message to the hashing worker. */
export const HASH_BLOCK_BYTES = 1024 * 1024;
/** Blocks per stream (one filling, the others queued or hashing). */
const HASH_BLOCKS = 4;

let nextStream = 1;

export class StreamHasher {
  readonly #limiter: Limiter;
  readonly #stream = nextStream++;
  #block: Buffer | undefined;
  #fill = 0;
  #size = 0;
  #blocks = 0;
  #free: ArrayBuffer[] = [];
  #inFlight = new Set<Promise<void>>();
  #failure: unknown;
  #done = false;

  constructor(limiter: Limiter) {
    this.#limiter = limiter;
  }

  /** Bytes hashed so far (known before the digest). */
  get size(): number {
    return this.#size;
  }

  /** Adds bytes (copied: the caller may reuse `chunk`). Waits when all blocks are busy. */
  async update(chunk: Uint8Array): Promise<void> {
    let pos = 0;
    while (pos < chunk.length) {
      this.#block ??= Buffer.from(await this.#takeBlock());
      const n = Math.min(HASH_BLOCK_BYTES - this.#fill, chunk.length - pos);
      this.#block.set(chunk.subarray(pos, pos + n), this.#fill);
      this.#fill += n;
      pos += n;
      this.#size += n;
      if (this.#fill === HASH_BLOCK_BYTES) this.#send();
    }
  }

  /**
   * Adds the first `length` bytes of shared block `block` (limiter.ts BlockPool), after everything
   * added before. Resolves once the worker has read them (the block may then be reused); a failure
   * also fails {@link StreamHasher.digest}.
   */
  updateBlock(block: number, length: number): Promise<void> {
    this.#size += length;
    const sent = this.#limiter.pool
      .run<DigestBlockRequest>({ op: 'digest-block', stream: this.#stream, block, length }, [], this.#stream)
      .then(
        () => undefined,
        (err: unknown) => {
          this.#failure ??= err;
          throw err;
        },
      );
    return sent;
  }

  /** The sha256 of everything added. */
  async digest(): Promise<Digest> {
    if (this.#fill > 0) this.#send();
    await Promise.all([...this.#inFlight]);
    this.#rethrow();
    this.#release();
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
    if (this.#done) return;
    await Promise.allSettled([...this.#inFlight]);
    this.#release();
    await this.#limiter.pool.run<DigestEndRequest>(
      { op: 'digest-end', stream: this.#stream, discard: true },
      [],
      this.#stream,
    );
  }

  #release(): void {
    this.#done = true;
    for (const b of this.#free) this.#limiter.buffers.give(b);
    this.#free = [];
    if (this.#block !== undefined) this.#limiter.buffers.give(this.#block.buffer as ArrayBuffer);
    this.#block = undefined;
  }

  #send(): void {
    const data = this.#block!.buffer as ArrayBuffer;
    const length = this.#fill;
    this.#block = undefined;
    this.#fill = 0;
    const sent = this.#limiter.pool
      .run<DigestUpdateRequest>(
        { op: 'digest-update', stream: this.#stream, data, length },
        [data],
        this.#stream,
      )
      .then(
        (res) => {
          this.#free.push(res.data);
        },
        (err: unknown) => {
          this.#failure ??= err;
        },
      )
      .finally(() => this.#inFlight.delete(sent));
    this.#inFlight.add(sent);
  }

  async #takeBlock(): Promise<ArrayBuffer> {
    this.#rethrow();
    const free = this.#free.pop();
    if (free !== undefined) return free;
    if (this.#blocks < HASH_BLOCKS) {
      this.#blocks++;
      return this.#limiter.buffers.take(HASH_BLOCK_BYTES);
    }
    await Promise.race([...this.#inFlight]);
    return this.#takeBlock();
  }

  #rethrow(): void {
    if (this.#failure !== undefined) throw new Error('stream hashing failed', { cause: this.#failure });
  }
}
