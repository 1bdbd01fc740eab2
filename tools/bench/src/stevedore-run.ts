/**
 * One stevedore measurement: a fresh Redis and a fresh store (a directory, or an S3 server of its
 * own), N worker processes, each one `stevedore worker all` (fetcher, hasher and committer in one
 * process, the embedded deployment), then both images submitted at once and awaited.
 *
 * Wall time runs from the first submit to the last pull's completion event; starting the worker
 * processes is not in it. Redis commands are `total_commands_processed` over the same interval
 * (everything: workers' job handling, locks, blocking polls and metric flushes, and this
 * process's submits). Peak RSS is each worker's VmHWM, read just before it is stopped.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { QueueEvents } from 'bullmq';
import { PullSubmitter, producerConnection } from '@stevedore/pipeline';
import { QUEUE_PREFIX, QUEUES } from '@stevedore/queue';
import { listAll, openStore, type BackendConfig, type Store } from '@stevedore/store';
import {
  startRedis,
  startS3,
  startWorkerProcess,
  type FaultProxy,
  type RedisServer,
  type S3Server,
  type WorkerProcess,
} from '@stevedore/testing';
import { tempDir, withCleanups, type Defer } from './cleanup.ts';
import type { ImageSet } from './image-set.ts';
import { BLOB_GET_PATH } from './peers.ts';
import { cpuSeconds, peakRssMiB } from './proc-status.ts';
import { commandCalls, commandDelta, totalCommands } from './redis-info.ts';

export type StoreKind = 'directory' | 's3';

export interface StevedoreRun {
  readonly tool: 'stevedore';
  readonly backend: StoreKind;
  readonly workers: number;
  readonly wallSeconds: number;
  /** Blob bytes the registry served (through the counting proxy). */
  readonly registryBytes: number;
  /** Every object in the store afterwards (directory: file sizes; S3: object sizes). */
  readonly storeBytes: number;
  /** Redis commands from the first submit to the last completion. */
  readonly redisCommands: number;
  /** Layers of all pulled images (a shared layer counts once per image). */
  readonly layerPulls: number;
  /** The 8 most frequent commands and their calls. */
  readonly topCommands: readonly (readonly [string, number])[];
  /** VmHWM of each worker process, MiB. */
  readonly peakRssMiB: readonly number[];
  /** CPU seconds of all worker processes together from the first submit to the last completion. */
  readonly cpuSeconds: number;
  /**
   * CPU seconds of the local S3 server over the same interval (it shares the machine's cores with
   * the workers); null on a directory store.
   */
  readonly storeServerCpuSeconds: number | null;
  /** The machine's 1-minute load average when the pulls were submitted (it is shared). */
  readonly loadAverage1m: number;
}

export interface StevedoreRunOptions {
  readonly set: ImageSet;
  readonly proxy: FaultProxy;
  readonly workers: number;
  readonly backend: StoreKind;
  readonly timeoutMs: number;
}

const TOP_COMMANDS = 8;

/** Where a run's store lives, for the workers (environment) and for reading it back. */
interface RunStore {
  readonly env: Record<string, string>;
  readonly config: BackendConfig;
  /** The local S3 server's pid (its CPU is measured); undefined on a directory store. */
  readonly serverPid?: number;
}

async function freshStore(kind: StoreKind, defer: Defer): Promise<RunStore> {
  if (kind === 'directory') {
    const path = join(await tempDir('stevedore-bench-store-', defer), 'store');
    return { env: { STEVEDORE_STORE: path }, config: { kind: 'directory', path } };
  }
  const s3: S3Server = await startS3();
  defer(() => s3.stop());
  const prefix = `bench-${randomUUID()}`;
  return {
    serverPid: s3.pid,
    env: {
      STEVEDORE_STORE: `s3://${s3.bucket}/${prefix}`,
      STEVEDORE_S3_ENDPOINT: s3.endpoint,
      STEVEDORE_S3_REGION: s3.region,
      STEVEDORE_S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    },
    config: {
      kind: 's3',
      bucket: s3.bucket,
      prefix,
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    },
  };
}

/**
 * The bench's own STEVEDORE_* settings (and NODE_OPTIONS) reach the workers, for measuring one
 * setting against another (`STEVEDORE_SPLIT_WHILE_FETCHING=false npm run bench -- pull`); the
 * run's store and Redis always win.
 */
function tuningFromEnvironment(): Record<string, string> {
  const tuning: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (value === undefined || name === 'STEVEDORE_BENCH_WORKER_LOGS') continue;
    if (name.startsWith('STEVEDORE_') || name === 'NODE_OPTIONS') tuning[name] = value;
  }
  return tuning;
}

async function startWorkers(count: number, runEnv: Record<string, string>): Promise<WorkerProcess[]> {
  const env = { ...tuningFromEnvironment(), ...runEnv };
  const started = await Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      startWorkerProcess({ role: 'all', env, name: `bench-worker-${i + 1}` }),
    ),
  );
  const workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(workers.map((w) => w.stop()));
    throw new Error(`starting ${count} worker processes failed`, { cause: failed.reason });
  }
  return workers;
}

/** Subscribes to pull completions and failures (BullMQ QueueEvents of the pull queue). */
export type PullEventSource = (
  onCompleted: (jobId: string) => void,
  onFailed: (jobId: string, reason: string) => void,
) => void;

/**
 * Resolves when every pull id has completed; rejects on the first failure, when a worker process
 * exits, or after `timeoutMs`. Subscribe before submitting anything, so that no event is missed.
 */
export function awaitPulls(
  subscribe: PullEventSource,
  workers: readonly Pick<WorkerProcess, 'pid' | 'exited' | 'output'>[],
  timeoutMs: number,
  reasonOf: (id: string) => Promise<string>,
): { expect(ids: readonly string[]): Promise<void> } {
  const completed = new Set<string>();
  const failed = new Map<string, string>();
  const changed: (() => void)[] = [];
  const notify = (): void => {
    for (const f of changed.splice(0)) f();
  };
  subscribe(
    (jobId) => {
      completed.add(jobId);
      notify();
    },
    (jobId, reason) => {
      failed.set(jobId, reason);
      notify();
    },
  );
  return {
    async expect(ids) {
      const deadline = Date.now() + timeoutMs;
      let timer: NodeJS.Timeout | undefined;
      // A worker that exits mid-pull would leave it waiting until the timeout: fail at once. This
      // resolves (never rejects) with the error, so nothing is left unhandled once the wait is over.
      const crashed = Promise.race(
        workers.map((w) =>
          w.exited.then((status) => {
            const log = w.output().trimEnd().split('\n').slice(-10).join('\n');
            return new Error(
              `worker process ${w.pid} exited (code ${status.code}, signal ${status.signal}) during the pull:\n${log}`,
            );
          }),
        ),
      );
      try {
        for (;;) {
          const bad = ids.find((id) => failed.has(id));
          if (bad !== undefined) throw new Error(`pull ${bad} failed: ${await reasonOf(bad)}`);
          if (ids.every((id) => completed.has(id))) return;
          const remaining = deadline - Date.now();
          if (remaining <= 0) {
            throw new Error(
              `pulls ${ids.filter((id) => !completed.has(id)).join(', ')} not done after ${timeoutMs} ms`,
            );
          }
          const crash = await Promise.race([
            new Promise<undefined>((resolve) => {
              changed.push(() => resolve(undefined));
              timer = setTimeout(() => resolve(undefined), remaining);
            }),
            crashed,
          ]);
          clearTimeout(timer);
          if (crash !== undefined) throw crash;
        }
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

async function storeBytes(store: Store): Promise<number> {
  let n = 0;
  for await (const o of listAll(store.backend, '')) n += o.size;
  return n;
}

export async function runStevedore(options: StevedoreRunOptions): Promise<StevedoreRun> {
  const { set, proxy } = options;
  return withCleanups(async (defer) => {
    const redis: RedisServer = await startRedis();
    defer(() => redis.stop());
    const runStore = await freshStore(options.backend, defer);
    const workers = await startWorkers(options.workers, {
      STEVEDORE_REDIS_URL: redis.url,
      STEVEDORE_LOG_LEVEL: 'info',
      ...runStore.env,
    });
    defer(async () => {
      await Promise.all(workers.map((w) => w.stop()));
    });

    const connection = producerConnection(redis.url);
    defer(() => Promise.resolve(connection.disconnect()));
    const submitter = new PullSubmitter(connection);
    defer(() => submitter.close());
    const events = new QueueEvents(QUEUES.pull, {
      connection: { host: new URL(redis.url).hostname, port: redis.port, maxRetriesPerRequest: null },
      prefix: QUEUE_PREFIX,
    });
    defer(() => events.close());
    await events.waitUntilReady();
    const subscribe: PullEventSource = (onCompleted, onFailed) => {
      events.on('completed', ({ jobId }) => onCompleted(jobId));
      events.on('failed', ({ jobId, failedReason }) => onFailed(jobId, failedReason));
    };
    const pulls = awaitPulls(subscribe, workers, options.timeoutMs, async (id) => {
      const status = await submitter.status(id);
      return status?.failedReason ?? 'no reason recorded';
    });

    proxy.resetCounters();
    const commandsBefore = totalCommands(await connection.info('stats'));
    const statsBefore = commandCalls(await connection.info('commandstats'));
    const loadAverage1m = loadavg()[0]!;
    const cpuBefore = await Promise.all(workers.map((w) => cpuSeconds(w.pid)));
    const serverCpuBefore = runStore.serverPid === undefined ? 0 : await cpuSeconds(runStore.serverPid);
    const started = performance.now();
    const ids = await Promise.all(set.images.map((i) => submitter.submit(`${proxy.host}/${i.ref}`)));
    await pulls.expect(ids);
    const wallSeconds = (performance.now() - started) / 1000;
    const commandsAfter = totalCommands(await connection.info('stats'));
    const statsAfter = commandCalls(await connection.info('commandstats'));
    const registryBytes = proxy.bytesServed(BLOB_GET_PATH, 'GET');
    const cpuAfter = await Promise.all(workers.map((w) => cpuSeconds(w.pid)));
    const storeServerCpuSeconds =
      runStore.serverPid === undefined ? null : (await cpuSeconds(runStore.serverPid)) - serverCpuBefore;
    // For reading a run's timeline afterwards (each job's start and end are in the log lines).
    const logDir = process.env.STEVEDORE_BENCH_WORKER_LOGS;
    if (logDir !== undefined) {
      for (const w of workers) {
        await writeFile(join(logDir, `${options.backend}-${options.workers}w-${w.pid}.log`), w.output());
      }
    }
    const peak = await Promise.all(workers.map((w) => peakRssMiB(w.pid)));

    const store = await openStore({ backend: runStore.config });
    defer(() => store.close());
    // A figure from a pull that stored the wrong thing would be worthless: check what is there.
    const layers = await store.listLayers();
    if (layers.length !== set.layers.length) {
      throw new Error(
        `the store holds ${layers.length} layers after the pulls, expected ${set.layers.length}`,
      );
    }
    const refs = (await store.listReferences()).map((r) => r.reference).sort();
    const expected = set.images.map((i) => `${proxy.host}/${i.ref}`).sort();
    if (JSON.stringify(refs) !== JSON.stringify(expected)) {
      throw new Error(`the store's references are ${refs.join(', ')}, expected ${expected.join(', ')}`);
    }
    return {
      tool: 'stevedore',
      backend: options.backend,
      workers: options.workers,
      wallSeconds,
      registryBytes,
      storeBytes: await storeBytes(store),
      redisCommands: commandsAfter - commandsBefore,
      layerPulls: set.images.reduce((n, i) => n + i.image.layers.length, 0),
      topCommands: commandDelta(statsBefore, statsAfter).slice(0, TOP_COMMANDS),
      peakRssMiB: peak,
      cpuSeconds: cpuAfter.reduce((sum, after, i) => sum + after - cpuBefore[i]!, 0),
      storeServerCpuSeconds,
      loadAverage1m,
    };
  });
}
