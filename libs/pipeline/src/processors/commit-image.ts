/**
 * `commit-image` (committer): runs after every layer of the image is committed (BullMQ runs a
 * parent only after its children), and commits the image record.
 */
import type { Job } from 'bullmq';
import { parseDiffID, parseDigest } from '@stevedore/oci';
import type { CommitImageJob, CommitImageResult } from '@stevedore/queue';
import type { ProcessorDeps } from '../deps.ts';

/** Reads the config blob the pull stored; configs are small JSON documents. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

export async function processCommitImage(
  job: Job<CommitImageJob>,
  deps: ProcessorDeps,
): Promise<CommitImageResult> {
  const manifestDigest = parseDigest(job.data.manifestDigest);
  const configDigest = parseDigest(job.data.configDigest);
  const config = JSON.parse(
    Buffer.from(await deps.store.getBlobBytes(configDigest, MAX_CONFIG_BYTES)).toString('utf8'),
  ) as {
    rootfs?: { diff_ids?: string[] };
  };
  const diffIDs = (config.rootfs?.diff_ids ?? []).map((d) => parseDiffID(d));
  for (const diffID of new Set(diffIDs)) {
    if (!(await deps.store.hasLayer(diffID))) {
      throw new Error(`image ${manifestDigest}: layer ${diffID} is not committed`);
    }
  }
  await deps.store.commitImage({ manifestDigest, configDigest, platform: job.data.platform, diffIDs });
  deps.logger.info(
    { jobId: job.id, queue: job.queueName, ref: job.data.ref, digest: manifestDigest },
    'image committed',
  );
  return { manifestDigest, platform: job.data.platform, layers: diffIDs.length };
}
