/**
 * Running a job's work under a blob lock, or parking the job until the holder releases.
 *
 * A job that finds the blob locked neither polls Redis nor holds a worker slot: it registers as a
 * waiter (atomically with the lock check), moves itself to the delayed set with a deadline of the
 * lock's remaining TTL, and frees its worker. The holder commits, releases, and promotes the
 * waiters it was handed, which then run at once and find the committed result. If the holder
 * crashed, its lock expires and the waiters' deadline comes due at about the same moment.
 *
 * The missed wake-up race (the holder releases after our check but before we are in the delayed
 * set, so its promote finds us still active) is closed by checking the lock again once delayed:
 * if the holder we saw is gone, we promote ourselves.
 */
import { DelayedError, Job, type Queue } from 'bullmq';
import type { LockGrant, LockManager } from '@stevedore/lock';

/** Extra wait past the holder's remaining TTL before a parked job retries on its own. */
const PARK_MARGIN_MS = 250;

export interface LockedWorkContext {
  readonly job: Job;
  readonly token: string | undefined;
  readonly locks: LockManager;
  /** Queues by name, for waking the waiters after a release. */
  readonly queues: ReadonlyMap<string, Queue>;
  readonly signal?: AbortSignal;
}

export function waiterId(job: Job): string {
  return `${job.queueName}|${job.id ?? ''}`;
}

/** Promotes parked jobs; a job that is no longer delayed (already woken or running) is left alone. */
export async function wakeWaiters(
  queues: ReadonlyMap<string, Queue>,
  waiters: readonly string[],
): Promise<number> {
  let woken = 0;
  for (const waiter of waiters) {
    const bar = waiter.indexOf('|');
    const queue = queues.get(waiter.slice(0, bar));
    if (queue === undefined) throw new Error(`cannot wake ${waiter}: no queue ${waiter.slice(0, bar)} here`);
    const job = await Job.fromId(queue, waiter.slice(bar + 1));
    if (job === undefined || !(await job.isDelayed())) continue;
    try {
      await job.promote();
      woken += 1;
    } catch (err) {
      // It left the delayed set between the check and the promote: its deadline came due or it
      // promoted itself. Either way it is running, which is what we wanted.
      if (await job.isDelayed()) throw err;
    }
  }
  return woken;
}

/**
 * Runs `work` holding lock `name` (renewed while it runs; `work`'s signal aborts if the lock is
 * lost) and releases it afterwards, waking the waiters. When another worker holds the lock, parks
 * the job (see the module comment) and throws BullMQ's DelayedError, which the worker treats as
 * "moved to delayed", not a failure. `work` must publish only after `locks.assertCurrent(grant)`.
 */
export async function withBlobLock<T>(
  ctx: LockedWorkContext,
  name: string,
  work: (signal: AbortSignal, grant: LockGrant) => Promise<T>,
  onPark?: () => Promise<void> | void,
): Promise<T> {
  const { job, locks } = ctx;
  const attempt = await locks.tryAcquire(name, waiterId(job));
  if (attempt.acquired) {
    const { grant } = attempt;
    try {
      return await locks.hold(grant, (signal) => work(signal, grant), ctx.signal);
    } finally {
      const { waiters } = await locks.release(grant);
      await wakeWaiters(ctx.queues, waiters);
    }
  }
  await onPark?.();
  await job.moveToDelayed(Date.now() + attempt.ttlMs + PARK_MARGIN_MS, ctx.token);
  if ((await locks.currentFence(name)) !== attempt.holderFence) await job.promote();
  throw new DelayedError(`waiting for lock ${name} (held with fence ${attempt.holderFence})`);
}

/**
 * Waits behind a gate: returns at once while nobody holds lock `name` (taking nothing); while
 * somebody does, parks the job like {@link withBlobLock} (a waiter of the holder, woken by its
 * release, or by its own deadline if the holder dies) and throws BullMQ's DelayedError. The store's
 * garbage collection holds such a gate while it runs (libs/pipeline gc.ts).
 */
export async function passGate(ctx: LockedWorkContext, name: string): Promise<void> {
  const { job, locks } = ctx;
  const waiting = await locks.waitIfHeld(name, waiterId(job));
  if (!waiting.held) return;
  await job.moveToDelayed(Date.now() + waiting.ttlMs + PARK_MARGIN_MS, ctx.token);
  if ((await locks.currentFence(name)) !== waiting.holderFence) await job.promote();
  throw new DelayedError(`waiting behind ${name} (held with fence ${waiting.holderFence})`);
}
