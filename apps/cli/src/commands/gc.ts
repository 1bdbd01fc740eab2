/**
 * `stevedore gc [--dry-run] [--repack-below FRACTION] [--drain-timeout DURATION] [--json]`:
 * deletes what no reference reaches (images, layers, blobs, splitstreams) and rewrites packs that
 * are mostly garbage, while the workers wait (libs/pipeline gc.ts: a Redis gate every job passes,
 * so it needs the Redis the workers use). Exit 0 when done, 1 when it could not run (another
 * collection or a compaction running, jobs still active at the drain timeout, Redis unreachable) or
 * the store is damaged (records were collected, packs left alone: run `stevedore verify`).
 */
import {
  DrainTimeoutError,
  maintenanceConnection,
  MaintenanceBusyError,
  runGarbageCollection,
  type GcRunResult,
} from '@stevedore/pipeline';
import { withStore } from './images.ts';

const MB = 1000 * 1000;
/** Two decimals below 10 MB: a small pack or splitstream is not shown as 0.0 MB. */
const mb = (bytes: number): string => `${(bytes / MB).toFixed(bytes < 10 * MB ? 2 : 1)} MB`;

function index(r: GcRunResult): string {
  const packsGo = r.deleted.packs.count > 0 || r.repacked.packs.count > 0;
  if (!packsGo) return `Index: ${r.indexFiles.before} file(s) left as they are (no pack goes)`;
  return r.dryRun
    ? `Index: ${r.indexFiles.before} file(s) would be replaced by one set listing the live objects`
    : `Index: ${r.indexFiles.before} file(s) replaced by ${r.indexFiles.written}`;
}

export function describeCollection(r: GcRunResult): string {
  const d = r.deleted;
  const lines = [
    r.dryRun ? 'Dry run: nothing was changed. A collection would delete:' : 'Deleted:',
    `  ${d.images.count} image(s), ${d.layers.count} layer(s) with ${d.splitstreams.count} splitstream(s) (${mb(d.splitstreams.bytes)}), ` +
      `${d.layerBlobs.count} layer-blob record(s), ${d.variants.count} variant record(s)`,
    `  ${d.blobs.count} blob(s) (${mb(d.blobs.bytes)}), ${d.packs.count} pack(s) with no live object (${mb(d.packs.bytes)})`,
    `Repacked: ${r.repacked.packs.count} mostly dead pack(s) (${mb(r.repacked.packs.bytes)}) into about ${r.repacked.written.count} (${mb(r.repacked.written.bytes)} live)`,
    `Kept: ${r.live.references} reference(s), ${r.live.images} image(s), ${r.live.layers} layer(s), ` +
      `${r.live.blobs.count} blob(s) (${mb(r.live.blobs.bytes)}), ${r.live.objects.count} object(s) (${mb(r.live.objects.bytes)} stored)`,
    `  ${mb(r.deadBytesKept)} of dead objects left in packs that are mostly live`,
    index(r),
  ];
  for (const p of r.problems) lines.push(`problem: ${p}`);
  if (r.problems.length > 0)
    lines.push('The store is damaged: packs and index files were left as they are. Run stevedore verify.');
  return `${lines.join('\n')}\n`;
}

export async function gcCommand(
  options: {
    readonly dryRun: boolean;
    readonly repackBelow?: number;
    readonly drainTimeoutMs?: number;
    readonly json: boolean;
    readonly redisUrl: string;
  },
  out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  let connection;
  try {
    connection = await maintenanceConnection(options.redisUrl);
  } catch (e) {
    err.write(`stevedore gc: ${e instanceof Error ? e.message : String(e)} (gc needs the workers' Redis)\n`);
    return 1;
  }
  try {
    return await withStore(async (store) => {
      const result = await runGarbageCollection(
        { connection, store },
        {
          dryRun: options.dryRun,
          ...(options.repackBelow === undefined ? {} : { repackBelow: options.repackBelow }),
          ...(options.drainTimeoutMs === undefined ? {} : { drainTimeoutMs: options.drainTimeoutMs }),
          ...(options.json ? {} : { onStep: (m: string) => out.write(`${m}\n`) }),
        },
      );
      out.write(options.json ? `${JSON.stringify(result)}\n` : describeCollection(result));
      return result.problems.length === 0 ? 0 : 1;
    });
  } catch (e) {
    if (e instanceof MaintenanceBusyError || e instanceof DrainTimeoutError) {
      err.write(`stevedore gc: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    connection.disconnect();
  }
}
