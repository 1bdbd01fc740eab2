import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import '@stevedore/testing';
import { LockLostError, LockManager } from './lock.ts';

let redis: Redis;

beforeAll(() => {
  redis = new Redis(inject('stack').redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  await redis.quit();
});

function uniqueName(): string {
  return `test-${randomUUID()}`;
}

describe('LockManager', () => {
  it('grants one holder at a time, with growing fences, and registers waiters atomically', async () => {
    const locks = new LockManager(redis, { ttlMs: 10_000 });
    const name = uniqueName();
    const first = await locks.tryAcquire(name);
    expect(first.acquired).toBe(true);
    if (!first.acquired) return;
    expect(first.grant.fence).toBe(1);

    const second = await locks.tryAcquire(name, 'fetch|job-2');
    expect(second).toMatchObject({ acquired: false, holderFence: 1 });
    if (second.acquired) return;
    expect(second.ttlMs).toBeGreaterThan(9_000);
    expect(second.ttlMs).toBeLessThanOrEqual(10_000);
    await locks.tryAcquire(name, 'fetch|job-3');

    const released = await locks.release(first.grant);
    expect(released.released).toBe(true);
    expect([...released.waiters].sort()).toEqual(['fetch|job-2', 'fetch|job-3']);

    const third = await locks.tryAcquire(name);
    expect(third.acquired && third.grant.fence).toBe(2);
    if (third.acquired) expect((await locks.release(third.grant)).waiters).toEqual([]);
  });

  it('as a gate: passes while the lock is free (taking nothing), registers a waiter while it is held', async () => {
    const locks = new LockManager(redis, { ttlMs: 10_000 });
    const name = uniqueName();
    expect(await locks.waitIfHeld(name, 'split|job-1')).toEqual({ held: false });
    // Passing took nothing: the lock is still free for a holder, with the first fence.
    const grant = await locks.tryAcquire(name);
    expect(grant).toMatchObject({ acquired: true, grant: { fence: 1 } });
    if (!grant.acquired) return;
    const waiting = await locks.waitIfHeld(name, 'split|job-1');
    expect(waiting).toMatchObject({ held: true, holderFence: 1 });
    if (!waiting.held) return;
    expect(waiting.ttlMs).toBeGreaterThan(9_000);
    await locks.waitIfHeld(name, 'commit|job-2');
    const released = await locks.release(grant.grant);
    expect([...released.waiters].sort()).toEqual(['commit|job-2', 'split|job-1']);
    expect(await locks.waitIfHeld(name, 'split|job-1')).toEqual({ held: false });
  });

  it('fences off a holder whose lock expired', async () => {
    const locks = new LockManager(redis, { ttlMs: 10_000 });
    const name = uniqueName();
    const stale = await locks.tryAcquire(name);
    if (!stale.acquired) throw new Error('expected the lock');
    // Expire it as a long GC pause would.
    await redis.del(`stevedore:lock:${name}`);
    const fresh = await locks.tryAcquire(name);
    if (!fresh.acquired) throw new Error('expected the lock');
    expect(fresh.grant.fence).toBeGreaterThan(stale.grant.fence);

    expect(await locks.renew(stale.grant)).toBe(false);
    await expect(locks.assertCurrent(stale.grant)).rejects.toThrow(
      new LockLostError(`lock ${name} (fence 1) was lost before publishing`),
    );
    await locks.tryAcquire(name, 'waiter-of-fresh');
    // The stale holder's release deletes nothing and leaves the waiters to the current holder.
    expect(await locks.release(stale.grant)).toEqual({ released: false, waiters: [] });
    expect(await locks.isCurrent(fresh.grant)).toBe(true);
    expect(await locks.release(fresh.grant)).toEqual({ released: true, waiters: ['waiter-of-fresh'] });
  });

  it('hands waiters over when the holder crashed and its lock expired', async () => {
    const locks = new LockManager(redis, { ttlMs: 10_000 });
    const name = uniqueName();
    const crashed = await locks.tryAcquire(name);
    if (!crashed.acquired) throw new Error('expected the lock');
    await locks.tryAcquire(name, 'w1');
    await redis.del(`stevedore:lock:${name}`);
    expect(await locks.release(crashed.grant)).toEqual({ released: false, waiters: ['w1'] });
  });

  it('expires a lock nobody renews', async () => {
    const locks = new LockManager(redis, { ttlMs: 50 });
    const name = uniqueName();
    const grant = await locks.tryAcquire(name);
    if (!grant.acquired) throw new Error('expected the lock');
    const deadline = Date.now() + 5_000;
    while (await locks.isCurrent(grant.grant)) {
      if (Date.now() > deadline) throw new Error('lock never expired');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await locks.tryAcquire(name)).acquired).toBe(true);
  });

  it('renews while holding, past several TTLs', async () => {
    const locks = new LockManager(redis, { ttlMs: 150 });
    const name = uniqueName();
    const got = await locks.tryAcquire(name);
    if (!got.acquired) throw new Error('expected the lock');
    const result = await locks.hold(got.grant, async (signal) => {
      await new Promise((r) => setTimeout(r, 600));
      return signal.aborted;
    });
    expect(result).toBe(false);
    expect(await locks.isCurrent(got.grant)).toBe(true);
    expect((await locks.release(got.grant)).released).toBe(true);
  });

  it('aborts the work when the lock is lost while held', async () => {
    const locks = new LockManager(redis, { ttlMs: 150 });
    const name = uniqueName();
    const got = await locks.tryAcquire(name);
    if (!got.acquired) throw new Error('expected the lock');
    const reason = await locks.hold(got.grant, async (signal) => {
      await redis.del(`stevedore:lock:${name}`);
      await once(signal, 'abort');
      return signal.reason as unknown;
    });
    expect(reason).toEqual(new LockLostError(`lock ${name} (fence 1) expired`));
  });
});
