/**
 * `commit-reference` (committer): runs after every image of the pull is committed, and only then
 * publishes `registry/repository:tag → digest`. A pull by digest has no tag to publish.
 */
import type { Job } from 'bullmq';
import { DEFAULT_TAG, parseDigest, parseReference } from '@stevedore/oci';
import type { CommitImageResult, CommitReferenceJob, CommitReferenceResult } from '@stevedore/queue';
import type { ProcessorDeps } from '../deps.ts';

export async function processCommitReference(
  job: Job<CommitReferenceJob>,
  deps: ProcessorDeps,
): Promise<CommitReferenceResult> {
  const resolvedDigest = parseDigest(job.data.resolvedDigest);
  const ref = parseReference(job.data.ref);
  const images = Object.values(await job.getChildrenValues<CommitImageResult>());
  let reference: string | undefined;
  if (ref.tag !== undefined || ref.digest === undefined) {
    reference = `${ref.registry}/${ref.repository}:${ref.tag ?? DEFAULT_TAG}`;
    await deps.store.setReference(reference, resolvedDigest);
  }
  deps.logger.info(
    { jobId: job.id, queue: job.queueName, ref: job.data.ref, digest: resolvedDigest },
    'reference committed',
  );
  return { reference, resolvedDigest, images };
}
