/**
 * `stevedore compact [--min-age DURATION] [--orphan-age DURATION] [--export-age DURATION|never]
 * [--json]`: store maintenance. Merges the index files (one per import) into a few, so that
 * processes opening the store load a few files instead of thousands, deletes what crashed imports
 * left behind, and deletes stored exports once they are old. Safe while workers pull and export;
 * see docs/store-format.md ("Index compaction", "Crash leftovers") and docs/export.md ("Export
 * jobs").
 */
import { expireStoredExports, type ExpireExportsResult } from '@stevedore/export';
import { DEFAULT_ORPHAN_MIN_AGE_MS, type CompactResult, type RemoveOrphansResult } from '@stevedore/store';
import type { Redis } from 'ioredis';
import { LockManager } from '@stevedore/lock';
import { holding, MAINTENANCE_LOCK, MaintenanceBusyError, maintenanceConnection } from '@stevedore/pipeline';
import { withStore } from './images.ts';

/** Stored exports are kept a week by default: long enough to fetch, short enough not to pile up. */
export const DEFAULT_EXPORT_AGE_MS = 7 * 86_400_000;

const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration like `90s`, `10m`, `2h`, `7d` in milliseconds; undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)([smhd])$/.exec(text);
  return m === null ? undefined : Number(m[1]) * UNIT_MS[m[2]!]!;
}

const MB = 1000 * 1000;
const mb = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`;

export function describeCompaction(r: CompactResult): string {
  if (r.merged === 0) return `Index: nothing to merge (${r.before} file(s), fewer than two old enough).\n`;
  return (
    `Index: merged ${r.merged} files (${mb(r.bytesBefore)}) into ${r.written.length} (${mb(r.bytesAfter)}), ` +
    `${r.entries} entries; ${r.before - r.merged} newer file(s) left as they are.\n`
  );
}

export function describeOrphans(r: RemoveOrphansResult): string {
  return (
    `Crash leftovers deleted: ${r.packs.count} pack(s) (${mb(r.packs.bytes)}), ` +
    `${r.splitstreams.count} splitstream(s) (${mb(r.splitstreams.bytes)}), ` +
    `${r.temporaries.count} temporary file(s) (${mb(r.temporaries.bytes)}).\n`
  );
}

export function describeExports(r: ExpireExportsResult | undefined): string {
  if (r === undefined) return 'Exports: kept (--export-age never).\n';
  return (
    `Exports deleted: ${r.expired.count} expired (${mb(r.expired.bytes)}), ` +
    `${r.incomplete.count} without a record (${mb(r.incomplete.bytes)}); ${r.kept} kept.\n`
  );
}

export async function compactCommand(
  options: { minAgeMs?: number; orphanAgeMs?: number; exportAgeMs?: number; json: boolean; redisUrl: string },
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  // A garbage collection rewrites the index files too: the two take turns (the maintenance lock).
  // Without Redis no collection can run (it needs Redis), so the compaction goes ahead unguarded.
  let connection: Redis | undefined;
  try {
    connection = await maintenanceConnection(options.redisUrl);
  } catch (e) {
    err.write(
      `stevedore compact: ${e instanceof Error ? e.message : String(e)}; compacting without the maintenance lock\n`,
    );
  }
  try {
    if (connection === undefined) return await compactStore(options, out);
    const locks = new LockManager(connection);
    return await holding(locks, MAINTENANCE_LOCK, () => compactStore(options, out));
  } catch (e) {
    if (e instanceof MaintenanceBusyError) {
      err.write(`stevedore compact: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    connection?.disconnect();
  }
}

async function compactStore(
  options: { minAgeMs?: number; orphanAgeMs?: number; exportAgeMs?: number; json: boolean },
  out: NodeJS.WritableStream,
): Promise<number> {
  return withStore(async (store) => {
    const index = await store.compactIndex({ minAgeMs: options.minAgeMs });
    const orphans = await store.removeOrphans({ minAgeMs: options.orphanAgeMs });
    const exportAgeMs = options.exportAgeMs ?? DEFAULT_EXPORT_AGE_MS;
    const exports = Number.isFinite(exportAgeMs)
      ? await expireStoredExports(store, {
          olderThanMs: exportAgeMs,
          incompleteOlderThanMs: options.orphanAgeMs ?? DEFAULT_ORPHAN_MIN_AGE_MS,
        })
      : undefined;
    out.write(
      options.json
        ? `${JSON.stringify({ index, orphans, exports: exports ?? null })}\n`
        : describeCompaction(index) + describeOrphans(orphans) + describeExports(exports),
    );
    return 0;
  });
}
