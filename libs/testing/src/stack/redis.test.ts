import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from './process.ts';
import { startRedis, type RedisServer } from './redis.ts';

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

  it('stop() kills the process, twice is fine', async () => {
    const other = await startRedis();
    expect(isAlive(other.pid)).toBe(true);
    expect(other.logs()).toMatch(/Ready to accept connections/);
    await other.stop();
    await other.stop();
    expect(isAlive(other.pid)).toBe(false);
  });
});
