/**
 * File objects: content keyed by sha256 (whole files up to CHUNK_SIZE, else CHUNK_SIZE pieces),
 * packed into pack files of several MiB, zstd where it pays. Index files say where each object is.
 * Formats and the reasoning behind the sizes: docs/store-format.md ("Objects and packs").
 *
 * {@link ObjectStore} is per opened store: the in-memory index of every published index file
 * (loaded once, refreshed incrementally) and verified reads. {@link ObjectWriter} is per import:
 * dedup against the index, pack assembly and writes, and the import's index entries.
 */
import { digestHex, digestOf } from '@stevedore/oci/spec';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { listAll, type Backend } from './backend/backend.ts';
import { DIRECT_WRITE_SLACK } from './direct-io.ts';
import { CorruptObjectError, ObjectNotFoundError } from './errors.ts';
import { indexKey, indexListCursor, packKey, parseIndexKey, PREFIX } from './layout.ts';
import type { Limiter } from './limiter.ts';
import { mapLimited } from './map-limited.ts';
import { IndexBuilder, KeyTable, ObjectIndex, PACK_ID_BYTES, type ObjectLocation } from './pack-index.ts';
import type { ImportStats } from './records.ts';
import { HASH_BYTES } from './splitstream.ts';
import type { SplitResponse, VerifyItem, VerifyRequest } from './worker.ts';

const MiB = 1024 * 1024;
/**
 * Files larger than this are cut into chunks of this size, each its own object; so every object is
 * at most 2 MiB and goes into a pack. Small enough that a pack never exceeds PACK_CAPACITY (10 MiB:
 * a single PUT everywhere, including S3 servers that cap request bodies near 11 MiB) and that one
 * object needs little memory; large enough that a chunk is one cheap index entry per 2 MiB.
 */
export const CHUNK_SIZE = 2 * MiB;
/**
 * A pack is written once it holds this many bytes, so every pack but an import's last is at least
 * 8 MiB: at most one PUT per 8 MiB of new data, plus a constant per layer.
 */
export const PACK_TARGET = 8 * MiB;
/** A pack buffer holds up to PACK_TARGET plus one object (at most CHUNK_SIZE when stored). */
export const PACK_CAPACITY = PACK_TARGET + CHUNK_SIZE;
/** Pack buffers per import: one filling while the other is written. */
const PACK_BUFFERS = 2;
/** Index files loaded at once on refresh. */
const INDEX_LOAD_CONCURRENCY = 8;
/** Listings of one refresh at most, while index files vanish under it (compactions). */
const INDEX_LIST_PASSES = 3;

function hex(hash: Uint8Array): string {
  return Buffer.from(hash.buffer, hash.byteOffset, hash.length).toString('hex');
}

/** A group of objects read with one ranged GET and verified together. */
export interface ReadGroup {
  readonly key: string;
  readonly offset: number;
  readonly length: number;
  readonly items: readonly VerifyItem[];
}

/** Where the next bytes of a read go, or how many of them to skip (see ObjectStore.readRangeInto). */
export type ReadPart = Uint8Array | number;

export class ObjectStore {
  readonly backend: Backend;
  readonly limiter: Limiter;
  index = new ObjectIndex();
  #loaded = new Set<string>();
  #newest = 0;
  #refreshing: Promise<void> | undefined;
  #scratch = Buffer.alloc(0);

  constructor(backend: Backend, limiter: Limiter) {
    this.backend = backend;
    this.limiter = limiter;
  }

  /**
   * Loads index files published since the last refresh (one LIST, plus one GET per new file).
   * Concurrent callers share one refresh.
   */
  refresh(signal?: AbortSignal): Promise<void> {
    this.#refreshing ??= this.#refresh(signal).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  async #refresh(signal?: AbortSignal): Promise<void> {
    await loadIndexFiles(
      this.backend,
      this.limiter,
      {
        after: () => (this.#newest === 0 ? undefined : indexListCursor(this.#newest)),
        loaded: (key) => this.#loaded.has(key),
        signal,
      },
      (key, bytes) => this.addIndexFile(key, bytes),
    );
  }

  /**
   * Forgets every index file loaded: the next refresh loads them all again. For a process whose
   * store was garbage-collected by another (gc.ts rewrote the index files and deleted packs): what
   * it loaded before may name objects that are gone. Call with no import or read running.
   */
  async forget(): Promise<void> {
    await this.#refreshing?.catch(() => undefined);
    this.index = new ObjectIndex();
    this.#loaded = new Set<string>();
    this.#newest = 0;
  }

  /** Verifies an index file against the hash in its key and adds its entries. */
  addIndexFile(key: string, bytes: Uint8Array): void {
    const parsed = verifyIndexFile(key, bytes);
    this.index.addIndexFile(bytes, key);
    this.#loaded.add(key);
    this.#newest = Math.max(this.#newest, parsed.timeMs);
  }

  /** Publishes an import's index file and adds it to the in-memory index. Returns its key. */
  async publishIndex(entries: IndexBuilder, signal?: AbortSignal): Promise<string> {
    const bytes = entries.encode();
    const key = indexKey(Date.now(), digestHex(digestOf(bytes)));
    await this.limiter.io.run(() => this.backend.put(key, bytes, { signal }), signal);
    this.addIndexFile(key, bytes);
    return key;
  }

  /** Location of an object, or ObjectNotFoundError naming it and `context`. */
  locate(hash: Uint8Array, context: string): ObjectLocation {
    const loc = this.index.get(hash);
    if (loc === undefined) {
      const h = hex(hash);
      throw new ObjectNotFoundError(
        `sha256:${h}`,
        `object sha256:${h} (${context}) is in no index of the store`,
      );
    }
    return loc;
  }

  /**
   * `length` bytes of `key` at `offset`, with one GET. Throws CorruptObjectError naming the key
   * (and `what`, the first object in the range) on a short read.
   */
  async readRange(
    key: string,
    offset: number,
    length: number,
    what: string,
    signal?: AbortSignal,
  ): Promise<Buffer> {
    const data = await this.limiter.io.run(
      () => this.backend.getBytes(key, { range: { offset, length }, signal }),
      signal,
    );
    if (data.length < length) {
      throw new CorruptObjectError(
        key,
        `short read: ${data.length} of ${length} bytes at offset ${offset}${what}`,
      );
    }
    return data;
  }

  /**
   * `length` bytes of `key` at `offset`, with one GET, put in place: each part is either where
   * the next bytes go (a view, possibly of shared memory) or a number of bytes to skip (read into
   * a scratch buffer). Throws CorruptObjectError naming the key (and `what`) on a short read.
   */
  async readRangeInto(
    key: string,
    offset: number,
    length: number,
    parts: readonly ReadPart[],
    what: string,
    signal?: AbortSignal,
  ): Promise<void> {
    const views = parts.map((p) => (typeof p === 'number' ? this.#skipped(p) : p));
    const read = await this.limiter.io.run(
      () => this.backend.getBytesInto(key, { offset, length }, views, signal),
      signal,
    );
    if (read < length) {
      throw new CorruptObjectError(key, `short read: ${read} of ${length} bytes at offset ${offset}${what}`);
    }
  }

  /** Where `n` skipped bytes are read: one scratch buffer for every read (its bytes are not used). */
  #skipped(n: number): Uint8Array {
    if (this.#scratch.length < n) this.#scratch = Buffer.allocUnsafe(n);
    return this.#scratch.subarray(0, n);
  }

  /**
   * Reads a group with one GET and verifies each object (decompressed size and sha256, in a
   * worker). Returns the objects' raw bytes back to back. Throws CorruptObjectError naming the key
   * (and offset) and the object.
   */
  async readGroup(group: ReadGroup, signal?: AbortSignal): Promise<Buffer> {
    const first = group.items[0];
    const data = await this.readRange(
      group.key,
      group.offset,
      group.length,
      first === undefined ? '' : ` (object sha256:${first.hash})`,
      signal,
    );
    const owned = data.byteOffset === 0 && data.buffer.byteLength === data.length;
    const buffer = owned
      ? (data.buffer as ArrayBuffer)
      : (data.buffer.slice(data.byteOffset, data.byteOffset + data.length) as ArrayBuffer);
    const res = await this.limiter.pool.run<VerifyRequest>(
      { op: 'verify', data: buffer, items: group.items },
      [buffer],
    );
    if (res.bad !== undefined || res.out === undefined) {
      const item = group.items[res.bad?.index ?? 0]!;
      throw new CorruptObjectError(
        group.key,
        `object sha256:${item.hash} at offset ${group.offset + item.offset}: ${res.bad?.reason ?? 'unknown'}`,
      );
    }
    // The worker's buffer has a spare byte at the end (see worker.ts verify).
    return Buffer.from(
      res.out,
      0,
      group.items.reduce((n, it) => n + it.raw, 0),
    );
  }

  /** One object, verified. */
  async readObject(hash: Uint8Array, context: string, signal?: AbortSignal): Promise<Buffer> {
    const loc = this.locate(hash, context);
    return this.readGroup(
      {
        key: packKey(loc.pack),
        offset: loc.offset,
        length: loc.stored,
        items: [{ offset: 0, stored: loc.stored, raw: loc.raw, zstd: loc.codec === 'zstd', hash: hex(hash) }],
      },
      signal,
    );
  }

  /** A stream of several objects' contents in order (a chunked file), verified object by object. */
  streamObjects(hashes: readonly Uint8Array[], context: string, signal?: AbortSignal): Readable {
    // Resolve all locations first so a missing object fails before any byte is returned.
    for (const h of hashes) this.locate(h, context);
    const read = (h: Uint8Array): Promise<Buffer> => this.readObject(h, context, signal);
    async function* gen(): AsyncGenerator<Buffer> {
      for (const h of hashes) yield await read(h);
    }
    return Readable.from(gen(), { objectMode: false });
  }
}

interface PackBuffer {
  readonly buf: Buffer;
  id: string;
  used: number;
}

/**
 * Per-import object writer. Batches hashed by the workers are accepted in input order; new
 * objects are appended to the current pack, written when it reaches PACK_TARGET. Nothing it writes is reachable until {@link ObjectStore.publishIndex} runs with
 * {@link ObjectWriter.entries}.
 */
export class ObjectWriter {
  readonly objects: ObjectStore;
  readonly stats: ImportStats;
  readonly #signal: AbortSignal;
  readonly #fail: (err: unknown) => void;
  /** Objects written (or being written) by this import. */
  #mine = new KeyTable();
  #entries = new IndexBuilder();
  #packsWritten: string[] = [];
  #free: PackBuffer[] = [];
  #current: PackBuffer | undefined;
  #flushing = new Set<Promise<void>>();
  #allocated = 0;
  #waitingForBuffer: (() => void)[] = [];

  /** `fail` is told about a failed pack write at once (the import aborts instead of reading on). */
  constructor(objects: ObjectStore, stats: ImportStats, signal: AbortSignal, fail: (err: unknown) => void) {
    this.objects = objects;
    this.stats = stats;
    this.#signal = signal;
    this.#fail = fail;
  }

  /** Index entries of the objects this import wrote. */
  get entries(): IndexBuilder {
    return this.#entries;
  }

  /**
   * Keys of every pack this import started to write (to delete them if the import fails; call
   * after {@link ObjectWriter.settle}).
   */
  get packKeys(): readonly string[] {
    return this.#packsWritten.map(packKey);
  }

  /**
   * Takes the hashed objects of shared block `block` (`objects`: offset and length pairs in it):
   * copies those not already in the store into packs, raw or as the zstd frame the worker wrote
   * over the object's bytes. Resolves once nothing refers to the block.
   */
  async accept(res: SplitResponse, block: number, objects: Uint32Array): Promise<void> {
    const blocks = this.objects.limiter.blocks;
    const input = blocks.inputView(block);
    const count = objects.length / 2;
    for (let i = 0; i < count; i++) {
      const offset = objects[2 * i]!;
      const raw = objects[2 * i + 1]!;
      const hash = res.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
      const zLen = res.compressedLengths[i]!;
      this.stats.objects++;
      if (this.#mine.find(hash) >= 0 || this.objects.index.has(hash)) {
        this.stats.objectsReused++;
        this.stats.bytesReused += raw;
        continue;
      }
      const stored = input.subarray(offset, offset + (zLen < 0 ? raw : zLen));
      this.#mine.push(hash);
      this.stats.objectsWritten++;
      this.stats.bytesWritten += raw;
      this.stats.bytesStored += stored.length;
      const pack = await this.#packWith(stored.length);
      stored.copy(pack.buf, pack.used);
      this.#entries.add(hash, pack.id, pack.used, stored.length, raw, zLen < 0 ? 'raw' : 'zstd');
      pack.used += stored.length;
      if (pack.used >= PACK_TARGET) this.#flush();
    }
  }

  /** Writes the last pack and waits for every write. */
  async finish(): Promise<void> {
    if (this.#current !== undefined && this.#current.used > 0) this.#flush();
    while (this.#flushing.size > 0) await Promise.all([...this.#flushing]);
    this.#returnBuffers();
  }

  /** Waits for in-flight writes after a failure (their errors are already reported). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.#flushing]);
    this.#returnBuffers();
  }

  #returnBuffers(): void {
    if (this.#current !== undefined) this.#free.push(this.#current);
    this.#current = undefined;
    for (const b of this.#free) this.objects.limiter.buffers.give(b.buf.buffer as ArrayBuffer);
    this.#free = [];
  }

  /**
   * A pack buffer from the limiter's pool: a view the backend writes without the page cache where
   * it can (backend.ts directWriteView), else the whole buffer.
   */
  async #newPackBuffer(): Promise<Buffer> {
    const { backend, limiter } = this.objects;
    if (backend.directWriteView === undefined) return Buffer.from(limiter.buffers.take(PACK_CAPACITY));
    const buffer = limiter.buffers.take(PACK_CAPACITY + DIRECT_WRITE_SLACK);
    const view = await backend.directWriteView(buffer, PACK_CAPACITY);
    return view === undefined
      ? Buffer.from(buffer, 0, PACK_CAPACITY)
      : Buffer.from(view.buffer, view.byteOffset, view.length);
  }

  async #packWith(bytes: number): Promise<PackBuffer> {
    if (this.#current !== undefined && this.#current.used + bytes > this.#current.buf.length) this.#flush();
    if (this.#current === undefined) {
      let b = this.#free.pop();
      if (b === undefined && this.#allocated < PACK_BUFFERS) {
        this.#allocated++;
        b = { buf: await this.#newPackBuffer(), id: '', used: 0 };
      }
      while (b === undefined) {
        await new Promise<void>((resolve) => this.#waitingForBuffer.push(resolve));
        this.#signal.throwIfAborted();
        b = this.#free.pop();
      }
      b.id = randomBytes(PACK_ID_BYTES).toString('hex');
      b.used = 0;
      this.#current = b;
    }
    return this.#current;
  }

  #flush(): void {
    const pack = this.#current;
    if (pack === undefined) return;
    this.#current = undefined;
    const key = packKey(pack.id);
    this.#packsWritten.push(pack.id);
    // No abort signal: an aborted PUT may still land on the server after the import has given up
    // and cleaned up. A pack write runs to its end (it is at most PACK_CAPACITY); a failed import
    // deletes every pack it started.
    const write = this.objects.limiter.io
      .run(() => this.objects.backend.put(key, pack.buf.subarray(0, pack.used)))
      .then(() => {
        this.stats.packsWritten++;
      })
      .finally(() => {
        this.#flushing.delete(write);
        this.#free.push(pack);
        this.#waitingForBuffer.shift()?.();
      });
    this.#flushing.add(write);
    // Also surfaces through finish().
    write.catch(this.#fail);
  }
}

/** Verifies an index file against the hash in its key (CorruptObjectError naming the key). */
export function verifyIndexFile(key: string, bytes: Uint8Array): { timeMs: number } {
  const parsed = parseIndexKey(key);
  if (parsed === undefined) throw new Error(`not an index key: ${key}`);
  const actual = digestHex(digestOf(bytes));
  if (actual !== parsed.hashHex) throw new CorruptObjectError(key, `content hashes to sha256:${actual}`);
  return parsed;
}

/**
 * Lists the index files (after `after()`, re-evaluated per listing; those `loaded` says are not
 * listed) and hands each one's bytes to `add`, at most {@link INDEX_LOAD_CONCURRENCY} read at
 * once. An index file listed but gone when it is read was merged by a compaction
 * (compaction.ts), which wrote the merged files first, named after every file it listed: listing
 * again finds them. Three listings in a row that lose a file fail, naming it.
 */
export async function loadIndexFiles(
  backend: Backend,
  limiter: Limiter,
  options: { after: () => string | undefined; loaded: (key: string) => boolean; signal?: AbortSignal },
  add: (key: string, bytes: Buffer) => void,
): Promise<void> {
  const { signal } = options;
  for (let pass = 1; ; pass++) {
    const fresh: string[] = [];
    for await (const { key } of listAll(backend, PREFIX.index, { signal, after: options.after() })) {
      if (!options.loaded(key) && parseIndexKey(key) !== undefined) fresh.push(key);
    }
    let vanished: ObjectNotFoundError | undefined;
    await mapLimited(fresh, INDEX_LOAD_CONCURRENCY, async (key) => {
      let bytes: Buffer;
      try {
        bytes = await limiter.io.run(() => backend.getBytes(key, { signal }), signal);
      } catch (err) {
        if (!(err instanceof ObjectNotFoundError)) throw err;
        vanished = err;
        return;
      }
      add(key, bytes);
    });
    if (vanished === undefined) return;
    if (pass === INDEX_LIST_PASSES) {
      throw new ObjectNotFoundError(
        vanished.key,
        `index file ${vanished.key} was deleted between listing and reading, ${pass} times in a row`,
        { cause: vanished },
      );
    }
  }
}
