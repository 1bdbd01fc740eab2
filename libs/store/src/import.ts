/**
 * Layer import: one pass over an uncompressed tar stream that splits the tar (tar.ts), stores the
 * new objects (objects.ts) and streams the splitstream out, then publishes in order: objects and
 * splitstream, sync, index, sync, layer record, sync. docs/store-format.md ("Import") has the
 * sequence and why each step comes where it does.
 *
 * The main thread parses and copies; the worker pool hashes and compresses. Every input byte is
 * copied once, into the limiter's shared blocks, in tar order, an object never cut by a block's
 * end: per block, one worker (pinned to this layer) adds the block to the diffID and any worker
 * hashes and compresses its objects. Blocks are accepted in order (packs hold objects in tar order),
 * then given back. Memory is bounded by the blocks: one is taken before more input is read, so a
 * slow store slows the reader down (backpressure) instead of buffering the layer.
 */
import { Digester, parseDiffID, type DiffID } from '@stevedore/oci/spec';
import { StreamHasher } from './hashing.ts';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { addAbortSignal, PassThrough, Readable, Transform } from 'node:stream';
import { constants, createZstdCompress } from 'node:zlib';
import type { Backend } from './backend/backend.ts';
import { DigestMismatchError } from './errors.ts';
import { layerKey, splitstreamKey } from './layout.ts';
import { BLOCK_BYTES, STREAM_CHUNK_BYTES, type Limiter } from './limiter.ts';
import { CHUNK_SIZE, ObjectWriter, type ObjectStore } from './objects.ts';
import { emptyStats, encodeRecord, SCHEMA_VERSION, type ImportStats, type LayerRecord } from './records.ts';
import { HASH_BYTES, SplitstreamEncoder } from './splitstream.ts';
import { TarSplitter } from './tar.ts';
import type { SplitRequest } from './worker.ts';

/**
 * Regular file contents up to this size stay inline in the splitstream: an object would cost more
 * (a 49-byte index entry plus a 32-byte reference) than it saves. composefs inlines up to 64 too.
 */
export const INLINE_MAX = 64;
/** At most this many objects per block (a worker's reply stays small: 36 bytes per object). */
export const MAX_BLOCK_OBJECTS = 4096;
/** Encoded splitstream bytes gathered before they are handed to the compressor. */
const SPLITSTREAM_WRITE_BYTES = 256 * 1024;
/**
 * zstd level of splitstreams: 1, as for objects. zstd's default (3) spent 0.1 CPU-s per pull of
 * /usr/share (its tar headers and small files) for a splitstream a few percent smaller.
 */
const SPLITSTREAM_ZSTD_LEVEL = 1;
/** Random ids of splitstreams (keyed before their diffID is known; see the format doc). */
const SPLITSTREAM_ID_BYTES = 16;

/**
 * What an import reads: an uncompressed tar as a stream, or as an iterable of chunks. An iterable's
 * chunks are read in place: each is copied (into the shared blocks and the splitstream) before the
 * next one is asked for, so its producer may reuse a chunk's memory as soon as the store asks for
 * the next (reads into two alternating buffers, for example), and leave no garbage Buffers behind.
 * A Readable reads ahead of its consumer, so this holds for iterables only. An iterable is closed
 * (`return()`) when the import stops early; an abort takes effect when its next chunk arrives.
 */
export type LayerInput = Readable | AsyncIterable<Uint8Array>;

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

/** A shared block being filled: tar bytes in order, objects whole. */
interface OpenBlock {
  readonly index: number;
  used: number;
  /** Offset and length of each object in the block. */
  readonly objects: number[];
}

if (CHUNK_SIZE > BLOCK_BYTES) throw new Error('a chunk must fit in a shared block');

/**
 * Streams the splitstream to the backend as it is encoded. Object records are written when their
 * entry starts, with placeholders for hashes the workers have not returned yet
 * ({@link SplitstreamEncoder}); hashes arrive in record order (blocks are accepted in order), and
 * encoded bytes go out up to the first empty placeholder. What waits is at most the records and
 * headers of the blocks in flight.
 */
class SplitstreamWriter {
  readonly key: string;
  readonly #encoder = new SplitstreamEncoder({ inlineMax: INLINE_MAX, chunkSize: CHUNK_SIZE });
  readonly #input = new PassThrough();
  readonly #digester = new Digester('sha256');
  readonly #put: Promise<void>;

  constructor(backend: Backend, signal: AbortSignal, fail: (err: unknown) => void) {
    this.key = splitstreamKey(randomBytes(SPLITSTREAM_ID_BYTES).toString('hex'));
    const digester = this.#digester;
    const hashing = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        digester.update(chunk);
        callback(null, chunk);
      },
    });
    const compressed = this.#input
      .pipe(
        createZstdCompress({
          chunkSize: STREAM_CHUNK_BYTES,
          params: { [constants.ZSTD_c_compressionLevel]: SPLITSTREAM_ZSTD_LEVEL },
        }),
      )
      .on('error', (err) => hashing.destroy(err));
    compressed.pipe(hashing);
    this.#input.on('error', (err) => compressed.destroy(err));
    // Not under limiter.io: the upload lasts as long as the import and is paced by it. Holding an
    // I/O slot all that time would let concurrent imports take every slot and starve their own
    // pack writes, which they wait for: a deadlock.
    this.#put = backend.put(this.key, hashing, { signal });
    this.#put.catch(fail);
  }

  get needsDrain(): boolean {
    return this.#input.writableNeedDrain;
  }

  async drained(): Promise<void> {
    if (this.#input.writableNeedDrain) await once(this.#input, 'drain');
  }

  inline(bytes: Uint8Array): void {
    this.#encoder.inline(bytes);
    this.#write();
  }

  /** The record of an entry's external content, its hashes to come through {@link SplitstreamWriter.fill}. */
  ref(size: number): void {
    if (size <= CHUNK_SIZE) this.#encoder.objectLater(size);
    else this.#encoder.chunkedLater(size);
  }

  /** The next object's hash, in record order. */
  fill(hash: Uint8Array): void {
    this.#encoder.fill(hash);
  }

  /** Hands out what is ready (call after a batch of fills). */
  flush(): void {
    this.#write();
  }

  /** Writes the END record and waits for the splitstream to be stored. */
  async end(
    diffID: Uint8Array,
    size: number,
  ): Promise<{ digest: ReturnType<Digester['digest']>; size: number }> {
    this.#encoder.end(diffID, size);
    const out = this.#encoder.take(true);
    if (out.length > 0) this.#input.write(out);
    this.#input.end();
    await this.#put;
    return { digest: this.#digester.digest(), size: this.#digester.size };
  }

  /** Stops the upload (nothing is published) and waits for it to wind down. */
  async abort(err: unknown): Promise<void> {
    this.#input.destroy(err instanceof Error ? err : new Error(String(err)));
    await this.#put.catch(() => undefined);
  }

  #write(): void {
    if (this.#encoder.readyBytes >= SPLITSTREAM_WRITE_BYTES) this.#input.write(this.#encoder.take());
  }
}

/** Imports one layer. See the module comment; `deps` are the store's parts. */
export async function importLayer(
  deps: ImportDeps,
  tar: LayerInput,
  options: ImportOptions = {},
): Promise<ImportResult> {
  const { backend, objects, limiter } = deps;
  const stream = tar instanceof Readable ? tar : undefined;
  /** Stops the input (a stream is destroyed; an iterable not being read is closed). */
  const stopInput = async (): Promise<void> => {
    if (stream !== undefined) stream.destroy();
    else await (tar as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]().return?.();
  };
  if (options.expectedDiffID !== undefined) {
    const existing = await deps.readLayer(options.expectedDiffID, options.signal);
    if (existing !== undefined) {
      await stopInput();
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
  if (stream !== undefined) addAbortSignal(signal, stream);

  const stats = emptyStats();
  const writer = new ObjectWriter(objects, stats, signal, fail);
  const ss = new SplitstreamWriter(backend, signal, fail);
  const splitter = new TarSplitter(INLINE_MAX);
  const diff = new StreamHasher(limiter);
  const blocks = limiter.blocks;
  let chain: Promise<void> = Promise.resolve();
  let splitstreamStored = false;
  let indexPublished = false;
  /** The block being filled (no worker has seen it yet). */
  let open: OpenBlock | undefined;
  /** Sealed blocks: each settles once its block is back in the pool. */
  const sealed = new Set<Promise<void>>();
  // The entry whose external content is streaming: bytes left, and the current piece (object).
  let file: { pieceLeft: number; left: number } | undefined;

  /** Hands a filled block to the workers; it goes back to the pool once hashed and packed. */
  const seal = (b: OpenBlock): void => {
    if (open === b) open = undefined;
    const hashed = diff.updateBlock(b.index, b.used);
    hashed.catch(fail);
    const list = Uint32Array.from(b.objects);
    // After the diffID has the block: workers write kept frames over the objects' raw bytes.
    const split =
      list.length === 0
        ? undefined
        : hashed.then(() => limiter.pool.run<SplitRequest>({ op: 'split', block: b.index, objects: list }));
    split?.catch(() => undefined); // awaited in order below; this only marks it handled meanwhile
    const accept = async (): Promise<void> => {
      if (split === undefined) return;
      const res = await split;
      if (failure !== undefined) return;
      await writer.accept(res, b.index, list);
      // This block's objects are the next placeholders of the splitstream, in order.
      for (let i = 0; i < list.length / 2; i++)
        ss.fill(res.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES));
      ss.flush();
    };
    const accepted = chain.then(accept, async (err: unknown) => {
      fail(err);
      await accept();
    });
    chain = accepted;
    chain.catch(fail);
    // Back to the pool once no worker reads it and nothing is copied from it any more.
    const done = Promise.allSettled([accepted, hashed]).then(() => {
      sealed.delete(done);
      blocks.release(b.index);
    });
    sealed.add(done);
  };

  /** Seals the open block (if any) and takes a fresh one. */
  const nextBlock = async (): Promise<OpenBlock> => {
    if (open !== undefined) seal(open);
    const index = await blocks.acquire(signal);
    open = { index, used: 0, objects: [] };
    return open;
  };

  /** Copies bytes that may be cut anywhere (headers, padding, inline content) into blocks. */
  const inline = async (bytes: Uint8Array): Promise<void> => {
    let pos = 0;
    while (pos < bytes.length) {
      const b = open !== undefined && open.used < BLOCK_BYTES ? open : await nextBlock();
      const n = Math.min(BLOCK_BYTES - b.used, bytes.length - pos);
      blocks.inputView(b.index).set(bytes.subarray(pos, pos + n), b.used);
      b.used += n;
      pos += n;
    }
  };

  /** Copies external content into blocks, one piece (object) at a time: whole files up to CHUNK_SIZE, else chunks. */
  const data = async (bytes: Uint8Array): Promise<void> => {
    const f = file!;
    let pos = 0;
    while (pos < bytes.length) {
      if (f.pieceLeft === 0) {
        const pieceSize = Math.min(CHUNK_SIZE, f.left);
        let b = open;
        if (
          b === undefined ||
          b.used + pieceSize > BLOCK_BYTES ||
          b.objects.length >= 2 * MAX_BLOCK_OBJECTS
        ) {
          b = await nextBlock();
        }
        b.objects.push(b.used, pieceSize);
        f.pieceLeft = pieceSize;
      }
      // The piece has its room in the open block: it stays open until the piece is complete.
      const b = open!;
      const n = Math.min(f.pieceLeft, bytes.length - pos);
      blocks.inputView(b.index).set(bytes.subarray(pos, pos + n), b.used);
      b.used += n;
      f.pieceLeft -= n;
      f.left -= n;
      pos += n;
    }
  };

  try {
    // Every chunk is done with (copied) before the loop asks for the next: see LayerInput.
    for await (const chunk of tar as AsyncIterable<Uint8Array>) {
      for (const ev of splitter.push(chunk)) {
        switch (ev.kind) {
          case 'inline':
            stats.inlineBytes += ev.bytes.length;
            ss.inline(ev.bytes);
            // Most headers fit in the open block: no promise for those.
            if (open !== undefined && open.used + ev.bytes.length <= BLOCK_BYTES) {
              blocks.inputView(open.index).set(ev.bytes, open.used);
              open.used += ev.bytes.length;
            } else {
              await inline(ev.bytes);
            }
            break;
          case 'entry':
            if (ev.entry.content === 'external') {
              stats.files++;
              // The record goes where the content is in the tar; its hashes come later.
              ss.ref(ev.entry.size);
              file = { pieceLeft: 0, left: ev.entry.size };
            }
            break;
          case 'data': {
            const f = file!;
            // Within the current piece (its room in the open block is reserved): no promise.
            if (f.pieceLeft >= ev.bytes.length) {
              blocks.inputView(open!.index).set(ev.bytes, open!.used);
              open!.used += ev.bytes.length;
              f.pieceLeft -= ev.bytes.length;
              f.left -= ev.bytes.length;
            } else {
              await data(ev.bytes);
            }
            break;
          }
          case 'data-end':
            file = undefined;
            break;
        }
      }
      if (failure !== undefined) throw failure;
      if (ss.needsDrain) await ss.drained();
    }
    splitter.finish();
    if (open !== undefined) seal(open);
    await chain;
    while (sealed.size > 0) await Promise.all([...sealed]);
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
    while (sealed.size > 0) await Promise.all([...sealed]);
    if (open !== undefined) {
      // No worker has seen it.
      blocks.release(open.index);
      open = undefined;
    }
    await writer.settle();
    await diff.discard();
    // An iterable was closed when the loop above threw out of it.
    stream?.destroy();
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
