import { randomUUID } from 'node:crypto';
import { FlowProducer, Queue, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, vi } from 'vitest';
import '@stevedore/testing';
import { registerPipelineMetrics, registerQueueMetrics } from './prometheus.ts';
import { readPipelineMetrics } from './reader.ts';
import { RedisPipelineMetrics } from './redis-metrics.ts';

let redis: Redis;

beforeAll(() => {
  redis = new Redis(inject('stack').redis.url, { maxRetriesPerRequest: null });
});
afterAll(async () => {
  await redis.quit();
});
afterEach(() => {
  vi.useRealTimers();
});

function uniqueKey(): string {
  return `test:metrics:${randomUUID()}`;
}

function failOnError(err: Error): void {
  throw err;
}

/** Lines of the exposition that start with one of `prefixes` (HELP and TYPE lines included). */
function linesOf(text: string, ...prefixes: string[]): string[] {
  return text
    .split('\n')
    .filter((l) =>
      prefixes.some((p) => l.startsWith(p) || l.startsWith(`# HELP ${p}`) || l.startsWith(`# TYPE ${p}`)),
    );
}

describe('RedisPipelineMetrics', () => {
  it('batches increments and adds them to the hash in one flush', async () => {
    const key = uniqueKey();
    const metrics = new RedisPipelineMetrics(redis, { key, onError: failOnError });
    metrics.count('bytes_fetched', 1000);
    metrics.count('bytes_fetched', 24);
    metrics.count('blobs_committed');
    metrics.observe('stage_seconds', 0.25, { stage: 'fetch' });
    metrics.observe('stage_seconds', 0.5, { stage: 'fetch' });
    metrics.observe('stage_seconds', 700, { stage: 'fetch' });
    metrics.observe('stage_seconds', 2, { stage: 'split' });
    expect(await redis.hgetall(key)).toEqual({});

    await metrics.close();
    // Values are sent as the shortest decimal of the double; Redis adds them as long doubles.
    expect(await redis.hgetall(key)).toEqual({
      '["c","bytes_fetched",[]]': '1024',
      '["c","blobs_committed",[]]': '1',
      '["h","stage_seconds",[["stage","fetch"]],"le","0.25"]': '1',
      '["h","stage_seconds",[["stage","fetch"]],"le","0.5"]': '1',
      '["h","stage_seconds",[["stage","fetch"]],"le","+Inf"]': '1',
      '["h","stage_seconds",[["stage","fetch"]],"sum"]': '700.75',
      '["h","stage_seconds",[["stage","fetch"]],"count"]': '3',
      '["h","stage_seconds",[["stage","split"]],"le","2.5"]': '1',
      '["h","stage_seconds",[["stage","split"]],"sum"]': '2',
      '["h","stage_seconds",[["stage","split"]],"count"]': '1',
    });
    await redis.del(key);
  });

  it('adds up the increments of several processes', async () => {
    const key = uniqueKey();
    const a = new RedisPipelineMetrics(redis, { key, onError: failOnError });
    const b = new RedisPipelineMetrics(redis, { key, onError: failOnError });
    a.count('objects_written', 7);
    b.count('objects_written', 5);
    a.count('objects_reused', 3);
    await Promise.all([a.close(), b.close()]);
    const snapshot = await readPipelineMetrics(redis, key);
    expect(snapshot.counters.get('objects_written')).toEqual([{ labels: [], value: 12 }]);
    expect(snapshot.counters.get('objects_reused')).toEqual([{ labels: [], value: 3 }]);
    await redis.del(key);
  });

  it('flushes on its interval', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const key = uniqueKey();
    const metrics = new RedisPipelineMetrics(redis, { key, onError: failOnError, flushIntervalMs: 1_000 });
    metrics.count('lock_waits', 2);
    vi.advanceTimersByTime(999);
    // flush() runs after any flush in progress: here none, so the hash is still empty after it.
    expect(await redis.hget(key, '["c","lock_waits",[]]')).toBeNull();
    vi.advanceTimersByTime(1);
    // The interval's flush is in progress; an explicit flush is chained after it.
    await metrics.flush();
    expect(await redis.hget(key, '["c","lock_waits",[]]')).toBe('2');
    await metrics.close();
    await redis.del(key);
  });

  it('keeps the increments of a failed flush for the next one, and reports the error', async () => {
    const key = uniqueKey();
    // A field that is not a number makes its HINCRBYFLOAT fail; the others in the batch apply.
    await redis.hset(key, '["c","layers_committed",[]]', 'garbage');
    const errors: Error[] = [];
    const metrics = new RedisPipelineMetrics(redis, { key, onError: (e) => errors.push(e) });
    metrics.count('layers_committed', 4);
    metrics.count('bytes_skipped', 10);
    await expect(metrics.flush()).rejects.toThrow(
      new Error(`adding to field ["c","layers_committed",[]] of Redis hash ${key} failed`),
    );
    expect(await redis.hgetall(key)).toEqual({
      '["c","layers_committed",[]]': 'garbage',
      '["c","bytes_skipped",[]]': '10',
    });
    await redis.hdel(key, '["c","layers_committed",[]]');
    metrics.count('layers_committed', 1);
    await metrics.close();
    expect(await redis.hgetall(key)).toEqual({
      '["c","layers_committed",[]]': '5',
      '["c","bytes_skipped",[]]': '10',
    });
    expect(errors).toEqual([]);
    await redis.del(key);
  });

  it('reports a failed background flush through onError', async () => {
    const key = uniqueKey();
    await redis.hset(key, '["c","lock_waits",[]]', 'garbage');
    const { promise, resolve } = Promise.withResolvers<Error>();
    const metrics = new RedisPipelineMetrics(redis, { key, onError: resolve, flushIntervalMs: 10 });
    metrics.count('lock_waits');
    const err = await promise;
    expect(err.message).toBe(`adding to field ["c","lock_waits",[]] of Redis hash ${key} failed`);
    expect((err.cause as Error).message).toBe('ERR hash value is not a float');
    await redis.del(key);
    await metrics.close();
    expect(await redis.hget(key, '["c","lock_waits",[]]')).toBe('1');
    await redis.del(key);
  });

  it.each([
    {
      call: (m: RedisPipelineMetrics) => m.count('bytes_fetched', -1),
      message: 'metric bytes_fetched: a counter only grows, got -1',
    },
    {
      call: (m: RedisPipelineMetrics) => m.observe('stage_seconds', Number.NaN, { stage: 'fetch' }),
      message: 'metric stage_seconds: a duration must be a non-negative number of seconds, got NaN',
    },
    {
      call: (m: RedisPipelineMetrics) => m.count('lock_waits', 1, { queue: 'fetch' }),
      message: 'metric stevedore_lock_waits_total has no label "queue" (declared: none)',
    },
  ])('refuses bad input: $message', async ({ call, message }) => {
    const metrics = new RedisPipelineMetrics(redis, { key: uniqueKey(), onError: failOnError });
    expect(() => call(metrics)).toThrow(new Error(message));
    await metrics.close();
  });
});

describe('registerPipelineMetrics', () => {
  it('exposes the counters and histograms in Redis as Prometheus text', async () => {
    const key = uniqueKey();
    const metrics = new RedisPipelineMetrics(redis, { key, onError: failOnError });
    metrics.count('bytes_fetched', 5_000_000_000);
    metrics.observe('stage_seconds', 0.004, { stage: 'fetch' });
    metrics.observe('stage_seconds', 3, { stage: 'fetch' });
    metrics.observe('lock_wait_seconds', 12);
    await metrics.close();

    const registry = new Registry();
    registerPipelineMetrics(registry, () => readPipelineMetrics(redis, key));
    const text = await registry.metrics();
    expect(linesOf(text, 'stevedore_bytes_fetched_total', 'stevedore_lock_waits_total')).toEqual([
      '# HELP stevedore_bytes_fetched_total Compressed blob bytes transferred from registries into the store.',
      '# TYPE stevedore_bytes_fetched_total counter',
      'stevedore_bytes_fetched_total 5000000000',
      '# HELP stevedore_lock_waits_total Jobs that found the blob or layer lock held by another worker and parked until its release.',
      '# TYPE stevedore_lock_waits_total counter',
      'stevedore_lock_waits_total 0',
    ]);
    const stage = (le: string, n: number): string =>
      `stevedore_stage_seconds_bucket{stage="fetch",le="${le}"} ${n}`;
    expect(linesOf(text, 'stevedore_stage_seconds')).toEqual([
      '# HELP stevedore_stage_seconds Time a pipeline stage took for one job, by stage (fetch, split, ...).',
      '# TYPE stevedore_stage_seconds histogram',
      stage('0.005', 1),
      stage('0.01', 1),
      stage('0.025', 1),
      stage('0.05', 1),
      stage('0.1', 1),
      stage('0.25', 1),
      stage('0.5', 1),
      stage('1', 1),
      stage('2.5', 1),
      stage('5', 2),
      stage('10', 2),
      stage('30', 2),
      stage('60', 2),
      stage('120', 2),
      stage('300', 2),
      stage('600', 2),
      stage('+Inf', 2),
      'stevedore_stage_seconds_sum{stage="fetch"} 3.004',
      'stevedore_stage_seconds_count{stage="fetch"} 2',
    ]);
    expect(
      linesOf(
        text,
        'stevedore_lock_wait_seconds_bucket{le="10"}',
        'stevedore_lock_wait_seconds_bucket{le="30"}',
        'stevedore_lock_wait_seconds_sum',
        'stevedore_lock_wait_seconds_count',
      ),
    ).toEqual([
      'stevedore_lock_wait_seconds_bucket{le="10"} 0',
      'stevedore_lock_wait_seconds_bucket{le="30"} 1',
      'stevedore_lock_wait_seconds_sum 12',
      'stevedore_lock_wait_seconds_count 1',
    ]);
    await redis.del(key);
  });

  it('reads Redis once per scrape', async () => {
    const read = vi.fn(() => readPipelineMetrics(redis, uniqueKey()));
    const registry = new Registry();
    registerPipelineMetrics(registry, read);
    await registry.metrics();
    expect(read).toHaveBeenCalledTimes(1);
    await registry.metrics();
    expect(read).toHaveBeenCalledTimes(2);
  });
});

describe('registerQueueMetrics', () => {
  it('counts the jobs of each queue in each state at scrape time', async () => {
    const prefix = `test-${randomUUID()}`;
    const connection = redis;
    const fetch = new Queue('fetch', { connection, prefix });
    const split = new Queue('split', { connection, prefix });
    const flows = new FlowProducer({ connection, prefix });

    // fetch: 1 completed, 1 failed, then 1 active (held), 2 waiting, 1 delayed, 1 prioritized.
    await fetch.add('ok', {});
    await fetch.add('bad', {}, { attempts: 1 });
    const release = Promise.withResolvers<void>();
    const started = Promise.withResolvers<void>();
    let processed = 0;
    const worker = new Worker(
      'fetch',
      async (job) => {
        processed += 1;
        if (job.name === 'bad') throw new UnrecoverableError('bad job');
        if (job.name === 'hold') {
          started.resolve();
          await release.promise;
        }
      },
      { connection, prefix, autorun: false },
    );
    const workerErrors: Error[] = [];
    worker.on('error', (err) => workerErrors.push(err));
    const settled = new Promise<void>((resolve) => {
      let n = 0;
      const done = (): void => {
        n += 1;
        if (n === 2) resolve();
      };
      worker.on('completed', done);
      worker.on('failed', done);
    });
    void worker.run();
    await settled;
    await fetch.add('hold', {});
    await started.promise;
    await worker.pause(true);
    await fetch.add('w1', {});
    await fetch.add('w2', {});
    await fetch.add('later', {}, { delay: 60_000 });
    await fetch.add('urgent', {}, { priority: 1 });
    // split: a parent waiting for its child (waiting).
    await flows.add({
      name: 'parent',
      queueName: 'split',
      children: [{ name: 'child', queueName: 'split', data: {} }],
    });

    const registry = new Registry();
    registerQueueMetrics(registry, [fetch, split]);
    const text = await registry.metrics();
    const series = (queue: string, counts: number[]): string[] =>
      ['waiting', 'active', 'delayed', 'waiting-children', 'prioritized', 'completed', 'failed'].map(
        (state, i) => `stevedore_queue_jobs{queue="${queue}",state="${state}"} ${counts[i]}`,
      );
    expect(text).toBe(
      [
        '# HELP stevedore_queue_jobs Jobs per stevedore queue and BullMQ state, read from Redis at scrape time.',
        '# TYPE stevedore_queue_jobs gauge',
        ...series('fetch', [2, 1, 1, 0, 1, 1, 1]),
        ...series('split', [1, 0, 0, 1, 0, 0, 0]),
        '',
      ].join('\n'),
    );
    expect(processed).toBe(3);
    expect(workerErrors).toEqual([]);

    release.resolve();
    await worker.close();
    await flows.close();
    await fetch.obliterate({ force: true });
    await split.obliterate({ force: true });
    await fetch.close();
    await split.close();
  });
});
