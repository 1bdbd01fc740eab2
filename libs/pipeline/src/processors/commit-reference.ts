/**
 * `commit-reference` (committer): runs after every image of the pull is committed, and only then
 * publishes the reference: `registry/repository:tag → digest`, or for a pull by digest the digest
 * reference `registry/repository@digest → digest`, which keeps the image listed, removable and a
 * garbage-collection root (docs/store-format.md "Records"). A pull with both a tag and a digest
 * publishes the tag. Idempotent: a retry writes the same record again.
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
  // The store refuses a digest reference set to another digest than its own: a registry that
  // answered a pull by digest with other content fails here, permanently, publishing nothing.
  const reference =
    ref.tag === undefined && ref.digest !== undefined
      ? `${ref.registry}/${ref.repository}@${ref.digest}`
      : `${ref.registry}/${ref.repository}:${ref.tag ?? DEFAULT_TAG}`;
  await deps.store.setReference(reference, resolvedDigest);
  deps.logger.info(
    { jobId: job.id, queue: job.queueName, ref: job.data.ref, reference, digest: resolvedDigest },
    'reference committed',
  );
  return { reference, resolvedDigest, images };
}
