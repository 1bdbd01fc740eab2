/**
 * Index compaction: every import publishes one index file, and a process that opens the store
 * loads them all (one GET each), so a store of many thousands of imports starts slowly. Compaction
 * merges the index files older than a minimum age into a few large ones, then deletes the inputs.
 * Packs are not touched: only the index files are rewritten, with every entry they held.
 * docs/store-format.md ("Index compaction") has the order of steps and why readers stay correct.
 *
 * 1. List the index files; the inputs are those named more than `minAgeMs` ago (at least two).
 * 2. Load and verify every input against its name, merging as they come (every entry kept, so
 *    every pack stays listed: orphans.ts tells published packs from crash leftovers that way).
 * 3. Put the merged files, named after every listed index file (so every reader lists them), and
 *    sync them.
 * 4. Delete the inputs, and sync.
 *
 * Merged files are written as they fill (step 3 overlaps step 2). A failure before step 4 deletes
 * nothing: the merged files written so far stay, repeating entries of inputs that are all still
 * there (harmless; the next compaction merges them too). They are not taken back: two compactions
 * of the same files may write a merged file under the same key, and taking one back could delete
 * the other's, whose inputs are gone. An input that vanishes while it is loaded means another
 * compaction ran at the same time: this one stops ({@link IndexCompactionConflictError}).
 */
import { digestHex, digestOf } from '@stevedore/oci/spec';
import { listAll } from './backend/backend.ts';
import { ObjectNotFoundError } from './errors.ts';
import { INDEX_RELIST_WINDOW_MS, indexKey, parseIndexKey, PREFIX } from './layout.ts';
import { mapLimited } from './map-limited.ts';
import { verifyIndexFile, type ObjectStore } from './objects.ts';
import { IndexMerger } from './pack-index.ts';

/**
 * Index files named less than this long ago stay as they are: every process lists them again on
 * each refresh anyway (the relist window), and merging them would make every process load their
 * entries twice.
 */
export const DEFAULT_COMPACT_MIN_AGE_MS = INDEX_RELIST_WINDOW_MS;
/**
 * Largest merged index file: one PUT everywhere (some S3 servers cap request bodies near 11 MiB),
 * about 170,000 entries. A reader loads a file whole.
 */
export const MERGED_INDEX_MAX_BYTES = 8 * 1024 * 1024;
/** Inputs loaded at once. */
const LOAD_CONCURRENCY = 8;

export interface CompactOptions {
  /** Index files named at least this long ago are merged (default {@link DEFAULT_COMPACT_MIN_AGE_MS}). */
  readonly minAgeMs?: number;
  readonly signal?: AbortSignal;
}

export interface CompactResult {
  /** Index files before the compaction. */
  readonly before: number;
  /** Index files merged and deleted (0 when there was nothing to merge). */
  readonly merged: number;
  /** The merged index files written. */
  readonly written: readonly string[];
  /** Entries in the merged files (all of the inputs'). */
  readonly entries: number;
  /** Bytes of the merged inputs, and of the files written in their place. */
  readonly bytesBefore: number;
  readonly bytesAfter: number;
}

/** Another compaction deleted an index file this one was merging; this one deleted no input. */
export class IndexCompactionConflictError extends Error {
  override readonly name = 'IndexCompactionConflictError';
}

export async function compactIndex(
  objects: ObjectStore,
  options: CompactOptions = {},
): Promise<CompactResult> {
  const { backend, limiter } = objects;
  const { signal } = options;
  const now = Date.now();
  const cutoff = now - (options.minAgeMs ?? DEFAULT_COMPACT_MIN_AGE_MS);
  const inputs: { key: string; size: number }[] = [];
  let listed = 0;
  let newest = 0;
  for await (const { key, size } of listAll(backend, PREFIX.index, { signal })) {
    const parsed = parseIndexKey(key);
    if (parsed === undefined) continue;
    listed++;
    newest = Math.max(newest, parsed.timeMs);
    if (parsed.timeMs < cutoff) inputs.push({ key, size });
  }
  const nothing = {
    before: listed,
    merged: 0,
    written: [],
    entries: 0,
    bytesBefore: 0,
    bytesAfter: 0,
  };
  if (inputs.length < 2) return nothing;

  // Named after every index file listed: a reader that lists from any cursor it may hold, or pages
  // through the index while the inputs go, comes to these files (docs/store-format.md). Not added
  // to this process's index: its next refresh lists them like any other process's does.
  const timeMs = Math.max(now, newest + 1);
  const written: string[] = [];
  let bytesAfter = 0;
  const write = async (file: Buffer): Promise<void> => {
    const key = indexKey(timeMs, digestHex(digestOf(file)));
    await limiter.io.run(() => backend.put(key, file, { signal }), signal);
    written.push(key);
    bytesAfter += file.length;
  };
  // Merged files are written as they fill, so memory holds one of them, not the whole index.
  const merger = new IndexMerger(MERGED_INDEX_MAX_BYTES);
  await mapLimited(inputs, LOAD_CONCURRENCY, async ({ key }) => {
    let bytes: Buffer;
    try {
      bytes = await limiter.io.run(() => backend.getBytes(key, { signal }), signal);
    } catch (err) {
      if (!(err instanceof ObjectNotFoundError)) throw err;
      throw new IndexCompactionConflictError(
        `index file ${key} was deleted while it was being merged (another compaction?); nothing was deleted`,
        { cause: err },
      );
    }
    verifyIndexFile(key, bytes); // a corrupt input stops the compaction before anything is deleted
    merger.add(bytes, key);
    for (const file of merger.takeFull()) await write(file);
  });
  for (const file of merger.finish()) await write(file);
  await backend.sync();
  await mapLimited(inputs, LOAD_CONCURRENCY, ({ key }) =>
    limiter.io.run(() => backend.delete(key, { signal }), signal),
  );
  await backend.sync();
  return {
    before: listed,
    merged: inputs.length,
    written,
    entries: merger.entries,
    bytesBefore: inputs.reduce((n, i) => n + i.size, 0),
    bytesAfter,
  };
}
