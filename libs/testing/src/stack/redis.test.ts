import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from './process.ts';
import { existsSync } from 'node:fs';
import { AddressInUseError } from './ports.ts';
import { requireProgram } from './programs.ts';
import { launchRedis, startRedis, type RedisServer } from './redis.ts';
import { occupyPort } from './test-support.ts';

describe('startRedis', () => {
  let redis: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    redis = await startRedis();
    client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await client.connect();
  });
  afterAll(async () => {
    client.disconnect();
    await redis.stop();
  });

  it('listens on 127.0.0.1 and answers PING', async () => {
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
    expect(await client.ping()).toBe('PONG');
  });

  it.each([
    ['maxmemory-policy', 'noeviction'],
    ['save', ''],
    ['appendonly', 'no'],
    ['bind', '127.0.0.1'],
  ])('has %s = %j', async (name, value) => {
    expect(await client.config('GET', name)).toEqual([name, value]);
  });

  it('stop() kills the process and removes its directory; twice is fine', async () => {
    const other = await startRedis();
    const probe = new Redis(other.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await probe.connect();
    const [, dir] = (await probe.config('GET', 'dir')) as [string, string];
    probe.disconnect();
    expect(dir).toMatch(/\/stevedore-redis-[^/]+$/);
    expect(existsSync(dir)).toBe(true);
    expect(isAlive(other.pid)).toBe(true);
    expect(other.logs()).toMatch(/Ready to accept connections/);
    await other.stop();
    await other.stop();
    expect(isAlive(other.pid)).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });

  it('reports a taken port as AddressInUseError (startRedis then retries elsewhere)', async () => {
    const taken = await occupyPort();
    try {
      const failed = launchRedis(await requireProgram('redis-server'), taken.port);
      await expect(failed).rejects.toBeInstanceOf(AddressInUseError);
    } finally {
      await taken.release();
    }
  });
});
