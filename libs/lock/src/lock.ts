/**
 * Locks per blob across every worker of every process, on Redis.
 *
 * - `tryAcquire(name, waiter?)` takes the lock with a random token and an expiry, or reports the
 *   holder; with a waiter id it also registers the caller to be woken when the lock is released,
 *   atomically with the check (no missed wake-ups).
 * - The holder renews the expiry while it works (`hold`); if a renewal finds the lock gone (a GC
 *   pause or a partition outlived the expiry), the work's AbortSignal fires with `LockLostError`.
 * - Fencing: every grant carries a fence number that grows with each new holder; `assertCurrent`
 *   right before publishing refuses to let a stale holder publish over a newer holder's work.
 * - `release` is compare-and-delete and hands back the waiters to wake. The holder commits before
 *   it releases, so whoever runs next sees the committed result and skips.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ACQUIRE, RELEASE, RENEW, WAIT_IF_HELD } from './scripts.ts';

/** Default lock expiry: long enough to ride out a GC pause, short enough that a crash frees it soon. */
export const DEFAULT_LOCK_TTL_MS = 30_000;
/** Renew this many times per TTL, so two renewals can fail before the lock expires. */
const RENEWALS_PER_TTL = 3;
/** Fence counters and waiter sets outlive any plausible holder; they are coordination only. */
const BOOKKEEPING_TTL_MS = 24 * 60 * 60 * 1000;
const NONCE_BYTES = 12;

export class LockLostError extends Error {
  override readonly name = 'LockLostError';
}

/** A held lock. `fence` grows with each new holder of the same name. */
export interface LockGrant {
  readonly name: string;
  readonly token: string;
  readonly fence: number;
}

export type AcquireResult =
  | { readonly acquired: true; readonly grant: LockGrant }
  | { readonly acquired: false; readonly holderFence: number; readonly ttlMs: number };

export interface ReleaseResult {
  /** False when the lock had expired or passed to another holder before the release. */
  readonly released: boolean;
  /** Waiter ids registered while the lock was held; the caller wakes them. */
  readonly waiters: readonly string[];
}

export interface LockManagerOptions {
  readonly prefix?: string;
  readonly ttlMs?: number;
}

interface LockCommands {
  lockAcquire(
    lockKey: string,
    fenceKey: string,
    waitersKey: string,
    nonce: string,
    ttlMs: number,
    waiter: string,
    bookkeepingTtlMs: number,
  ): Promise<[number, string, number]>;
  lockRenew(lockKey: string, token: string, ttlMs: number): Promise<number>;
  lockRelease(lockKey: string, waitersKey: string, token: string): Promise<[number, ...string[]]>;
  lockWaitIfHeld(
    lockKey: string,
    waitersKey: string,
    waiter: string,
    bookkeepingTtlMs: number,
  ): Promise<[0] | [1, string, number]>;
}

function fenceOf(token: string): number {
  return Number(token.slice(0, token.indexOf(':')));
}

export class LockManager {
  readonly ttlMs: number;
  readonly #redis: Redis & LockCommands;
  readonly #prefix: string;

  constructor(redis: Redis, options: LockManagerOptions = {}) {
    this.ttlMs = options.ttlMs ?? DEFAULT_LOCK_TTL_MS;
    this.#prefix = options.prefix ?? 'stevedore:lock';
    redis.defineCommand('lockAcquire', { numberOfKeys: 3, lua: ACQUIRE });
    redis.defineCommand('lockRenew', { numberOfKeys: 1, lua: RENEW });
    redis.defineCommand('lockRelease', { numberOfKeys: 2, lua: RELEASE });
    redis.defineCommand('lockWaitIfHeld', { numberOfKeys: 2, lua: WAIT_IF_HELD });
    this.#redis = redis as Redis & LockCommands;
  }

  #keys(name: string): { lock: string; fence: string; waiters: string } {
    return {
      lock: `${this.#prefix}:${name}`,
      fence: `${this.#prefix}:${name}:fence`,
      waiters: `${this.#prefix}:${name}:waiters`,
    };
  }

  /**
   * Takes the lock `name` if it is free. When it is held and `waiter` is given, the waiter id is
   * registered (in the same atomic step) to be returned by the holder's `release`.
   */
  async tryAcquire(name: string, waiter = ''): Promise<AcquireResult> {
    const keys = this.#keys(name);
    const nonce = randomBytes(NONCE_BYTES).toString('hex');
    const [ok, token, ttl] = await this.#redis.lockAcquire(
      keys.lock,
      keys.fence,
      keys.waiters,
      nonce,
      this.ttlMs,
      waiter,
      BOOKKEEPING_TTL_MS,
    );
    if (ok === 1) return { acquired: true, grant: { name, token, fence: fenceOf(token) } };
    return { acquired: false, holderFence: fenceOf(token), ttlMs: Math.max(0, ttl) };
  }

  /**
   * A gate: when nobody holds `name`, returns `{ held: false }` and takes nothing; when somebody
   * does, registers `waiter` (in the same atomic step) to be returned by the holder's `release`,
   * like a {@link LockManager.tryAcquire} that finds the lock held.
   */
  async waitIfHeld(
    name: string,
    waiter: string,
  ): Promise<
    { readonly held: false } | { readonly held: true; readonly holderFence: number; readonly ttlMs: number }
  > {
    const keys = this.#keys(name);
    const reply = await this.#redis.lockWaitIfHeld(keys.lock, keys.waiters, waiter, BOOKKEEPING_TTL_MS);
    if (reply[0] === 0) return { held: false };
    return { held: true, holderFence: fenceOf(reply[1]), ttlMs: Math.max(0, reply[2]) };
  }

  /** Resets the expiry; false when the grant no longer holds the lock. */
  async renew(grant: LockGrant): Promise<boolean> {
    return (await this.#redis.lockRenew(this.#keys(grant.name).lock, grant.token, this.ttlMs)) === 1;
  }

  /** True while `grant` still holds its lock. */
  async isCurrent(grant: LockGrant): Promise<boolean> {
    return (await this.#redis.get(this.#keys(grant.name).lock)) === grant.token;
  }

  /** The fence of whoever holds `name` now, or undefined when it is free. */
  async currentFence(name: string): Promise<number | undefined> {
    const token = await this.#redis.get(this.#keys(name).lock);
    return token === null ? undefined : fenceOf(token);
  }

  /** Fencing check before publishing: throws {@link LockLostError} unless `grant` still holds. */
  async assertCurrent(grant: LockGrant): Promise<void> {
    if (!(await this.isCurrent(grant))) {
      throw new LockLostError(`lock ${grant.name} (fence ${grant.fence}) was lost before publishing`);
    }
  }

  /** Compare-and-delete; returns the waiters to wake. */
  async release(grant: LockGrant): Promise<ReleaseResult> {
    const keys = this.#keys(grant.name);
    const [released, ...waiters] = await this.#redis.lockRelease(keys.lock, keys.waiters, grant.token);
    return { released: released === 1, waiters };
  }

  /**
   * Runs `work` while renewing `grant`. The signal given to `work` aborts (reason
   * {@link LockLostError}) when a renewal finds the lock lost, or when `parent` aborts. Does not
   * release: the caller commits, then releases.
   */
  async hold<T>(
    grant: LockGrant,
    work: (signal: AbortSignal) => Promise<T>,
    parent?: AbortSignal,
  ): Promise<T> {
    const controller = new AbortController();
    const onParentAbort = (): void => controller.abort(parent?.reason);
    parent?.addEventListener('abort', onParentAbort, { once: true });
    if (parent?.aborted) onParentAbort();
    const interval = Math.max(1, Math.floor(this.ttlMs / RENEWALS_PER_TTL));
    let renewing: Promise<void> = Promise.resolve();
    let heldUntil = Date.now() + this.ttlMs;
    const timer = setInterval(() => {
      const startedAt = Date.now();
      renewing = this.renew(grant).then(
        (held) => {
          if (held) heldUntil = startedAt + this.ttlMs;
          else controller.abort(new LockLostError(`lock ${grant.name} (fence ${grant.fence}) expired`));
        },
        (err: unknown) => {
          // One failed renewal is not yet a lost lock: the next may succeed before the expiry.
          if (Date.now() >= heldUntil && !controller.signal.aborted) {
            controller.abort(
              new LockLostError(`lock ${grant.name}: could not renew before expiry`, { cause: err }),
            );
          }
        },
      );
    }, interval);
    try {
      return await work(controller.signal);
    } finally {
      clearInterval(timer);
      parent?.removeEventListener('abort', onParentAbort);
      await renewing;
    }
  }
}
