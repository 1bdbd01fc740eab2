/**
 * Test support: the API over real HTTP on a loopback port, with a real Redis database of the
 * stack, a real directory store, and fixture images written into it through the store's API.
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { inject } from 'vitest';
import { producerConnection, PullSubmitter, StoreGate } from '@stevedore/pipeline';
import { openStore, type Store } from '@stevedore/store';
import '@stevedore/testing';
import { buildServer } from '../src/server.ts';

export const TOKEN = 'test-token-0123456789abcdef';
export const BOARD_USER = 'operator';
export const BOARD_PASSWORD = 'board-password-0123456789';

export function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** The stack's Redis, database `db` (each test file its own, since queue names are fixed). */
export function redisUrl(db: number): string {
  return `${inject('stack').redis.url}/${db}`;
}

export interface TestApi {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly redis: Redis;
  /** A worker-style connection (maxRetriesPerRequest: null) to the same database. */
  readonly workerRedis: Redis;
  readonly store: Store;
  readonly storeDir: string;
  readonly submitter: PullSubmitter;
  /** GET/POST/DELETE with the bearer token. */
  request(path: string, init?: RequestInit): Promise<Response>;
  close(): Promise<void>;
}

export async function startApi(db: number): Promise<TestApi> {
  const redis = producerConnection(redisUrl(db));
  const workerRedis = new Redis(redisUrl(db), { maxRetriesPerRequest: null });
  // A producer connection fails fast instead of queueing commands: wait until it is up.
  if (redis.status !== 'ready') await once(redis, 'ready');
  await redis.flushdb();
  const storeDir = await mkdtemp(join(tmpdir(), 'stevedore-api-test-'));
  const store = await openStore({ backend: { kind: 'directory', path: storeDir } });
  const submitter = new PullSubmitter(redis);
  const gate = new StoreGate(redis, () => store.forgetObjectIndex());
  const app = await buildServer({
    config: {
      STEVEDORE_API_TOKEN: TOKEN,
      STEVEDORE_BOARD_USER: BOARD_USER,
      STEVEDORE_BOARD_PASSWORD: BOARD_PASSWORD,
    },
    redis,
    submitter,
    store,
    metrics: new Registry(),
    // As main.ts wires it.
    beginStoreRead: (what) => gate.beginRead(what),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return {
    url,
    app,
    redis,
    workerRedis,
    store,
    storeDir,
    submitter,
    request(path, init = {}) {
      const headers = new Headers(init.headers);
      if (!headers.has('authorization')) headers.set('authorization', `Bearer ${TOKEN}`);
      return fetch(`${url}${path}`, { ...init, headers });
    },
    async close() {
      await app.close();
      await submitter.close();
      await store.close();
      await redis.quit();
      await workerRedis.quit();
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
