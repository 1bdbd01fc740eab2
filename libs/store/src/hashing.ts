/**
 * In-order hashing of a whole stream (a layer's diffID, on import and on rebuild; an export's
 * archive) off the main thread, on one worker of the limiter's pool (the one with the fewest
 * unfinished streams when the hasher is made: WorkerPool.pin), whose queue keeps the pieces in order. The caller names shared blocks
 * it filled (limiter.ts BlockPool): the bytes are not copied again, and the block goes back to the
 * pool once the worker has read it. Or the caller hands it bytes ({@link StreamHasher.update}): they
 * are copied into a small ring of shared memory of the hasher's own (a copy costs a tenth of the
 * hash it moves off the caller's thread).
 */
import { parseDigest, type Digest } from '@stevedore/oci/spec';
import type { Limiter } from './limiter.ts';
import type { DigestBlockRequest, DigestBytesRequest, DigestEndRequest } from './worker.ts';

let nextStream = 1;
/** Bytes per message of {@link StreamHasher.update}. */
const RING_SLOT_BYTES = 1024 * 1024;
/** Messages of {@link StreamHasher.update} in flight; then it waits. */
const RING_SLOTS = 4;

export class StreamHasher {
  readonly #limiter: Limiter;
  readonly #stream = nextStream++;
  /** The worker that keeps this stream's state (the least loaded when it was created). */
  readonly #worker: number;
  #pinned = true;
  #size = 0;
  #failure: unknown;
  #ring: SharedArrayBuffer | undefined;
  #freeSlots: number[] = [];
  #slotWaiters: (() => void)[] = [];

  constructor(limiter: Limiter) {
    this.#limiter = limiter;
    this.#worker = limiter.pool.pin();
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
      .run<DigestBlockRequest>({ op: 'digest-block', stream: this.#stream, block, length }, [], this.#worker)
      .then(
        () => undefined,
        (err: unknown) => {
          this.#failure ??= err;
          throw err;
        },
      );
  }

  /**
   * Adds `bytes`, after everything added before. Resolves once they are copied (the caller may
   * reuse them); waits while {@link RING_SLOTS} messages are being hashed. A failure fails
   * {@link StreamHasher.digest}.
   */
  async update(bytes: Uint8Array): Promise<void> {
    if (this.#ring === undefined) {
      this.#ring = new SharedArrayBuffer(RING_SLOT_BYTES * RING_SLOTS);
      this.#freeSlots = Array.from({ length: RING_SLOTS }, (_, i) => i);
    }
    const ring = this.#ring;
    for (let at = 0; at < bytes.length; at += RING_SLOT_BYTES) {
      const piece = bytes.subarray(at, at + RING_SLOT_BYTES);
      let slot = this.#freeSlots.pop();
      while (slot === undefined) {
        await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
        slot = this.#freeSlots.pop();
      }
      const offset = slot * RING_SLOT_BYTES;
      new Uint8Array(ring, offset, piece.length).set(piece);
      this.#size += piece.length;
      const free = (): void => {
        this.#freeSlots.push(slot);
        this.#slotWaiters.shift()?.();
      };
      this.#limiter.pool
        .run<DigestBytesRequest>(
          { op: 'digest-bytes', stream: this.#stream, buffer: ring, offset, length: piece.length },
          [],
          this.#worker,
        )
        .then(free, (err: unknown) => {
          this.#failure ??= err;
          free();
        });
    }
  }

  /** The sha256 of everything added (call once every update has settled). */
  async digest(): Promise<Digest> {
    try {
      this.#rethrow();
      const res = await this.#limiter.pool.run<DigestEndRequest>(
        { op: 'digest-end', stream: this.#stream, discard: false },
        [],
        this.#worker,
      );
      // Updates queued before digest-end answered first: any failure among them is known now.
      this.#rethrow();
      return parseDigest(res.digest);
    } finally {
      this.#unpin();
    }
  }

  /** Drops the stream's state in the worker (after a failure). */
  async discard(): Promise<void> {
    try {
      await this.#limiter.pool.run<DigestEndRequest>(
        { op: 'digest-end', stream: this.#stream, discard: true },
        [],
        this.#worker,
      );
    } finally {
      this.#unpin();
    }
  }

  #unpin(): void {
    if (this.#pinned) this.#limiter.pool.unpin(this.#worker);
    this.#pinned = false;
  }

  #rethrow(): void {
    if (this.#failure !== undefined) throw new Error('stream hashing failed', { cause: this.#failure });
  }
}
