import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import '@stevedore/testing';
import { LockManager } from '@stevedore/lock';
import {
  beginStoreRead,
  CollectionRunningError,
  GC_GATE,
  listStoreReaders,
  READERS_KEY,
  ReadLeaseLostError,
} from './store-readers.ts';

// One database of the shared test Redis for this file: the gate and the readers' set are global
// names, and other files' tests hold the gate too.
const DB = 7;
let redis: Redis;

beforeAll(async () => {
  redis = new Redis(inject('stack').redis.url, { maxRetriesPerRequest: null, db: DB });
  await redis.flushdb();
});
afterAll(async () => {
  await redis.quit();
});

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('read leases', () => {
  it('a lease is listed with its description while held, and gone once ended', async () => {
    const lease = await beginStoreRead(redis, 'test: download of 2 image reference(s)');
    const readers = await listStoreReaders(redis);
    expect(readers).toHaveLength(1);
    expect(readers[0]).toMatch(/ pid \d+: test: download of 2 image reference\(s\)$/);
    expect(lease.signal.aborted).toBe(false);
    await lease.end();
    await lease.end(); // idempotent
    expect(await listStoreReaders(redis)).toEqual([]);
  });

  it('is refused while the gc gate is held, leaving no key behind', async () => {
    const locks = new LockManager(redis);
    const gate = await locks.tryAcquire(GC_GATE);
    expect(gate.acquired).toBe(true);
    if (!gate.acquired) return;
    try {
      await expect(beginStoreRead(redis, 'test: refused')).rejects.toBeInstanceOf(CollectionRunningError);
      expect(await listStoreReaders(redis)).toEqual([]);
    } finally {
      await locks.release(gate.grant);
    }
    const lease = await beginStoreRead(redis, 'test: after the gate opened');
    await lease.end();
  });

  it('is renewed while held, and expires when its holder stops renewing (a crashed reader)', async () => {
    // A TTL long enough that a busy CI machine's event loop still renews in time.
    const lease = await beginStoreRead(redis, 'test: renewed', { ttlMs: 1_500 });
    // Three TTLs later it is still there: renewed.
    await new Promise((r) => setTimeout(r, 4_600));
    expect(await listStoreReaders(redis)).toHaveLength(1);
    expect(lease.signal.aborted).toBe(false);
    await lease.end();

    // A reader that crashed: its entry, expiring in 2 s of Redis's clock, and nobody renewing it.
    const [seconds, micros] = await redis.time();
    const now = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
    await redis.zadd(READERS_KEY, now + 2_000, 'crashed reader');
    expect(await listStoreReaders(redis)).toEqual(['crashed reader']);
    await eventually(
      'the crashed reader to expire',
      async () => (await listStoreReaders(redis)).length === 0,
    );
  }, 30_000);

  it('a lease whose entry is gone (expired while its process was stalled) aborts its signal', async () => {
    const lease = await beginStoreRead(redis, 'test: lost', { ttlMs: 600 });
    const members = await redis.zrange(READERS_KEY, 0, -1);
    expect(members).toHaveLength(1);
    await redis.zrem(READERS_KEY, ...members);
    await eventually('the lost lease to abort', () => Promise.resolve(lease.signal.aborted));
    expect(lease.signal.reason).toBeInstanceOf(ReadLeaseLostError);
    expect(String((lease.signal.reason as Error).message)).toMatch(/test: lost expired/);
    // Not taken again by a renewal.
    expect(await listStoreReaders(redis)).toEqual([]);
    await lease.end();

    // Expired but not yet removed (nobody listed the readers since): not brought back either.
    const stale = await beginStoreRead(redis, 'test: stale', { ttlMs: 600 });
    const [member] = await redis.zrange(READERS_KEY, 0, -1);
    await redis.zadd(READERS_KEY, 'XX', 0, member!);
    await eventually('the stale lease to abort', () => Promise.resolve(stale.signal.aborted));
    expect(await redis.zrange(READERS_KEY, 0, -1)).toEqual([]);
    await stale.end();
  }, 30_000);
});
