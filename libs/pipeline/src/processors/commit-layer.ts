/**
 * `commit-layer` (committer): make the layer record durable and visible (compressed digest →
 * diffID). Idempotent: committing an already committed layer only adds the compressed variant.
 * The store applies its blob policy: with `drop` the compressed blob is deleted once the record is
 * durable.
 */
import type { Job } from 'bullmq';
import { parseDiffID, parseDigest } from '@stevedore/oci';
import type { CommitLayerJob } from '@stevedore/queue';
import type { ProcessorDeps } from '../deps.ts';

export async function processCommitLayer(
  job: Job<CommitLayerJob>,
  deps: ProcessorDeps,
): Promise<{ diffID: string }> {
  const digest = parseDigest(job.data.digest);
  const diffID = parseDiffID(job.data.diffID);
  await deps.store.commitLayer({
    diffID,
    compressed: { digest, mediaType: job.data.mediaType, size: job.data.size },
  });
  deps.metrics.count('layers_committed');
  deps.logger.info({ jobId: job.id, queue: job.queueName, digest, diffID }, 'layer committed');
  return { diffID };
}
