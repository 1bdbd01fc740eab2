/**
 * `split-layer` (hasher/compressor): decompress a stored layer blob and split its tar into file
 * objects and a splitstream, at most once per diffID across every worker (lock `layer:<diffID>`).
 * The store verifies that the tar's sha256 equals the diffID from the image config.
 */
import type { Job } from 'bullmq';
import { parseDiffID, parseDigest } from '@stevedore/oci';
import { withBlobLock, type SplitLayerJob, type SplitResult } from '@stevedore/queue';
import { decompressLayer } from '../compression.ts';
import type { ProcessorDeps } from '../deps.ts';

export async function processSplitLayer(
  job: Job<SplitLayerJob>,
  token: string | undefined,
  deps: ProcessorDeps,
  signal?: AbortSignal,
): Promise<SplitResult> {
  const { store, locks } = deps;
  const digest = parseDigest(job.data.digest);
  const diffID = parseDiffID(job.data.diffID);
  const started = Date.now();
  const log = deps.logger.child({ jobId: job.id, queue: job.queueName, digest, diffID });
  const alreadySplit = async (): Promise<boolean> =>
    (await store.hasLayer(diffID)) || (await store.hasLayerContent(diffID));
  const reused: SplitResult = { outcome: 'reused', objectsWritten: 0, objectsReused: 0, bytesWritten: 0 };
  if (await alreadySplit()) return reused;

  const result = await withBlobLock(
    { job, token, locks, queues: deps.queues, ...(signal === undefined ? {} : { signal }) },
    `layer:${diffID}`,
    async (lockSignal, grant) => {
      if (await alreadySplit()) return reused;
      // Not verified on read: the store checks the tar it makes of it against the diffID.
      const blob = await store.openBlob(digest, { signal: lockSignal, verify: false });
      const tar = await decompressLayer(blob, job.data.mediaType, `layer ${digest}`);
      const stats = await store.importLayer(tar, diffID, {
        signal: lockSignal,
        beforePublish: () => locks.assertCurrent(grant),
      });
      deps.metrics.count('objects_written', stats.objectsWritten);
      deps.metrics.count('objects_reused', stats.objectsReused);
      log.info(
        { size: stats.size, objectsWritten: stats.objectsWritten, objectsReused: stats.objectsReused },
        'layer split',
      );
      return {
        outcome: 'split',
        objectsWritten: stats.objectsWritten,
        objectsReused: stats.objectsReused,
        bytesWritten: stats.bytesWritten,
      } satisfies SplitResult;
    },
    () => {
      deps.metrics.count('lock_waits');
      log.info('layer being split by another worker: parked until it is stored');
    },
  );
  deps.metrics.observe('stage_seconds', (Date.now() - started) / 1000, { stage: 'split' });
  return result;
}
