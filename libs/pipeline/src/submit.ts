/**
 * Submitting pulls and following them: used by the CLI and the API (producers, never workers).
 * A reference or platform that does not parse is refused before anything is queued.
 */
import { FlowProducer, Queue, type JobNode } from 'bullmq';
import type { Redis } from 'ioredis';
import { formatPlatform, formatReference, hostPlatform, parsePlatform, parseReference } from '@stevedore/oci';
import {
  DEFAULT_JOB_OPTIONS,
  JOBS,
  QUEUES,
  QUEUE_PREFIX,
  newPullId,
  type FetchProgress,
  type PullJob,
  type PullResult,
} from '@stevedore/queue';

export interface LayerStatus {
  readonly digest: string;
  readonly diffID: string;
  readonly size: number;
  readonly bytes: number;
  /** How the blob was obtained (or is being): fetched, reused, waited for, ... */
  readonly outcome: FetchProgress['outcome'] | 'queued';
  readonly fetchState: string;
  readonly splitState: string;
  readonly commitState: string;
}

export interface PullStatus {
  readonly id: string;
  readonly ref: string;
  readonly platform: string;
  /** BullMQ state of the pull job: waiting, active, waiting-children, completed, failed, ... */
  readonly state: string;
  readonly failedReason?: string;
  readonly bytesTotal: number;
  readonly bytesDone: number;
  readonly layersTotal: number;
  readonly layersDone: number;
  readonly layers: readonly LayerStatus[];
  readonly result?: PullResult;
}

export class PullSubmitter {
  readonly #queue: Queue<PullJob>;
  readonly #flows: FlowProducer;

  constructor(connection: Redis) {
    this.#queue = new Queue<PullJob>(QUEUES.pull, {
      connection,
      prefix: QUEUE_PREFIX,
      defaultJobOptions: DEFAULT_JOB_OPTIONS,
    });
    this.#flows = new FlowProducer({ connection, prefix: QUEUE_PREFIX });
  }

  /**
   * Queues a pull of `ref` for `platform` (`os/arch[/variant]`, `all`, or the host's platform
   * when omitted). Returns the pull's id. Throws, naming the input, when either does not parse.
   */
  async submit(ref: string, platform?: string): Promise<string> {
    const parsed = parseReference(ref);
    const wanted =
      platform === undefined || platform === ''
        ? formatPlatform(hostPlatform())
        : platform === 'all'
          ? 'all'
          : formatPlatform(parsePlatform(platform));
    const data: PullJob = { ref: formatReference(parsed), platform: wanted };
    const id = newPullId(data.ref, data.platform);
    await this.#queue.add(JOBS.pull, data, { jobId: id });
    return id;
  }

  async status(id: string): Promise<PullStatus | undefined> {
    const job = await this.#queue.getJob(id);
    if (job === undefined) return undefined;
    const state = await job.getState();
    const tree = await this.#flows.getFlow({ id, queueName: QUEUES.pull, prefix: QUEUE_PREFIX });
    const layers = new Map<string, LayerStatus>();
    await collectLayers(tree, layers);
    const failedReason = state === 'failed' ? (rootCause(tree) ?? job.failedReason) : undefined;
    const all = [...layers.values()];
    const done = all.filter((l) => l.commitState === 'completed').length;
    return {
      id,
      ref: job.data.ref,
      platform: job.data.platform,
      state,
      ...(failedReason ? { failedReason } : {}),
      bytesTotal: all.reduce((n, l) => n + l.size, 0),
      bytesDone: all.reduce((n, l) => n + l.bytes, 0),
      layersTotal: all.length,
      layersDone: done,
      layers: all,
      ...(state === 'completed' ? { result: job.returnvalue as PullResult } : {}),
    };
  }

  async close(): Promise<void> {
    await this.#flows.close();
    await this.#queue.close();
  }
}

/** BullMQ's reason on a parent failed by a child: the real reason is further down. */
const CHILD_FAILED = /^child .* failed$/;

/** The failure reason of the deepest failed job of a flow: why the pull failed. */
function rootCause(node: JobNode): string | undefined {
  for (const child of node.children ?? []) {
    const cause = rootCause(child);
    if (cause !== undefined) return cause;
  }
  const reason = node.job.failedReason;
  return reason && !CHILD_FAILED.test(reason)
    ? `${node.job.name} ${node.job.id ?? ''}: ${reason}`
    : undefined;
}

/** Walks commit-layer → split-layer → fetch-blob chains of a pull's flow. */
async function collectLayers(node: JobNode, out: Map<string, LayerStatus>): Promise<void> {
  if (node.job.name === JOBS.commitLayer) {
    const commit = node.job;
    const split = node.children?.find((c) => c.job.name === JOBS.splitLayer);
    const fetch = split?.children?.find((c) => c.job.name === JOBS.fetchBlob)?.job;
    const data = commit.data as { digest: string; diffID: string; size: number };
    const progress = (fetch?.progress ?? {}) as Partial<FetchProgress>;
    const fetchState = fetch === undefined ? 'unknown' : await fetch.getState();
    const outcome =
      fetchState === 'completed'
        ? ((fetch?.returnvalue as { outcome?: FetchProgress['outcome'] } | undefined)?.outcome ?? 'fetched')
        : (progress.outcome ?? 'queued');
    out.set(`${commit.id ?? ''}`, {
      digest: data.digest,
      diffID: data.diffID,
      size: data.size,
      bytes: fetchState === 'completed' ? data.size : (progress.bytes ?? 0),
      outcome,
      fetchState,
      splitState: split === undefined ? 'unknown' : await split.job.getState(),
      commitState: await commit.getState(),
    });
    return;
  }
  for (const child of node.children ?? []) await collectLayers(child, out);
}
