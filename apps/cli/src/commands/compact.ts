/**
 * `stevedore compact [--min-age DURATION] [--orphan-age DURATION] [--json]`: store maintenance.
 * Merges the index files (one per import) into a few, so that processes opening the store load a
 * few files instead of thousands, then deletes what crashed imports left behind. Safe while
 * workers pull and export; see docs/store-format.md ("Index compaction", "Crash leftovers").
 */
import type { CompactResult, RemoveOrphansResult } from '@stevedore/store';
import { withStore } from './images.ts';

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

export async function compactCommand(
  options: { minAgeMs?: number; orphanAgeMs?: number; json: boolean },
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  return withStore(async (store) => {
    const index = await store.compactIndex({ minAgeMs: options.minAgeMs });
    const orphans = await store.removeOrphans({ minAgeMs: options.orphanAgeMs });
    out.write(
      options.json
        ? `${JSON.stringify({ index, orphans })}\n`
        : describeCompaction(index) + describeOrphans(orphans),
    );
    return 0;
  });
}
