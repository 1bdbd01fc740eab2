/**
 * `stevedore compact [--min-age DURATION] [--json]`: merges the store's index files (one per
 * import) into a few, so that processes opening the store load a few files instead of thousands.
 * Safe while workers pull and export; see docs/store-format.md ("Index compaction").
 */
import type { CompactResult } from '@stevedore/store';
import { withStore } from './images.ts';

const UNIT_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration like `90s`, `10m`, `2h`, `7d` in milliseconds; undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+)([smhd])$/.exec(text);
  return m === null ? undefined : Number(m[1]) * UNIT_MS[m[2]!]!;
}

const MB = 1000 * 1000;

export function describeCompaction(r: CompactResult): string {
  if (r.merged === 0) return `Nothing to merge: ${r.before} index file(s), fewer than two old enough.\n`;
  const left = r.before - r.merged;
  return (
    `Merged ${r.merged} index files (${(r.bytesBefore / MB).toFixed(1)} MB) into ${r.written.length} ` +
    `(${(r.bytesAfter / MB).toFixed(1)} MB): ${r.objects} objects, ${r.duplicates} duplicate entries dropped; ` +
    `${left} newer file(s) left as they are.\n`
  );
}

export async function compactCommand(
  options: { minAgeMs?: number; json: boolean },
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  return withStore(async (store) => {
    const result = await store.compactIndex({ minAgeMs: options.minAgeMs });
    out.write(options.json ? `${JSON.stringify(result)}\n` : describeCompaction(result));
    return 0;
  });
}
