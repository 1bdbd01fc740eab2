/**
 * Garbage collection of the store, coordinated with the workers through Redis (`stevedore gc`).
 *
 * The store's collector (libs/store gc.ts) must run alone: a pull that found a layer committed
 * and skipped it, an import that reused an object, an export reading a layer, all decide on what
 * the collector may be deleting. So:
 * 1. It takes the `maintenance` lock (gc and `stevedore compact` exclude each other: both rewrite
 *    the index files), then closes the `gc` gate: a lock every job checks before it runs
 *    ({@link StoreGate}); a job that finds it held parks as a waiter (delayed, holding no worker
 *    slot) and is woken when the gate opens.
 * 2. It waits until no job of any queue is active (jobs that passed the gate before it closed)
 *    and no reader outside the jobs holds a read lease (an API download, a CLI export or verify:
 *    store-readers.ts); readers that come later are refused while the gate is held.
 * 3. Queued work is kept: every digest in the payload of a job not finished (waiting, delayed,
 *    waiting for children) or failed (kept a week, to be retried) is a root, so a pull whose
 *    layers are committed and whose image is not yet, or never will be unless retried, keeps them.
 * 4. It collects and, when it deleted or rewrote packs (or failed halfway), bumps the store
 *    generation (every worker process forgets its object index before its next job: the index
 *    files were rewritten and packs deleted), and opens the gate, waking the parked jobs.
 * Both locks are renewed while it runs; a crash lets them expire (30 s), and the parked jobs'
 * deadlines bring them back. A collection stopped halfway leaves only garbage (see the store's).
 */
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { LockManager } from '@stevedore/lock';
import { ALL_QUEUES, passGate, QUEUE_PREFIX, wakeWaiters, type LockedWorkContext } from '@stevedore/queue';
import type { CollectOptions, CollectResult, Store } from '@stevedore/store';
import {
  beginStoreRead,
  GC_GATE,
  listStoreReaders,
  type ReadLeaseOptions,
  type StoreReadLease,
} from './store-readers.ts';

/** Held by a collection and by an index compaction: one of them at a time. */
export const MAINTENANCE_LOCK = 'maintenance';
/** Bumped by each collection; a worker process that sees it change forgets its object index. */
export const GC_GENERATION_KEY = 'stevedore:gc:generation';
/** How long a collection waits for the active jobs by default. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 10 * 60 * 1000;
const DRAIN_POLL_MS = 200;
/**
 * Job states whose payloads are roots: work that will still run, and failed jobs, which BullMQ keeps
 * a week for an operator to read and retry (libs/queue options.ts): a retried pull finds what it
 * had committed (a failed image commit names the manifest, which leads to every layer).
 */
const ROOT_STATES = [
  'waiting',
  'delayed',
  'prioritized',
  'waiting-children',
  'paused',
  'active',
  'failed',
] as const;
const DIGEST = /sha256:[0-9a-f]{64}/g;

/** A collection or a compaction is running: this one did nothing. */
export class MaintenanceBusyError extends Error {
  override readonly name = 'MaintenanceBusyError';
}

/** Jobs were still active, or readers still reading, when the drain timeout passed: nothing was collected. */
export class DrainTimeoutError extends Error {
  override readonly name = 'DrainTimeoutError';
}

/** The generation a worker process starts from (read before it loads the object index). */
export async function readGcGeneration(redis: Redis): Promise<string> {
  return (await redis.get(GC_GENERATION_KEY)) ?? '0';
}

/**
 * A process's side of collections. Workers: every job passes the gate before it runs
 * ({@link StoreGate.enter}). Other readers of the store (the API's archive downloads) take a read
 * lease ({@link StoreGate.beginRead}), refused while a collection runs, which the next collection
 * waits for. Both make the first caller after a collection forget the process's object index
 * (every caller waits for that).
 */
export class StoreGate {
  readonly #redis: Redis;
  readonly #forget: () => Promise<void>;
  #seen: string | undefined;
  #forgetting: Promise<void> = Promise.resolve();

  /**
   * `generation`: what {@link readGcGeneration} said before the process loaded its index
   * (undefined: the first caller forgets the index, whatever it is).
   */
  constructor(redis: Redis, forget: () => Promise<void>, generation?: string) {
    this.#redis = redis;
    this.#forget = forget;
    this.#seen = generation;
  }

  /** Returns when the job may run; throws BullMQ's DelayedError when it parked behind a collection. */
  async enter(ctx: LockedWorkContext): Promise<void> {
    await passGate(ctx, GC_GATE);
    await this.#sync();
  }

  /**
   * A read lease for `what` (end it when done), the object index current. Throws
   * {@link CollectionRunningError} while a collection runs.
   */
  async beginRead(what: string, options: ReadLeaseOptions = {}): Promise<StoreReadLease> {
    const lease = await beginStoreRead(this.#redis, what, options);
    try {
      await this.#sync();
    } catch (err) {
      await lease.end();
      throw err;
    }
    return lease;
  }

  async #sync(): Promise<void> {
    const generation = await readGcGeneration(this.#redis);
    if (generation !== this.#seen) {
      this.#seen = generation;
      this.#forgetting = this.#forgetting.then(() => this.#forget());
    }
    await this.#forgetting;
  }
}

export interface GcRunOptions extends Omit<CollectOptions, 'roots' | 'signal'> {
  /** How long to wait for the active jobs and the readers (default {@link DEFAULT_DRAIN_TIMEOUT_MS}). */
  readonly drainTimeoutMs?: number;
  readonly lockTtlMs?: number;
  readonly signal?: AbortSignal;
  /** Progress lines ("waiting for 2 active job(s) and 1 store reader(s) to finish", …). */
  readonly onStep?: (message: string) => void;
}

export interface GcRunResult extends CollectResult {
  /** Digests found in queued jobs (kept with what they lead to). */
  readonly roots: number;
  /** Jobs that were parked behind the gate and woken at the end. */
  readonly woken: number;
}

/**
 * Runs one collection (see the module comment). Throws {@link MaintenanceBusyError} when another
 * collection or a compaction holds the maintenance lock, {@link DrainTimeoutError} when jobs stay
 * active or readers keep reading too long (nothing collected, the gate opened again).
 */
export async function runGarbageCollection(
  deps: { readonly connection: Redis; readonly store: Store },
  options: GcRunOptions = {},
): Promise<GcRunResult> {
  const { connection, store } = deps;
  const step = options.onStep ?? ((): void => undefined);
  const locks = new LockManager(
    connection,
    options.lockTtlMs === undefined ? {} : { ttlMs: options.lockTtlMs },
  );
  const queues = new Map(
    ALL_QUEUES.map((name) => [name as string, new Queue(name, { connection, prefix: QUEUE_PREFIX })]),
  );
  try {
    return await holding(locks, MAINTENANCE_LOCK, async (maintenanceSignal) => {
      const gate = await locks.tryAcquire(GC_GATE);
      if (!gate.acquired)
        throw new MaintenanceBusyError(`the ${GC_GATE} gate is held: another collection is running`);
      let result: Omit<GcRunResult, 'woken'>;
      let woken = 0;
      try {
        result = await locks.hold(
          gate.grant,
          async (gateSignal) => {
            const signal = AbortSignal.any(
              [maintenanceSignal, gateSignal, options.signal].filter(
                (s): s is AbortSignal => s !== undefined,
              ),
            );
            step('gate closed: new jobs and store readers wait until the collection ends');
            await drain(connection, queues, options.drainTimeoutMs ?? DEFAULT_DRAIN_TIMEOUT_MS, step, signal);
            const roots = await queuedRoots(queues);
            step(`${roots.length} digests in queued and failed jobs kept as roots`);
            let collected: CollectResult;
            try {
              collected = await store.collectGarbage({
                roots,
                signal,
                ...(options.dryRun === undefined ? {} : { dryRun: options.dryRun }),
                ...(options.repackBelow === undefined ? {} : { repackBelow: options.repackBelow }),
              });
            } catch (err) {
              // A collection that stopped halfway may have rewritten the index files.
              if (options.dryRun !== true) await connection.incr(GC_GENERATION_KEY);
              throw err;
            }
            // Processes reload their object index only when packs went (records are not cached).
            const packsWent = collected.deleted.packs.count > 0 || collected.repacked.packs.count > 0;
            if (options.dryRun !== true && packsWent) await connection.incr(GC_GENERATION_KEY);
            return { ...collected, roots: roots.length };
          },
          options.signal,
        );
      } finally {
        const released = await locks.release(gate.grant);
        woken = await wakeWaiters(queues, released.waiters);
        if (released.waiters.length > 0) step(`gate open: ${woken} parked job(s) woken`);
      }
      return { ...result, woken };
    });
  } finally {
    await Promise.all([...queues.values()].map((q) => q.close()));
  }
}

/**
 * Runs `work` holding lock `name` (renewed; its signal aborts if the lock is lost), or throws
 * {@link MaintenanceBusyError} when it is held. Used by collections and compactions.
 */
export async function holding<T>(
  locks: LockManager,
  name: string,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const attempt = await locks.tryAcquire(name);
  if (!attempt.acquired) {
    throw new MaintenanceBusyError(
      `lock ${name} is held: a garbage collection or an index compaction is running; try again later`,
    );
  }
  try {
    return await locks.hold(attempt.grant, work);
  } finally {
    await locks.release(attempt.grant);
  }
}

async function drain(
  connection: Redis,
  queues: ReadonlyMap<string, Queue>,
  timeoutMs: number,
  step: (message: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let said = '';
  for (;;) {
    signal.throwIfAborted();
    const counts = await Promise.all([...queues.values()].map((q) => q.getActiveCount()));
    const active = counts.reduce((n, c) => n + c, 0);
    const readers = await listStoreReaders(connection);
    if (active === 0 && readers.length === 0) return;
    const waitingFor = [
      ...(active > 0 ? [`${active} active job(s)`] : []),
      ...(readers.length > 0 ? [`${readers.length} store reader(s)`] : []),
    ].join(' and ');
    const who =
      readers.length === 0
        ? ''
        : ` (${readers.slice(0, 3).map(readerName).join('; ')}${readers.length > 3 ? '; …' : ''})`;
    if (waitingFor !== said) step(`waiting for ${waitingFor} to finish${who}`);
    said = waitingFor;
    if (Date.now() >= deadline) {
      const ids: string[] = [];
      for (const q of queues.values())
        for (const job of await q.getActive(0, 4)) ids.push(`${q.name}/${job.id}`);
      throw new DrainTimeoutError(
        `${waitingFor} still there after ${Math.round(timeoutMs / 1000)} s (${[...ids, ...readers.slice(0, 4).map(readerName)].join(', ')}): nothing was collected`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
  }
}

/** A reader as people read it: its lease's member without the id (`<host> pid <pid>: <what>`). */
function readerName(member: string): string {
  return member.slice(member.indexOf(' ') + 1);
}

/** Every digest in the payloads of jobs that will still run, or failed and may be retried. */
async function queuedRoots(queues: ReadonlyMap<string, Queue>): Promise<string[]> {
  const roots = new Set<string>();
  for (const q of queues.values()) {
    for (const job of await q.getJobs([...ROOT_STATES], 0, -1)) {
      for (const d of JSON.stringify(job.data ?? {}).match(DIGEST) ?? []) roots.add(d);
    }
  }
  return [...roots];
}
