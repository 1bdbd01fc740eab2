/**
 * The worker host: runs the BullMQ workers of the roles a process serves (fetcher, hasher,
 * committer, or all three in one process), validates every payload at the boundary, and shuts
 * down gracefully: on close it stops taking jobs and waits for the active ones to finish.
 */
import { FlowProducer, Queue, Worker, type Job, type Processor } from 'bullmq';
import type { Redis } from 'ioredis';
import { LockManager } from '@stevedore/lock';
import {
  ALL_QUEUES,
  DEFAULT_JOB_OPTIONS,
  JOBS,
  QUEUES,
  QUEUE_PREFIX,
  validateJobData,
  type JobName,
  type QueueName,
} from '@stevedore/queue';
import { classifyFailure } from './errors.ts';
import { StoreGate } from './gc.ts';
import { NO_METRICS, type PipelineMetrics, type ProcessorDeps } from './deps.ts';
import type { Logger } from './logger.ts';
import type { PipelineExporter, PipelineRegistry, PipelineStore } from './ports.ts';
import { processCommitImage } from './processors/commit-image.ts';
import { processCommitLayer } from './processors/commit-layer.ts';
import { processCommitReference } from './processors/commit-reference.ts';
import { processExport } from './processors/export.ts';
import { processFetchBlob } from './processors/fetch-blob.ts';
import { processPull } from './processors/pull.ts';
import { processSplitLayer } from './processors/split-layer.ts';
import { SplitSlots } from './processors/split-while-fetching.ts';

export type Role = 'fetcher' | 'hasher' | 'committer';
export const ROLES: readonly Role[] = ['fetcher', 'hasher', 'committer'];

const ROLE_QUEUES: { readonly [R in Role]: readonly QueueName[] } = {
  fetcher: [QUEUES.pull, QUEUES.fetch],
  hasher: [QUEUES.split, QUEUES.export],
  committer: [QUEUES.commit],
};

export interface HostOptions {
  readonly roles: readonly Role[];
  /** A connection for the workers (maxRetriesPerRequest: null); each worker duplicates it. */
  readonly connection: Redis;
  readonly store: PipelineStore;
  readonly registry: PipelineRegistry;
  /** Runs export jobs (hasher role); without it they fail, unrecoverably. */
  readonly exporter?: PipelineExporter;
  readonly logger: Logger;
  readonly metrics?: PipelineMetrics;
  /** Jobs at once per queue. */
  readonly concurrency: Readonly<Partial<Record<QueueName, number>>>;
  readonly lockTtlMs?: number;
  /** BullMQ lockDuration and stalledInterval: how soon a dead worker's job is taken over. */
  readonly jobLockMs?: number;
  /**
   * With both the fetcher and the hasher role: split each layer while fetching it (default true).
   * Without either role it has no effect.
   */
  readonly splitWhileFetching?: boolean;
  /**
   * Called (once, before the next job runs) when a garbage collection has run since the process
   * started or last called it: the process must forget its store's object index (gc.ts).
   */
  readonly onStoreCollected?: () => Promise<void>;
  /** The store generation the process loaded its index at ({@link readGcGeneration}). */
  readonly gcGeneration?: string;
}

export interface WorkerHost {
  readonly workers: readonly Worker[];
  close(): Promise<void>;
}

/** One processor per job kind; a queue's worker dispatches on the job's name. */
async function dispatch(
  job: Job,
  token: string | undefined,
  deps: ProcessorDeps,
  signal?: AbortSignal,
): Promise<unknown> {
  const name = job.name as JobName;
  validateJobData(name, job.data, job.id);
  switch (name) {
    case JOBS.pull:
      return processPull(job as Job<never>, token, deps, signal);
    case JOBS.fetchBlob:
      return processFetchBlob(job as Job<never>, token, deps, signal);
    case JOBS.splitLayer:
      return processSplitLayer(job as Job<never>, token, deps, signal);
    case JOBS.commitLayer:
      return processCommitLayer(job as Job<never>, deps);
    case JOBS.commitImage:
      return processCommitImage(job as Job<never>, deps);
    case JOBS.commitReference:
      return processCommitReference(job as Job<never>, deps);
    case JOBS.export:
      return processExport(job as Job<never>, deps, signal);
  }
}

export function startWorkerHost(options: HostOptions): WorkerHost {
  const { connection, logger } = options;
  const queues = new Map<string, Queue>(
    ALL_QUEUES.map((name) => [
      name,
      new Queue(name, { connection, prefix: QUEUE_PREFIX, defaultJobOptions: DEFAULT_JOB_OPTIONS }),
    ]),
  );
  const flows = new FlowProducer({ connection, prefix: QUEUE_PREFIX });
  const locks = new LockManager(
    connection,
    options.lockTtlMs === undefined ? {} : { ttlMs: options.lockTtlMs },
  );
  const deps: ProcessorDeps = {
    store: options.store,
    registry: options.registry,
    ...(options.exporter === undefined ? {} : { exporter: options.exporter }),
    locks,
    queues,
    flows,
    logger,
    metrics: options.metrics ?? NO_METRICS,
    ...(options.splitWhileFetching !== false &&
    options.roles.includes('fetcher') &&
    options.roles.includes('hasher')
      ? { splitWhileFetching: new SplitSlots(options.concurrency[QUEUES.split] ?? 1) }
      : {}),
  };
  const gate = new StoreGate(
    connection,
    options.onStoreCollected ?? (() => Promise.resolve()),
    options.gcGeneration,
  );
  const processor: Processor = async (job, token, signal) => {
    try {
      // Behind a running garbage collection, the job parks (DelayedError) until it ends.
      await gate.enter({ job, token, locks, queues });
      return await dispatch(job, token, deps, signal);
    } catch (err) {
      throw classifyFailure(err);
    }
  };
  const served = [...new Set(options.roles.flatMap((role) => ROLE_QUEUES[role]))];
  const workers = served.map((queueName) => {
    const worker = new Worker(queueName, processor, {
      connection,
      prefix: QUEUE_PREFIX,
      concurrency: options.concurrency[queueName] ?? 1,
      ...(options.jobLockMs === undefined
        ? {}
        : { lockDuration: options.jobLockMs, stalledInterval: options.jobLockMs }),
    });
    worker.on('error', (err) => logger.error({ queue: queueName, err }, 'worker error'));
    worker.on('failed', (job, err) => {
      // Payloads hold references only (never secrets): name what failed on the line.
      const data = (job?.data ?? {}) as { ref?: string; digest?: string };
      logger.warn(
        {
          queue: queueName,
          jobId: job?.id,
          ref: data.ref,
          digest: data.digest,
          attemptsMade: job?.attemptsMade,
          err: err.message,
        },
        'job failed',
      );
    });
    return worker;
  });
  logger.info({ roles: options.roles, queues: served }, 'workers started');
  return {
    workers,
    async close() {
      await Promise.all(workers.map((w) => w.close()));
      await flows.close();
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
}
