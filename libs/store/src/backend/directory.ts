/**
 * The directory backend: each key is a file under the root. Puts write a temporary file in
 * `<root>/.tmp/` (same filesystem) and rename it into place, so a reader sees the whole object or
 * nothing.
 *
 * Durability: no fsync per object (composefs-rs measured per-object fdatasync making imports 20x
 * slower). The backend remembers the files it published and the directories it changed since the
 * last {@link DirectoryBackend.sync}; `sync` fsyncs those files, then those directories (so the
 * renames are durable), in one batch. The store writes few, large files (packs of several MiB), so
 * that is a few dozen fsyncs per layer. We prefer it to `syncfs(2)` (`sync --file-system`), which
 * Node does not expose and which would also flush other tenants' dirty data on a shared
 * filesystem; the store calls `sync` once per commit step (docs/store-format.md "Durability").
 *
 * Packs bypass the page cache (O_DIRECT, direct-io.ts) where the filesystem allows it: they are
 * written once and read back rarely. The store allocates pack buffers with slack and asks
 * {@link DirectoryBackend.directWriteView} for an aligned view; `put` of such a view writes it
 * directly. Streamed bodies (blobs, splitstreams) are written directly too, through the staging
 * buffers of {@link DirectFileWriter}; other byte arrays (records, small blobs) through the page
 * cache.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isPassThrough, ObjectNotFoundError } from '../errors.ts';
import { alignUp, DIRECT_WRITE_SLACK, openDirect, probeAlignment, writeAll } from '../direct-io.ts';
import { DirectFileWriter } from '../direct-file-writer.ts';
import { STREAM_CHUNK_BYTES } from '../limiter.ts';
import {
  countBytes,
  newStats,
  type Backend,
  type BackendStats,
  type ByteRange,
  type GetOptions,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type PutOptions,
} from './backend.ts';

/** Temporary files live here, inside the root so renames stay on one filesystem. */
const TMP_DIR = '.tmp';
/** Streamed bodies of a known size below this are written through the page cache. */
const DIRECT_STREAM_MIN_BYTES = 1024 * 1024;
/** fsyncs issued at once by `sync` (they queue on the libuv pool anyway). */
const SYNC_CONCURRENCY = 8;
const SAFE_KEY = /^[A-Za-z0-9._~:@%+=,[\]-]+(\/[A-Za-z0-9._~:@%+=,[\]-]+)*$/;

/** Throws unless `key` is a relative path without `.`/`..` segments, outside `.tmp`. */
export function checkKey(key: string): void {
  if (
    !SAFE_KEY.test(key) ||
    key.split('/').some((s) => s === '.' || s === '..') ||
    key.startsWith(`${TMP_DIR}/`)
  ) {
    throw new Error(`invalid store key ${JSON.stringify(key)}`);
  }
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

export class DirectoryBackend implements Backend {
  readonly root: string;
  readonly description: string;
  readonly stats: BackendStats = newStats();
  #knownDirs = new Set<string>();
  #dirtyFiles = new Set<string>();
  #dirtyDirs = new Set<string>();
  /** Buffers with an aligned view: the view's offset in the buffer. */
  #directViews = new WeakMap<ArrayBufferLike, number>();
  /** False once the filesystem refused O_DIRECT. */
  #directWrites = true;

  private constructor(root: string) {
    this.root = root;
    this.description = `directory:${root}`;
  }

  /** Opens (creating if needed) a store directory. */
  static async open(root: string): Promise<DirectoryBackend> {
    const b = new DirectoryBackend(root);
    await mkdir(join(root, TMP_DIR), { recursive: true });
    return b;
  }

  #path(key: string): string {
    checkKey(key);
    return join(this.root, key);
  }

  async put(key: string, body: Uint8Array | Readable, options: PutOptions = {}): Promise<void> {
    const final = this.#path(key);
    const tmp = join(this.root, TMP_DIR, randomUUID());
    this.stats.requests.PUT++;
    try {
      if (body instanceof Uint8Array && this.#directViews.get(body.buffer) === body.byteOffset) {
        options.signal?.throwIfAborted();
        await writeDirect(tmp, body);
        this.stats.bytesWritten += body.length;
      } else if (body instanceof Uint8Array) {
        await writeFile(tmp, body, { signal: options.signal });
        this.stats.bytesWritten += body.length;
      } else {
        // Streams are blobs and splitstreams, written once: past the page cache where the
        // filesystem allows it. A small one of known size (a config) is not worth 3 MiB of
        // staging buffers.
        const small = options.size !== undefined && options.size < DIRECT_STREAM_MIN_BYTES;
        const out = small ? createWriteStream(tmp) : new DirectFileWriter(tmp);
        await pipeline(body, out, { signal: options.signal });
        this.stats.bytesWritten += out.bytesWritten;
      }
      await this.#ensureDir(dirname(final));
      await rename(tmp, final);
    } catch (err) {
      await rm(tmp, { force: true });
      if (isPassThrough(err)) throw err;
      throw new Error(`put ${key} in ${this.root} failed`, { cause: err });
    }
    this.#dirtyFiles.add(final);
    this.#dirtyDirs.add(dirname(final));
  }

  async directWriteView(buffer: ArrayBuffer, length: number): Promise<Uint8Array | undefined> {
    if (buffer.byteLength < length + DIRECT_WRITE_SLACK) {
      throw new Error(
        `directWriteView: ${buffer.byteLength} bytes is less than ${length} + DIRECT_WRITE_SLACK`,
      );
    }
    if (!this.#directWrites) return undefined;
    let at = this.#directViews.get(buffer);
    if (at === undefined) {
      at = await this.#probeAlignment(buffer);
      if (at === undefined) return undefined;
      this.#directViews.set(buffer, at);
    }
    return new Uint8Array(buffer, at, length);
  }

  /**
   * The aligned place of `buffer` for direct writes, probed on a scratch file in `.tmp/`.
   * Undefined (and direct writes off for this backend) when the filesystem refuses O_DIRECT or no
   * offset works.
   */
  async #probeAlignment(buffer: ArrayBuffer): Promise<number | undefined> {
    const probe = join(this.root, TMP_DIR, `${randomUUID()}.probe`);
    const fh = await openDirect(probe, 0o600).catch(() => undefined);
    if (fh === undefined) {
      this.#directWrites = false;
      return undefined;
    }
    try {
      const at = await probeAlignment(fh, buffer).catch(() => undefined);
      if (at === undefined) this.#directWrites = false;
      return at;
    } finally {
      await fh.close();
      await rm(probe, { force: true });
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const fh = await this.#open(key);
    const range = options.range;
    const stream = fh.createReadStream({
      highWaterMark: STREAM_CHUNK_BYTES,
      ...(range === undefined ? {} : { start: range.offset, end: range.offset + range.length - 1 }),
    });
    if (options.signal !== undefined) {
      const signal = options.signal;
      const onAbort = (): void => {
        stream.destroy(signal.reason instanceof Error ? signal.reason : new Error(`get ${key} aborted`));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal.removeEventListener('abort', onAbort));
    }
    return countBytes(stream, (n) => {
      this.stats.bytesRead += n;
    });
  }

  async getBytes(key: string, options: GetOptions = {}): Promise<Buffer> {
    options.signal?.throwIfAborted();
    const fh = await this.#open(key);
    try {
      const offset = options.range?.offset ?? 0;
      const length = options.range?.length ?? (await fh.stat()).size;
      const buf = Buffer.allocUnsafe(length);
      const filled = await this.#readInto(fh, offset, [buf]);
      return filled === length ? buf : buf.subarray(0, filled);
    } finally {
      await fh.close();
    }
  }

  async getBytesInto(
    key: string,
    range: ByteRange,
    parts: readonly Uint8Array[],
    signal?: AbortSignal,
  ): Promise<number> {
    signal?.throwIfAborted();
    const total = parts.reduce((n, p) => n + p.length, 0);
    if (total !== range.length) {
      throw new Error(`get ${key}: the parts hold ${total} bytes, the range ${range.length}`);
    }
    const fh = await this.#open(key);
    try {
      return await this.#readInto(fh, range.offset, parts);
    } finally {
      await fh.close();
    }
  }

  /** Fills `parts` from `offset` on (preadv), up to the file's end; returns the bytes read. */
  async #readInto(fh: FileHandle, offset: number, parts: readonly Uint8Array[]): Promise<number> {
    const total = parts.reduce((n, p) => n + p.length, 0);
    let filled = 0;
    while (filled < total) {
      // After a short read (or more parts than one call takes), the parts not yet full.
      const { bytesRead } = await fh.readv(remainingParts(parts, filled), offset + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    this.stats.bytesRead += filled;
    return filled;
  }

  async #open(key: string): Promise<FileHandle> {
    const path = this.#path(key);
    this.stats.requests.GET++;
    try {
      return await open(path, 'r');
    } catch (err) {
      if (isErrno(err, 'ENOENT'))
        throw new ObjectNotFoundError(key, `not found: ${key} in ${this.root}`, { cause: err });
      throw new Error(`get ${key} in ${this.root} failed`, { cause: err });
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.#path(key);
    this.stats.requests.HEAD++;
    try {
      const s = await stat(path);
      return s.isFile() ? { key, size: s.size } : undefined;
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return undefined;
      throw new Error(`head ${key} in ${this.root} failed`, { cause: err });
    }
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    this.stats.requests.LIST++;
    const limit = options.limit ?? 1000;
    const after = options.after ?? '';
    const slash = prefix.lastIndexOf('/');
    const startDir = slash < 0 ? '' : prefix.slice(0, slash + 1);
    const objects: ObjectInfo[] = [];
    for await (const info of this.#walk(startDir, prefix, after, options.signal)) {
      objects.push(info);
      if (objects.length === limit) {
        return { objects, cursor: info.key };
      }
    }
    return { objects, cursor: undefined };
  }

  /** Files under `dir` (a key prefix ending in `/`, or '') in S3 key order, filtered. */
  async *#walk(dir: string, prefix: string, after: string, signal?: AbortSignal): AsyncGenerator<ObjectInfo> {
    signal?.throwIfAborted();
    let entries;
    try {
      entries = await readdir(join(this.root, dir), { withFileTypes: true });
    } catch (err) {
      if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return;
      throw new Error(`list ${dir} in ${this.root} failed`, { cause: err });
    }
    // Sort as S3 sorts full keys: a directory `a` sorts as `a/`, after `a-b`.
    const named = entries
      .filter((e) => !(dir === '' && e.name === TMP_DIR))
      .map((e) => ({ entry: e, key: `${dir}${e.name}${e.isDirectory() ? '/' : ''}` }))
      .sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
    for (const { entry, key } of named) {
      if (entry.isDirectory()) {
        // Skip subtrees entirely before the cursor or outside the prefix.
        if (key < after && !after.startsWith(key)) continue;
        if (!key.startsWith(prefix) && !prefix.startsWith(key)) continue;
        yield* this.#walk(key, prefix, after, signal);
      } else if (entry.isFile() && key.startsWith(prefix) && key > after) {
        const s = await stat(join(this.root, key)).catch((err: unknown) => {
          if (isErrno(err, 'ENOENT')) return undefined; // deleted while listing
          throw err;
        });
        if (s !== undefined) yield { key, size: s.size, modified: s.mtimeMs };
      }
    }
  }

  /** Temporary files of puts a crash interrupted (a put removes its own otherwise). */
  async removeStaleTemporaries(olderThanMs: number): Promise<{ count: number; bytes: number }> {
    const dir = join(this.root, TMP_DIR);
    const cutoff = Date.now() - olderThanMs;
    let count = 0;
    let bytes = 0;
    for (const name of await readdir(dir)) {
      const path = join(dir, name);
      const s = await stat(path).catch((err: unknown) => {
        if (isErrno(err, 'ENOENT')) return undefined; // its put finished meanwhile
        throw err;
      });
      if (s === undefined || !s.isFile() || s.mtimeMs >= cutoff) continue;
      await rm(path, { force: true });
      count++;
      bytes += s.size;
    }
    return { count, bytes };
  }

  async delete(key: string): Promise<void> {
    const path = this.#path(key);
    this.stats.requests.DELETE++;
    try {
      await unlink(path);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw new Error(`delete ${key} in ${this.root} failed`, { cause: err });
    }
    this.#dirtyFiles.delete(path);
    this.#dirtyDirs.add(dirname(path));
  }

  async sync(): Promise<void> {
    const files = [...this.#dirtyFiles];
    const dirs = [...this.#dirtyDirs];
    this.#dirtyFiles.clear();
    this.#dirtyDirs.clear();
    try {
      await forEachLimited(files, SYNC_CONCURRENCY, (f) => fsyncPath(f));
      await forEachLimited(dirs, SYNC_CONCURRENCY, (d) => fsyncPath(d));
    } catch (err) {
      // Not synced: keep them for the next attempt.
      for (const f of files) this.#dirtyFiles.add(f);
      for (const d of dirs) this.#dirtyDirs.add(d);
      throw new Error(`sync of ${this.root} failed`, { cause: err });
    }
  }

  async close(): Promise<void> {
    await this.sync();
  }

  async #ensureDir(dir: string): Promise<void> {
    if (this.#knownDirs.has(dir)) return;
    const first = await mkdir(dir, { recursive: true });
    if (first !== undefined) {
      // New directories are durable once their parents are synced.
      for (let d = dir; d.length >= first.length; d = dirname(d)) this.#dirtyDirs.add(dirname(d));
    }
    this.#knownDirs.add(dir);
  }
}

/**
 * Writes `body` (an aligned view from {@link DirectoryBackend.directWriteView}) to a new file with
 * O_DIRECT: whole blocks, the last one past the body's end (the view has slack after it), then
 * truncated to the body's length.
 */
async function writeDirect(path: string, body: Uint8Array): Promise<void> {
  const padded = alignUp(body.length);
  const fh = await openDirect(path, 0o644);
  if (fh === undefined) throw new Error(`${path}: direct writes refused after the probe allowed them`);
  try {
    await writeAll(fh, new Uint8Array(body.buffer, body.byteOffset, padded), 0);
    if (padded !== body.length) await fh.truncate(body.length);
  } finally {
    await fh.close();
  }
}

async function fsyncPath(path: string): Promise<void> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return; // deleted since: nothing to make durable
    throw err;
  }
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Runs `fn` over `items` with at most `limit` at once; rejects with the first failure. */
export async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const run = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, run));
}

/** `parts` without their first `skip` bytes (views; parts already full are left out). */
function remainingParts(parts: readonly Uint8Array[], skip: number): Uint8Array[] {
  if (skip === 0) return parts as Uint8Array[];
  const rest: Uint8Array[] = [];
  let left = skip;
  for (const p of parts) {
    if (left >= p.length) {
      left -= p.length;
      continue;
    }
    rest.push(left === 0 ? p : p.subarray(left));
    left = 0;
  }
  return rest;
}
