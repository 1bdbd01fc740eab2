import { spawn } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { startRedis } from '@stevedore/testing';
import { commandConnection, connectionLoss, redactUrl } from './redis.ts';

/** Resolves when the connection has stopped reconnecting. */
const ended = (redis: Redis): Promise<void> => new Promise((resolve) => redis.once('end', () => resolve()));

/** `s` as a literal inside a RegExp. */
const literal = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

describe('commandConnection', () => {
  it('after Redis is gone for longer than it reconnects, connectionLoss names Redis, the cause and the wait', async () => {
    // A private server: this test stops it.
    const server = await startRedis();
    const redis = await commandConnection(server.url, { reconnectForMs: 1_000 });
    try {
      expect(await redis.ping()).toBe('PONG');
      expect(connectionLoss(redis)).toBeUndefined();
      const gone = ended(redis);
      await server.stop();
      // Still reconnecting: not a loss yet.
      expect(connectionLoss(redis)).toBeUndefined();
      await gone;
      // What a command gets from ioredis, and what connectionLoss says instead.
      await expect(redis.ping()).rejects.toThrow('Connection is closed');
      const loss = connectionLoss(redis);
      expect(loss?.message).toMatch(
        new RegExp(
          `^lost Redis at ${literal(redactUrl(server.url))}: connect ECONNREFUSED 127\\.0\\.0\\.1:${server.port} \\(no connection again for 1 s\\)$`,
        ),
      );
    } finally {
      redis.disconnect();
      await server.stop();
    }
  });

  it('a command issued while Redis restarts waits for it (within the reconnect window) and succeeds', async () => {
    const server = await startRedis();
    const redis = await commandConnection(server.url, { reconnectForMs: 20_000 });
    // The same port again, after the first server is gone: a restart.
    let again: ReturnType<typeof spawn> | undefined;
    try {
      await redis.set('before', '1');
      await server.stop();
      const pending = redis.get('before');
      await delay(1_500);
      again = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(server.port), '--save', ''], {
        stdio: 'ignore',
      });
      // A fresh server has no data: what matters is that the command was answered, not failed.
      await expect(pending).resolves.toBeNull();
      expect(connectionLoss(redis)).toBeUndefined();
    } finally {
      redis.disconnect();
      again?.kill('SIGKILL');
      await server.stop();
    }
  });

  it('masks the password of the URL in what it says of a loss', async () => {
    const server = await startRedis();
    const admin = new Redis(server.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await admin.connect();
    await admin.config('SET', 'requirepass', 'hunter2-secret');
    admin.disconnect();
    const url = server.url.replace('redis://', 'redis://:hunter2-secret@');
    const redis = await commandConnection(url, { reconnectForMs: 0 });
    try {
      expect(await redis.ping()).toBe('PONG');
      const gone = ended(redis);
      await server.stop();
      await gone;
      const message = connectionLoss(redis)?.message;
      expect(message).toMatch(
        new RegExp(`^lost Redis at redis://:\\*\\*\\*@127\\.0\\.0\\.1:${server.port}: `),
      );
      expect(message).not.toContain('hunter2');
    } finally {
      redis.disconnect();
      await server.stop();
    }
  });
});
