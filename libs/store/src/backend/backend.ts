/**
 * The storage backend interface: a flat key space of immutable objects, as on S3. Keys are
 * `/`-separated relative paths of characters safe on both a POSIX filesystem and S3 (the store
 * makes them; see docs/store-format.md "Layout").
 *
 * Contract:
 * - `put` is atomic: readers see the old object (or none) or the whole new one, never a part; a
 *   failed or aborted put leaves nothing visible. A stream body that errors (e.g. a verifying
 *   transform that finds a digest mismatch at its end) aborts the put.
 * - `get` of a missing key throws {@link ObjectNotFoundError}.
 * - `delete` of a missing key succeeds (idempotent).
 * - `sync` makes every put and delete this backend instance finished before the call durable.
 *   Backends may defer durability until then (the directory backend does: one sync per commit).
 * - `list` returns keys in ascending byte order, paginated with a cursor (the last key returned).
 */
import { pipeline, Transform, type Readable } from 'node:stream';

/** Request kinds counted by every backend (HTTP methods on S3, the equivalent on a directory). */
export type RequestKind = 'PUT' | 'GET' | 'HEAD' | 'LIST' | 'DELETE' | 'POST';

/** Request and byte counters, for benchmarks and tests. Mutated in place by the backend. */
export interface BackendStats {
  readonly requests: Record<RequestKind, number>;
  /** Body bytes sent by puts. */
  bytesWritten: number;
  /** Body bytes received by gets. */
  bytesRead: number;
}

export function newStats(): BackendStats {
  return {
    requests: { PUT: 0, GET: 0, HEAD: 0, LIST: 0, DELETE: 0, POST: 0 },
    bytesWritten: 0,
    bytesRead: 0,
  };
}

/** A copy of the counters (to diff before/after). */
export function snapshotStats(s: BackendStats): BackendStats {
  return { requests: { ...s.requests }, bytesWritten: s.bytesWritten, bytesRead: s.bytesRead };
}

/** `after - before`, per counter. */
export function diffStats(after: BackendStats, before: BackendStats): BackendStats {
  const requests = { ...after.requests };
  for (const k of Object.keys(requests) as RequestKind[]) requests[k] -= before.requests[k];
  return {
    requests,
    bytesWritten: after.bytesWritten - before.bytesWritten,
    bytesRead: after.bytesRead - before.bytesRead,
  };
}

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  /** When the object was written (ms since the epoch), where `list` reports it (both backends do). */
  readonly modified?: number;
}

/** A byte range: `length` bytes from `offset`. */
export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

export interface PutOptions {
  readonly signal?: AbortSignal;
  /** Body length when known (lets S3 do a single PUT without buffering). */
  readonly size?: number;
}

export interface GetOptions {
  readonly signal?: AbortSignal;
  readonly range?: ByteRange;
}

export interface ListOptions {
  /** Return keys after this one (the cursor of the previous page). */
  readonly after?: string;
  /** Page size; backends may return fewer. */
  readonly limit?: number;
  readonly signal?: AbortSignal;
}

export interface ListPage {
  readonly objects: readonly ObjectInfo[];
  /** Pass as `after` to get the next page; undefined on the last page. */
  readonly cursor: string | undefined;
}

export interface Backend {
  /** For messages and benchmarks, e.g. `directory:/var/lib/stevedore` or `s3://bucket/prefix`. */
  readonly description: string;
  readonly stats: BackendStats;
  put(key: string, body: Uint8Array | Readable, options?: PutOptions): Promise<void>;
  /** A stream of the object (or of `range`); throws ObjectNotFoundError before returning. */
  get(key: string, options?: GetOptions): Promise<Readable>;
  /** The object (or `range`) in memory: for small objects and pack ranges only. */
  getBytes(key: string, options?: GetOptions): Promise<Buffer>;
  /**
   * Reads `range` of the object straight into `parts`, back to back (a scattered read: the parts
   * may be views of memory the caller shares with others), and returns how many bytes it read:
   * fewer than the range only at the object's end.
   */
  getBytesInto(
    key: string,
    range: ByteRange,
    parts: readonly Uint8Array[],
    signal?: AbortSignal,
  ): Promise<number>;
  head(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo | undefined>;
  list(prefix: string, options?: ListOptions): Promise<ListPage>;
  delete(key: string, options?: { signal?: AbortSignal }): Promise<void>;
  sync(): Promise<void>;
  close(): Promise<void>;
  /**
   * Removes what puts interrupted by a crash left where no key shows it (a directory's temporary
   * files), if older than `olderThanMs`; returns how many and their bytes. Backends with nothing of
   * the kind leave it out (S3: an interrupted multipart upload is aborted by the bucket's lifecycle
   * rule, infra/README.md).
   */
  removeStaleTemporaries?(olderThanMs: number): Promise<{ count: number; bytes: number }>;
  /**
   * A view of `length` bytes of `buffer` (allocated with `length + DIRECT_WRITE_SLACK` bytes) that
   * {@link Backend.put} writes without the page cache, or undefined where the backend cannot. For
   * data written once and not read back soon (packs). The view's place in `buffer` is fixed: ask
   * once per buffer and keep the view.
   */
  directWriteView?(buffer: ArrayBuffer, length: number): Promise<Uint8Array | undefined>;
}

/** Default page size of {@link listAll} (S3's maximum). */
export const LIST_PAGE_SIZE = 1000;

/** Every object under `prefix`, page after page. */
export async function* listAll(
  backend: Backend,
  prefix: string,
  options: { signal?: AbortSignal; after?: string } = {},
): AsyncGenerator<ObjectInfo, void, undefined> {
  let after = options.after;
  for (;;) {
    const page = await backend.list(prefix, { after, limit: LIST_PAGE_SIZE, signal: options.signal });
    yield* page.objects;
    if (page.cursor === undefined) return;
    after = page.cursor;
  }
}

/**
 * `source` piped through a transform that reports each chunk's length (attaching a 'data' listener
 * instead would start the flow before the consumer is there). Errors propagate both ways.
 */
export function countBytes(source: Readable, add: (bytes: number) => void): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      add(chunk.length);
      callback(null, chunk);
    },
  });
  // Errors reach `counter` (destroyed by pipeline) and whoever reads it.
  pipeline(source, counter, () => {});
  return counter;
}

/** Copies a stream's chunks into `parts`, back to back, in the order they come. */
export class ScatterCopy {
  readonly #parts: readonly Uint8Array[];
  readonly #total: number;
  #part = 0;
  #at = 0;
  #filled = 0;

  constructor(parts: readonly Uint8Array[]) {
    this.#parts = parts;
    this.#total = parts.reduce((n, p) => n + p.length, 0);
  }

  /** Bytes copied so far. */
  get filled(): number {
    return this.#filled;
  }

  /** Copies `chunk`; false (and nothing copied) when it does not fit in what is left. */
  write(chunk: Uint8Array): boolean {
    if (chunk.length > this.#total - this.#filled) return false;
    let pos = 0;
    while (pos < chunk.length) {
      const part = this.#parts[this.#part]!;
      const n = Math.min(part.length - this.#at, chunk.length - pos);
      part.set(chunk.subarray(pos, pos + n), this.#at);
      pos += n;
      this.#at += n;
      if (this.#at === part.length) {
        this.#part++;
        this.#at = 0;
      }
    }
    this.#filled += chunk.length;
    return true;
  }
}
