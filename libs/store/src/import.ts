/**
 * Layer import: one pass over an uncompressed tar stream that computes the diffID, splits the tar
 * (tar.ts), hands file contents to the worker pool in batches (sha256 + zstd), stores the new
 * objects (objects.ts) and streams the splitstream out, then publishes in order: objects and
 * splitstream, sync, index, sync, layer record, sync. docs/store-format.md ("Import") has the
 * sequence and why each step comes where it does.
 *
 * Memory is bounded by the limiter's budget: object bytes are copied into arenas acquired from it
 * before more input is read, so a slow store slows the reader down (backpressure) instead of
 * buffering the layer.
 */
import { Digester, parseDiffID, type DiffID } from '@stevedore/oci';
import { StreamHasher } from './hashing.ts';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { addAbortSignal, PassThrough, Transform, type Readable } from 'node:stream';
import { createZstdCompress } from 'node:zlib';
import type { Backend } from './backend/backend.ts';
import { DigestMismatchError } from './errors.ts';
import { layerKey, splitstreamKey } from './layout.ts';
import type { Limiter } from './limiter.ts';
import { CHUNK_SIZE, ObjectWriter, type ObjectStore } from './objects.ts';
import { emptyStats, encodeRecord, SCHEMA_VERSION, type ImportStats, type LayerRecord } from './records.ts';
import { SplitstreamEncoder } from './splitstream.ts';
import { TarSplitter } from './tar.ts';
import type { SplitRequest } from './worker.ts';

/**
 * Regular file contents up to this size stay inline in the splitstream: an object would cost more
 * (a 49-byte index entry plus a 32-byte reference) than it saves. composefs inlines up to 64 too.
 */
export const INLINE_MAX = 64;
/** Small objects are hashed in batches of up to 1 MiB, so a worker message carries many files. */
export const BATCH_BYTES = 1024 * 1024;
/** And at most this many objects per batch (the reply's arrays stay small). */
export const MAX_BATCH_OBJECTS = 4096;
/** Splitstream bytes queued behind unhashed objects before the reader waits for the hashes. */
const MAX_QUEUED_SPLITSTREAM = 8 * 1024 * 1024;
/** Encoded splitstream bytes gathered before they are handed to the compressor. */
const SPLITSTREAM_WRITE_BYTES = 256 * 1024;
/** Random ids of splitstreams (keyed before their diffID is known; see the format doc). */
const SPLITSTREAM_ID_BYTES = 16;

export interface ImportOptions {
  /** When given: return early if the layer is present, and fail (storing nothing) on mismatch. */
  readonly expectedDiffID?: DiffID;
  readonly signal?: AbortSignal;
  /**
   * Called right before the layer record is published (the moment the layer becomes visible);
   * throwing refuses the publish. The pipeline passes its fencing check here, so a worker whose
   * lock expired cannot publish over a newer holder's work.
   */
  readonly beforePublish?: () => Promise<void>;
}

export interface ImportResult {
  readonly diffID: DiffID;
  /** Uncompressed tar size. */
  readonly size: number;
  /** True when the layer was already in the store (nothing new was published). */
  readonly alreadyPresent: boolean;
  /** What this import did (zeros except `entries`… when it returned early: see `record.stats`). */
  readonly stats: ImportStats;
  readonly record: LayerRecord;
}

export interface ImportDeps {
  readonly backend: Backend;
  readonly objects: ObjectStore;
  readonly limiter: Limiter;
  readLayer(diffID: DiffID, signal?: AbortSignal): Promise<LayerRecord | undefined>;
}

interface Slot {
  hash: Uint8Array | undefined;
}

interface Batch {
  readonly arena: Buffer;
  used: number;
  readonly lengths: number[];
  readonly slots: Slot[];
  readonly release: () => void;
}

type Segment = { kind: 'inline'; parts: Buffer[] } | { kind: 'ref'; size: number; slots: Slot[] };

/** Orders splitstream records behind the hashes they wait for and streams them to the backend. */
class SplitstreamWriter {
  readonly key: string;
  readonly #encoder = new SplitstreamEncoder({ inlineMax: INLINE_MAX, chunkSize: CHUNK_SIZE });
  readonly #input = new PassThrough();
  readonly #digester = new Digester('sha256');
  readonly #put: Promise<void>;
  #queue: Segment[] = [];
  #queuedBytes = 0;

  constructor(backend: Backend, limiter: Limiter, signal: AbortSignal, fail: (err: unknown) => void) {
    this.key = splitstreamKey(randomBytes(SPLITSTREAM_ID_BYTES).toString('hex'));
    const digester = this.#digester;
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        digester.update(chunk);
        callback(null, chunk);
      },
    });
    const compressed = this.#input.pipe(createZstdCompress()).on('error', (err) => hashing.destroy(err));
    compressed.pipe(hashing);
    this.#input.on('error', (err) => compressed.destroy(err));
    this.#put = limiter.io.run(() => backend.put(this.key, hashing, { signal }), signal);
    this.#put.catch(fail);
  }

  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  get needsDrain(): boolean {
    return this.#input.writableNeedDrain;
  }

  async drained(): Promise<void> {
    if (this.#input.writableNeedDrain) await once(this.#input, 'drain');
  }

  inline(bytes: Uint8Array): void {
    if (this.#queue.length === 0) {
      this.#encoder.inline(bytes);
    } else {
      const tail = this.#queue.at(-1)!;
      const copy = Buffer.from(bytes);
      if (tail.kind === 'inline') tail.parts.push(copy);
      else this.#queue.push({ kind: 'inline', parts: [copy] });
      this.#queuedBytes += bytes.length;
    }
    this.#write(false);
  }

  ref(size: number, slots: Slot[]): void {
    this.#queue.push({ kind: 'ref', size, slots });
    this.drain();
  }

  /** Encodes every queued record whose hashes are known. */
  drain(): void {
    while (this.#queue.length > 0) {
      const head = this.#queue[0]!;
      if (head.kind === 'inline') {
        for (const p of head.parts) {
          this.#encoder.inline(p);
          this.#queuedBytes -= p.length;
        }
      } else {
        if (head.slots.some((s) => s.hash === undefined)) break;
        if (head.slots.length === 1 && head.size <= CHUNK_SIZE)
          this.#encoder.object(head.size, head.slots[0]!.hash!);
        else
          this.#encoder.chunked(
            head.size,
            head.slots.map((s) => s.hash!),
          );
      }
      this.#queue.shift();
    }
    this.#write(false);
  }

  /** Writes the END record and waits for the splitstream to be stored. */
  async end(
    diffID: Uint8Array,
    size: number,
  ): Promise<{ digest: ReturnType<Digester['digest']>; size: number }> {
    this.drain();
    if (this.#queue.length > 0)
      throw new Error(`splitstream ${this.key}: records still wait for hashes at the end`);
    this.#encoder.end(diffID, size);
    this.#write(true);
    this.#input.end();
    await this.#put;
    return { digest: this.#digester.digest(), size: this.#digester.size };
  }

  /** Stops the upload (nothing is published) and waits for it to wind down. */
  async abort(err: unknown): Promise<void> {
    this.#input.destroy(err instanceof Error ? err : new Error(String(err)));
    await this.#put.catch(() => undefined);
  }

  #write(all: boolean): void {
    if (all || this.#encoder.pendingBytes >= SPLITSTREAM_WRITE_BYTES) {
      const out = this.#encoder.take(all);
      if (out.length > 0) this.#input.write(out);
    }
  }
}

/** Imports one layer. See the module comment; `deps` are the store's parts. */
export async function importLayer(
  deps: ImportDeps,
  tar: Readable,
  options: ImportOptions = {},
): Promise<ImportResult> {
  const { backend, objects, limiter } = deps;
  if (options.expectedDiffID !== undefined) {
    const existing = await deps.readLayer(options.expectedDiffID, options.signal);
    if (existing !== undefined) {
      tar.destroy();
      return {
        diffID: existing.diffID,
        size: existing.size,
        alreadyPresent: true,
        stats: emptyStats(),
        record: existing,
      };
    }
  }
  await objects.refresh(options.signal);

  const controller = new AbortController();
  const signal =
    options.signal === undefined ? controller.signal : AbortSignal.any([options.signal, controller.signal]);
  let failure: Error | undefined;
  const fail = (err: unknown): void => {
    if (failure !== undefined) return;
    failure = err instanceof Error ? err : new Error(String(err));
    controller.abort(failure);
  };
  addAbortSignal(signal, tar);

  const stats = emptyStats();
  const writer = new ObjectWriter(objects, stats, signal, fail);
  const ss = new SplitstreamWriter(backend, limiter, signal, fail);
  const splitter = new TarSplitter(INLINE_MAX);
  const diff = new StreamHasher(limiter);
  let chain: Promise<void> = Promise.resolve();
  let splitstreamStored = false;
  let indexPublished = false;
  let small: Batch | undefined;
  // The entry whose external content is streaming: bytes left, and the current piece (object).
  let file:
    | {
        size: number;
        slots: Slot[];
        batch: Batch | undefined;
        dedicated: boolean;
        writeAt: number;
        pieceLeft: number;
        left: number;
      }
    | undefined;
  // Batches being filled: released here if the import fails before they are sealed.
  const unsealed = new Set<Batch>();

  const newBatch = async (capacity: number): Promise<Batch> => {
    const release = await limiter.memory.acquire(capacity, signal);
    const batch = {
      arena: Buffer.from(limiter.buffers.take(capacity)),
      used: 0,
      lengths: [],
      slots: [],
      release,
    };
    unsealed.add(batch);
    return batch;
  };

  const seal = (batch: Batch): void => {
    unsealed.delete(batch);
    const arena = batch.arena.buffer as ArrayBuffer;
    const hashed = limiter.pool.run<SplitRequest>({ op: 'split', arena, lengths: batch.lengths }, [arena]);
    hashed.catch(() => undefined); // awaited in order below; this only marks it handled meanwhile
    const step = async (): Promise<void> => {
      try {
        const res = await hashed;
        if (failure !== undefined) return;
        const hashes = await writer.accept(res, batch.lengths);
        hashes.forEach((h, i) => {
          batch.slots[i]!.hash = h;
        });
        limiter.buffers.give(res.arena);
        ss.drain();
      } finally {
        batch.release();
      }
    };
    chain = chain.then(step, async (err: unknown) => {
      fail(err);
      await step();
    });
    chain.catch(fail);
  };

  /** Where the next piece of `pieceSize` bytes goes: the shared small batch, or its own arena. */
  const target = async (pieceSize: number): Promise<{ batch: Batch; dedicated: boolean }> => {
    // One arena size for every piece above a batch: buffers are reused by size.
    if (pieceSize > BATCH_BYTES) return { batch: await newBatch(CHUNK_SIZE), dedicated: true };
    if (
      small !== undefined &&
      (small.used + pieceSize > small.arena.length || small.lengths.length >= MAX_BATCH_OBJECTS)
    ) {
      seal(small);
      small = undefined;
    }
    small ??= await newBatch(BATCH_BYTES);
    return { batch: small, dedicated: false };
  };

  /** Copies external content into arenas, one piece (object) at a time: whole files up to CHUNK_SIZE, else chunks. */
  const data = async (bytes: Uint8Array): Promise<void> => {
    const f = file!;
    let pos = 0;
    while (pos < bytes.length) {
      if (f.pieceLeft === 0) {
        const pieceSize = Math.min(CHUNK_SIZE, f.left);
        const { batch, dedicated } = await target(pieceSize);
        const slot: Slot = { hash: undefined };
        f.slots.push(slot);
        batch.slots.push(slot);
        batch.lengths.push(pieceSize);
        f.batch = batch;
        f.dedicated = dedicated;
        f.writeAt = batch.used;
        batch.used += pieceSize;
        f.pieceLeft = pieceSize;
      }
      const n = Math.min(f.pieceLeft, bytes.length - pos);
      f.batch!.arena.set(bytes.subarray(pos, pos + n), f.writeAt);
      f.writeAt += n;
      f.pieceLeft -= n;
      f.left -= n;
      pos += n;
      if (f.pieceLeft === 0 && f.dedicated) seal(f.batch!);
    }
  };

  try {
    for await (const chunk of tar as AsyncIterable<Buffer>) {
      await diff.update(chunk);
      for (const ev of splitter.push(chunk)) {
        switch (ev.kind) {
          case 'inline':
            stats.inlineBytes += ev.bytes.length;
            ss.inline(ev.bytes);
            break;
          case 'entry':
            if (ev.entry.content === 'external') {
              stats.files++;
              const size = ev.entry.size;
              file = {
                size,
                slots: [],
                batch: undefined,
                dedicated: false,
                writeAt: 0,
                pieceLeft: 0,
                left: size,
              };
            }
            break;
          case 'data':
            await data(ev.bytes);
            break;
          case 'data-end':
            ss.ref(file!.size, file!.slots);
            file = undefined;
            break;
        }
      }
      if (failure !== undefined) throw failure;
      if (ss.queuedBytes > MAX_QUEUED_SPLITSTREAM) {
        if (small !== undefined) {
          seal(small);
          small = undefined;
        }
        await chain;
      }
      if (ss.needsDrain) await ss.drained();
    }
    splitter.finish();
    if (small !== undefined) {
      seal(small);
      small = undefined;
    }
    await chain;
    if (failure !== undefined) throw failure;
    await writer.finish();

    const diffID = parseDiffID(await diff.digest());
    if (options.expectedDiffID !== undefined && options.expectedDiffID !== diffID) {
      throw new DigestMismatchError('layer diffID', options.expectedDiffID, diffID);
    }
    const stored = await ss.end(Buffer.from(diffID.slice('sha256:'.length), 'hex'), diff.size);
    splitstreamStored = true;
    stats.entries = splitter.entries;
    stats.splitstreamBytes = stored.size;
    // Objects and splitstream durable before the index that makes the objects reusable...
    await backend.sync();
    if (writer.entries.length > 0) {
      await objects.publishIndex(writer.entries, signal);
      indexPublished = true;
      await backend.sync();
    }
    // ...and the index durable before the record that makes the layer visible.
    const existing = await deps.readLayer(diffID, signal);
    if (existing !== undefined) {
      // A concurrent import published it first: ours is a duplicate splitstream.
      await backend.delete(ss.key, { signal });
      return { diffID, size: diff.size, alreadyPresent: true, stats, record: existing };
    }
    const record: LayerRecord = {
      schemaVersion: SCHEMA_VERSION,
      diffID,
      size: diff.size,
      splitstream: { key: ss.key, digest: stored.digest, size: stored.size },
      stats,
      createdAt: new Date().toISOString(),
    };
    await options.beforePublish?.();
    await limiter.io.run(() => backend.put(layerKey(diffID), encodeRecord(record), { signal }), signal);
    await backend.sync();
    return { diffID, size: diff.size, alreadyPresent: false, stats, record };
  } catch (err) {
    const cause = failure ?? err;
    fail(cause);
    await ss.abort(cause);
    await chain.catch(() => undefined);
    for (const b of unsealed) {
      limiter.buffers.give(b.arena.buffer as ArrayBuffer);
      b.release();
    }
    await writer.settle();
    await diff.discard();
    tar.destroy();
    // Packs and the splitstream are unique to this import and unreachable without its index and
    // record: remove them.
    // Once the index is published the packs are reachable through it (other layers may already
    // reuse their objects): only the splitstream is an orphan then.
    const packs = indexPublished ? [] : writer.packKeys;
    const orphans = splitstreamStored ? [...packs, ss.key] : packs;
    const cleanup = await Promise.allSettled(orphans.map((k) => backend.delete(k)));
    const failed = cleanup.filter((r) => r.status === 'rejected');
    if (failed.length > 0) {
      throw new Error(
        `${cause instanceof Error ? cause.message : String(cause)}; deleting ${failed.length} of its objects also failed`,
        {
          cause: new AggregateError([cause, ...failed.map((r) => r.reason as unknown)]),
        },
      );
    }
    throw cause;
  }
}
