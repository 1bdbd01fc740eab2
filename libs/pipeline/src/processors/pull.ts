/**
 * `pull` (fetcher): resolve a reference, store the manifest(s), index and config(s), and add the
 * flow of per-layer work as this job's children; when they are all done, summarise.
 * See docs/queues.md for the flow.
 */
import { WaitingChildrenError, type FlowJob, type Job } from 'bullmq';
import {
  formatPlatform,
  formatReference,
  parseDiffID,
  parseImageConfig,
  parsePlatform,
  parseReference,
  selectManifests,
  withDigest,
  type Digest,
  type ImageManifest,
  type Reference,
} from '@stevedore/oci';
import {
  DEFAULT_JOB_OPTIONS,
  JOBS,
  QUEUES,
  QUEUE_PREFIX,
  childJobId,
  type CommitImageJob,
  type CommitReferenceResult,
  type FetchBlobJob,
  type PullJob,
  type PullResult,
  withBlobLock,
} from '@stevedore/queue';
import { UnrecoverableError } from 'bullmq';
import type { ProcessorDeps } from '../deps.ts';

/** An image config is JSON metadata; a bigger one is hostile or broken. */
const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

interface ResolvedImage {
  readonly manifestDigest: Digest;
  readonly manifest: ImageManifest;
  readonly platform: string;
  readonly diffIDs: readonly string[];
}

export async function processPull(
  job: Job<PullJob>,
  token: string | undefined,
  deps: ProcessorDeps,
  signal?: AbortSignal,
): Promise<PullResult> {
  const pullId = job.id ?? '';
  const childValues = await job.getChildrenValues<CommitReferenceResult>();
  if (Object.keys(childValues).length > 0) return summarise(job, childValues);

  let ref: Reference;
  try {
    ref = parseReference(job.data.ref);
  } catch (err) {
    throw new UnrecoverableError(err instanceof Error ? err.message : String(err));
  }
  const log = deps.logger.child({ jobId: pullId, queue: job.queueName, ref: formatReference(ref) });
  const top = await deps.registry.getManifest(ref, signal === undefined ? {} : { signal });
  await deps.store.putBlobBytes(top.digest, top.bytes);

  const images: ResolvedImage[] = [];
  if (top.parsed.kind === 'index') {
    const want = job.data.platform === 'all' ? 'all' : parsePlatform(job.data.platform);
    for (const descriptor of selectManifests(top.parsed.index, want)) {
      const child = await deps.registry.getManifest(
        withDigest(ref, descriptor.digest),
        signal === undefined ? {} : { signal },
      );
      if (child.parsed.kind !== 'manifest') {
        throw new UnrecoverableError(
          `${formatReference(ref)}: index entry ${descriptor.digest} is not an image manifest`,
        );
      }
      await deps.store.putBlobBytes(child.digest, child.bytes);
      images.push(await resolveConfig(job, token, deps, ref, child.digest, child.parsed.manifest, signal));
    }
  } else {
    images.push(await resolveConfig(job, token, deps, ref, top.digest, top.parsed.manifest, signal));
  }
  log.info({ digest: top.digest, images: images.length }, 'resolved');

  const repository = `${ref.registry}/${ref.repository}`;
  const imageJobs: FlowJob[] = images.map((image, imageIndex) =>
    imageFlow(pullId, repository, ref, top.digest, image, imageIndex),
  );
  await deps.flows.add({
    name: JOBS.commitReference,
    queueName: QUEUES.commit,
    prefix: QUEUE_PREFIX,
    data: { pullId, ref: formatReference(ref), resolvedDigest: top.digest },
    opts: {
      ...DEFAULT_JOB_OPTIONS,
      jobId: `${pullId}.ref`,
      parent: { id: pullId, queue: job.queueQualifiedName },
      failParentOnFailure: true,
    },
    children: imageJobs,
  });
  await job.updateProgress({ layersTotal: images.reduce((n, i) => n + i.manifest.layers.length, 0) });
  if (await job.moveToWaitingChildren(token ?? '')) throw new WaitingChildrenError();
  return summarise(job, await job.getChildrenValues<CommitReferenceResult>());
}

async function resolveConfig(
  job: Job<PullJob>,
  token: string | undefined,
  deps: ProcessorDeps,
  ref: Reference,
  manifestDigest: Digest,
  manifest: ImageManifest,
  signal?: AbortSignal,
): Promise<ResolvedImage> {
  const cfgDesc = manifest.config;
  if (cfgDesc.size > MAX_CONFIG_BYTES) {
    throw new UnrecoverableError(
      `${formatReference(ref)}: config ${cfgDesc.digest} is ${cfgDesc.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit`,
    );
  }
  if (!(await deps.store.hasBlob(cfgDesc.digest))) {
    // A blob like any other: one transfer across all workers (the same lock as fetch-blob's). A
    // pull that finds it held is parked and, woken, resolves again and finds the config stored.
    await withBlobLock(
      { job, token, locks: deps.locks, queues: deps.queues, ...(signal === undefined ? {} : { signal }) },
      `blob:${cfgDesc.digest}`,
      async (lockSignal) => {
        if (await deps.store.hasBlob(cfgDesc.digest)) return;
        const body = deps.registry.fetchBlob(ref, cfgDesc, { signal: lockSignal });
        await deps.store.putBlob(cfgDesc.digest, cfgDesc.size, body, {
          signal: lockSignal,
          verifiedBySource: true,
        });
      },
      () => {
        deps.metrics.count('lock_waits');
      },
    );
  }
  const config = parseImageConfig(await deps.store.getBlobBytes(cfgDesc.digest, MAX_CONFIG_BYTES));
  const diffIDs = config.rootfs.diff_ids;
  if (diffIDs.length !== manifest.layers.length) {
    throw new UnrecoverableError(
      `${formatReference(ref)}: manifest ${manifestDigest} has ${manifest.layers.length} layers but its config lists ${diffIDs.length} diff_ids`,
    );
  }
  const platform = formatPlatform({
    os: config.os,
    architecture: config.architecture,
    ...(config.variant === undefined ? {} : { variant: config.variant }),
  });
  return { manifestDigest, manifest, platform, diffIDs: diffIDs.map((d) => parseDiffID(d)) };
}

/** commit-image ← commit-layer ← split-layer ← fetch-blob, one chain per distinct layer. */
function imageFlow(
  pullId: string,
  repository: string,
  ref: Reference,
  resolvedDigest: Digest,
  image: ResolvedImage,
  imageIndex: number,
): FlowJob {
  const scope = `${pullId}.i${imageIndex}`;
  const seen = new Set<string>();
  const layerJobs: FlowJob[] = [];
  image.manifest.layers.forEach((layer, i) => {
    if (seen.has(layer.digest)) return;
    seen.add(layer.digest);
    const data: FetchBlobJob = {
      pullId,
      repository,
      digest: layer.digest,
      mediaType: layer.mediaType,
      size: layer.size,
      diffID: image.diffIDs[i] ?? '',
    };
    const child = (name: string, queueName: string, kind: string, children?: FlowJob[]): FlowJob => ({
      name,
      queueName,
      prefix: QUEUE_PREFIX,
      data,
      opts: {
        ...DEFAULT_JOB_OPTIONS,
        jobId: childJobId(scope, kind, layer.digest),
        failParentOnFailure: true,
      },
      ...(children === undefined ? {} : { children }),
    });
    layerJobs.push(
      child(JOBS.commitLayer, QUEUES.commit, 'commit', [
        child(JOBS.splitLayer, QUEUES.split, 'split', [child(JOBS.fetchBlob, QUEUES.fetch, 'fetch')]),
      ]),
    );
  });
  const data: CommitImageJob = {
    pullId,
    ref: formatReference(ref),
    resolvedDigest,
    manifestDigest: image.manifestDigest,
    configDigest: image.manifest.config.digest,
    platform: image.platform,
  };
  return {
    name: JOBS.commitImage,
    queueName: QUEUES.commit,
    prefix: QUEUE_PREFIX,
    data,
    opts: { ...DEFAULT_JOB_OPTIONS, jobId: `${scope}.image`, failParentOnFailure: true },
    children: layerJobs,
  };
}

function summarise(job: Job<PullJob>, values: Record<string, CommitReferenceResult>): PullResult {
  const result = Object.values(values)[0];
  if (result === undefined)
    throw new Error(`pull ${job.id ?? ''}: finished without a commit-reference result`);
  return { ref: job.data.ref, resolvedDigest: result.resolvedDigest, images: result.images };
}
