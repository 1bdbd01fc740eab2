/**
 * `fetch-blob` (fetcher): stream one layer blob from its registry into the store, verified while
 * streaming, at most once across every worker (lock `blob:<digest>`). Skips when the layer is
 * already committed by diffID (the same layer compressed differently) or the blob is stored. In a
 * process that also serves the hasher role it splits the layer from the same bytes on the way
 * (split-while-fetching.ts), and the split job then finds it done.
 */
import type { Job } from 'bullmq';
import { parseDiffID, parseDigest } from '@stevedore/oci';
import { withBlobLock, type FetchBlobJob, type FetchProgress, type FetchResult } from '@stevedore/queue';
import type { ProcessorDeps } from '../deps.ts';
import { meteredBody } from '../progress.ts';
import { fetchAndMaybeSplit } from './split-while-fetching.ts';

function wasParked(job: Job): boolean {
  return (job.progress as Partial<FetchProgress> | undefined)?.outcome === 'waiting';
}

export async function processFetchBlob(
  job: Job<FetchBlobJob>,
  token: string | undefined,
  deps: ProcessorDeps,
  signal?: AbortSignal,
): Promise<FetchResult> {
  const { store, registry, locks } = deps;
  const digest = parseDigest(job.data.digest);
  const diffID = parseDiffID(job.data.diffID);
  const size = job.data.size;
  const started = Date.now();
  const log = deps.logger.child({
    jobId: job.id,
    queue: job.queueName,
    digest,
    repository: job.data.repository,
  });

  const alreadyThere = async (): Promise<boolean> =>
    (await store.hasLayer(diffID)) || (await store.hasBlob(digest));
  const reused = async (): Promise<FetchResult> => {
    const outcome = wasParked(job) ? 'waited' : 'reused';
    await job.updateProgress({ bytes: size, total: size, outcome } satisfies FetchProgress);
    deps.metrics.count('bytes_skipped', size);
    log.info({ outcome }, 'blob already stored');
    return { outcome, bytesFetched: 0 };
  };
  if (await alreadyThere()) return reused();

  const result = await withBlobLock(
    { job, token, locks, queues: deps.queues, ...(signal === undefined ? {} : { signal }) },
    `blob:${digest}`,
    async (lockSignal) => {
      // Re-check under the lock: the previous holder committed before releasing.
      if (await alreadyThere()) return reused();
      const slash = job.data.repository.indexOf('/');
      const repo = {
        registry: job.data.repository.slice(0, slash),
        repository: job.data.repository.slice(slash + 1),
      };
      const body = registry.fetchBlob(repo, { digest, size }, { signal: lockSignal });
      const metered = meteredBody(body, (bytes) => {
        void job.updateProgress({ bytes, total: size, outcome: 'fetching' } satisfies FetchProgress);
      });
      // No fence needed for the blob: it is verified against its digest, the same bytes whoever
      // writes it. The registry client's stream fails before its end unless the bytes match.
      const split = await fetchAndMaybeSplit(deps, {
        digest,
        diffID,
        size,
        mediaType: job.data.mediaType,
        body: metered,
        signal: lockSignal,
        log,
      });
      deps.metrics.count('bytes_fetched', size);
      deps.metrics.count('blobs_committed');
      if (split !== undefined) {
        deps.metrics.count('objects_written', split.objectsWritten);
        deps.metrics.count('objects_reused', split.objectsReused);
      }
      await job.updateProgress({ bytes: size, total: size, outcome: 'fetched' } satisfies FetchProgress);
      log.info(
        split === undefined
          ? { bytes: size }
          : { bytes: size, diffID, objectsWritten: split.objectsWritten, objectsReused: split.objectsReused },
        split === undefined ? 'blob fetched' : 'blob fetched and layer split',
      );
      return {
        outcome: 'fetched',
        bytesFetched: size,
        ...(split === undefined ? {} : { splitWhileFetching: true }),
      } satisfies FetchResult;
    },
    async () => {
      deps.metrics.count('lock_waits');
      await job.updateProgress({ bytes: 0, total: size, outcome: 'waiting' } satisfies FetchProgress);
      log.info('blob being fetched by another worker: parked until it is committed');
    },
  );
  deps.metrics.observe('stage_seconds', (Date.now() - started) / 1000, { stage: 'fetch' });
  return result;
}
