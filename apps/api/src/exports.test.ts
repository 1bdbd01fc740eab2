/**
 * Exports over real HTTP: streamed downloads (Content-Type, Content-Length when known, the same
 * bytes every time), refusals before any byte, a failure mid-stream seen by the client as a reset
 * connection, and an export job run by an in-process hasher, then fetched from the store.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Job, Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference, RegistryClient } from '@stevedore/oci';
import {
  GC_GATE,
  listStoreReaders,
  runGarbageCollection,
  createLogger,
  pipelineStore,
  startWorkerHost,
  storeExporter,
  type WorkerHost,
} from '@stevedore/pipeline';
import { QUEUE_PREFIX, QUEUES } from '@stevedore/queue';
import { LockManager } from '@stevedore/lock';
import { openStore } from '@stevedore/store';
import { buildImageFromTrees, generateTree, storeFixtureImage, type FixtureImage } from '@stevedore/testing';
import { redisUrl, startApi, TOKEN, type TestApi } from '../test/support.ts';

const DB = 4;
const APP = 'registry.test/export/app:1';
const BROKEN = 'registry.test/export/broken:1';

let api: TestApi;
let host: WorkerHost;
let events: QueueEvents;
let app: FixtureImage;

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function post(path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return api.request(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
}

beforeAll(async () => {
  api = await startApi(DB);
  app = await buildImageFromTrees([
    generateTree({ seed: 41, files: 80 }),
    generateTree({ seed: 42, files: 10, root: 'app' }),
  ]);
  await storeFixtureImage(api.store, app, APP);
  const broken = await buildImageFromTrees([
    generateTree({ seed: 43, files: 60, largeFiles: 1 }),
    generateTree({ seed: 44, files: 60, largeFiles: 1, root: 'b' }),
  ]);
  await storeFixtureImage(api.store, broken, BROKEN);
  // Damage the second layer's splitstream at its end: the first layer streams, then this one fails.
  const layer = (await api.store.getLayer(broken.layers[1]!.diffId))!;
  const path = join(api.storeDir, layer.splitstream.key);
  const bytes = await readFile(path);
  for (let i = bytes.length - 16; i < bytes.length; i++) bytes[i]! ^= 0xff;
  await writeFile(path, bytes);
  // A pull that published its tag but not its image record.
  const half = await buildImageFromTrees([generateTree({ seed: 45, files: 3 })]);
  await api.store.putBlob(half.manifest.descriptor.digest, half.manifest.bytes);
  await api.store.setReference(
    parseReference('registry.test/export/half:1'),
    half.manifest.descriptor.digest,
  );

  host = startWorkerHost({
    roles: ['hasher'],
    connection: api.workerRedis,
    store: pipelineStore(api.store),
    exporter: storeExporter(api.store),
    registry: new RegistryClient({}),
    logger: createLogger({ name: 'export-test', level: 'silent' }),
    concurrency: {},
  });
  events = new QueueEvents(QUEUES.export, {
    connection: new Redis(redisUrl(DB), { maxRetriesPerRequest: null }),
    prefix: QUEUE_PREFIX,
  });
  await events.waitUntilReady();
});

afterAll(async () => {
  await host.close();
  await events.close();
  await api.close();
});

describe('POST /v1/exports/download', () => {
  it('streams a docker archive with its exact Content-Length, the same bytes every time', async () => {
    const res = await post('/v1/exports/download', { refs: [APP], compression: 'none' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-tar');
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="stevedore-docker.tar"');
    const body = Buffer.from(await res.arrayBuffer());
    expect(res.headers.get('content-length')).toBe(String(body.length));
    // manifest.json is the last member: its header starts 512-aligned before the two end blocks.
    expect(body.subarray(body.length - 1024).every((b) => b === 0)).toBe(true);
    expect(body.includes(Buffer.from('"RepoTags":["registry.test/export/app:1"]'))).toBe(true);
    const again = Buffer.from(
      await (await post('/v1/exports/download', { refs: [APP], compression: 'none' })).arrayBuffer(),
    );
    expect(sha256(again)).toBe(sha256(body));
  });

  it('streams a gzip-compressed archive without a Content-Length', async () => {
    const plain = Buffer.from(
      await (await post('/v1/exports/download', { refs: [APP], format: 'oci' })).arrayBuffer(),
    );
    const res = await post('/v1/exports/download', {
      refs: [APP],
      format: 'oci',
      archiveCompression: 'gzip',
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-tar+gzip');
    expect(res.headers.get('content-length')).toBeNull();
    expect(res.headers.get('content-disposition')).toBe('attachment; filename="stevedore-oci.tar.gz"');
    expect(gunzipSync(Buffer.from(await res.arrayBuffer())).equals(plain)).toBe(true);
  });

  it.each<[string, unknown, number, string]>([
    [
      'an unknown reference',
      { refs: ['registry.test/none:1'] },
      404,
      'no image "registry.test/none:1" in the store',
    ],
    [
      'an image not fully committed',
      { refs: ['registry.test/export/half:1'] },
      409,
      'is not fully committed: no image record yet (a pull still running, or one that failed)',
    ],
    [
      'a bad reference',
      { refs: ['Bad Ref'] },
      400,
      'invalid reference "Bad Ref": repository must be lowercase',
    ],
    [
      'a bad platform',
      { refs: [APP], platform: 'linux' },
      400,
      'invalid platform "linux": expected os/architecture[/variant]',
    ],
    [
      'a bad format',
      { refs: [APP], format: 'zip' },
      400,
      'body.format must be equal to one of the allowed values',
    ],
    ['no reference', { refs: [] }, 400, 'body.refs must NOT have fewer than 1 items'],
  ])('refuses %s before any byte', async (_name, body, status, message) => {
    const res = await post('/v1/exports/download', body);
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const { error } = (await res.json()) as { error: string };
    if (status === 409)
      expect(error).toMatch(
        new RegExp(
          `^image sha256:[0-9a-f]{64} \\("registry.test/export/half:1"\\) ${message.replace(/[()]/g, '\\$&')}$`,
        ),
      );
    else expect(error).toBe(message);
  });

  it('needs the API token', async () => {
    const res = await post('/v1/exports/download', { refs: [APP] }, { authorization: 'Bearer wrong' });
    expect(res.status).toBe(401);
  });

  it('resets the connection when a layer fails mid-stream: the client sees an error, not an end', async () => {
    const url = new URL(`${api.url}/v1/exports/download`);
    const outcome = await new Promise<{ status: number; length: number; received: number; error: string }>(
      (resolve) => {
        let status = 0;
        let length = 0;
        let received = 0;
        const req = httpRequest(
          url,
          {
            method: 'POST',
            headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          },
          (res) => {
            status = res.statusCode ?? 0;
            length = Number(res.headers['content-length']);
            res.on('data', (chunk: Buffer) => (received += chunk.length));
            res.on('error', (err: NodeJS.ErrnoException) =>
              resolve({ status, length, received, error: err.code ?? err.message }),
            );
            res.on('end', () => resolve({ status, length, received, error: 'clean end' }));
          },
        );
        req.on('error', (err: NodeJS.ErrnoException) =>
          resolve({ status, length, received, error: err.code ?? err.message }),
        );
        req.end(JSON.stringify({ refs: [BROKEN], compression: 'none' }));
      },
    );
    expect(outcome.status).toBe(200);
    expect(outcome.error).toBe('ECONNRESET');
    expect(outcome.received).toBeGreaterThan(0);
    expect(outcome.received).toBeLessThan(outcome.length);
  });
});

describe('export jobs', () => {
  it('queues an export, the hasher writes it into the store, and it downloads from there', async () => {
    const request = { refs: [APP], format: 'oci', compression: 'zstd' };
    const created = await post('/v1/exports', request);
    expect(created.status).toBe(202);
    const { id, status } = (await created.json()) as { id: string; status: string };
    expect(id).toMatch(/^export-[0-9a-f]{16}$/);
    expect(status).toBe(`/v1/exports/${id}`);

    const queue = new Queue(QUEUES.export, { connection: api.workerRedis, prefix: QUEUE_PREFIX });
    const job = await Job.fromId(queue, id);
    await job!.waitUntilFinished(events);

    const direct = Buffer.from(await (await post('/v1/exports/download', request)).arrayBuffer());
    const state = (await (await api.request(status)).json()) as Record<string, unknown>;
    expect(state).toEqual({
      id,
      state: 'completed',
      error: null,
      result: {
        exportId: id,
        key: `exports/${id}.tar`,
        digest: sha256(direct),
        size: direct.length,
        contentType: 'application/x-tar',
        path: `/v1/exports/${id}/archive`,
        written: true,
      },
    });

    const archive = await api.request(`/v1/exports/${id}/archive`);
    expect(archive.status).toBe(200);
    expect(archive.headers.get('content-type')).toBe('application/x-tar');
    expect(archive.headers.get('content-length')).toBe(String(direct.length));
    expect(archive.headers.get('etag')).toBe(`"${sha256(direct)}"`);
    expect(archive.headers.get('content-disposition')).toBe(`attachment; filename="${id}.tar"`);
    expect(Buffer.from(await archive.arrayBuffer()).equals(direct)).toBe(true);

    // The same request is the same export: no second job, no second archive.
    const again = await post('/v1/exports', request);
    expect(((await again.json()) as { id: string }).id).toBe(id);
    const counts = await queue.getJobCounts('completed', 'waiting', 'active');
    expect([counts.completed, counts.waiting, counts.active]).toEqual([1, 0, 0]);
    await queue.close();
  });

  it('DELETE removes a stored export and its job; the same request then writes it again', async () => {
    const request = { refs: [APP], format: 'docker', compression: 'gzip' };
    const queue = new Queue(QUEUES.export, { connection: api.workerRedis, prefix: QUEUE_PREFIX });
    const run = async (): Promise<{ id: string; digest: string }> => {
      const created = await post('/v1/exports', request);
      expect(created.status).toBe(202);
      const { id } = (await created.json()) as { id: string };
      await (await Job.fromId(queue, id))!.waitUntilFinished(events);
      const archive = await api.request(`/v1/exports/${id}/archive`);
      expect(archive.status).toBe(200);
      return { id, digest: sha256(Buffer.from(await archive.arrayBuffer())) };
    };
    const first = await run();
    const listed = async (): Promise<{ id: string; digest: string; path: string; refs: string[] }[]> => {
      const res = await api.request('/v1/exports');
      expect(res.status).toBe(200);
      return (
        (await res.json()) as { exports: { id: string; digest: string; path: string; refs: string[] }[] }
      ).exports;
    };
    expect(await listed()).toContainEqual(
      expect.objectContaining({
        id: first.id,
        digest: first.digest,
        refs: [APP],
        path: `/v1/exports/${first.id}/archive`,
      }),
    );
    const del = (): Promise<Response> => api.request(`/v1/exports/${first.id}`, { method: 'DELETE' });
    expect((await del()).status).toBe(204);
    expect((await listed()).map((e) => e.id)).not.toContain(first.id);
    expect(await queue.getJob(first.id)).toBeUndefined();
    expect(await api.store.backend.head(`exports/${first.id}.tar`)).toBeUndefined();
    expect(await api.store.backend.head(`exports/${first.id}.json`)).toBeUndefined();
    for (const path of [`/v1/exports/${first.id}`, `/v1/exports/${first.id}/archive`]) {
      expect((await api.request(path)).status).toBe(404);
    }
    const gone = await del();
    expect(gone.status).toBe(404);
    expect(await gone.json()).toEqual({ error: `no export with id "${first.id}"` });

    // Requested again: a new job writes the same archive.
    const second = await run();
    expect(second).toEqual(first);
    // Expired from the store while its completed job is still kept (what `stevedore compact`
    // does): the request runs the job again instead of answering with an archive that is gone.
    await rm(join(api.storeDir, 'exports', `${first.id}.json`));
    await rm(join(api.storeDir, 'exports', `${first.id}.tar`));
    for (const path of [`/v1/exports/${first.id}`, `/v1/exports/${first.id}/archive`]) {
      expect((await api.request(path)).status).toBe(404);
    }
    const third = await run();
    expect(third).toEqual(first);
    const result = (await (await api.request(`/v1/exports/${first.id}`)).json()) as {
      result: { written: boolean };
    };
    expect(result.result.written).toBe(true);
    await queue.close();
  });

  it('an export that failed runs again when requested again', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 46, files: 5 })]);
    const ref = 'registry.test/export/later:1';
    await storeFixtureImage(api.store, image, ref);
    const queue = new Queue(QUEUES.export, { connection: api.workerRedis, prefix: QUEUE_PREFIX });
    const worker = host.workers.find((w) => w.name === QUEUES.export)!;
    // Accepted while the image is complete; its layer record is gone by the time the job runs.
    await worker.pause();
    const created = await post('/v1/exports', { refs: [ref] });
    expect(created.status).toBe(202);
    const { id } = (await created.json()) as { id: string };
    const diffHex = image.layers[0]!.diffId.slice('sha256:'.length);
    await rm(join(api.storeDir, 'layers', 'sha256', `${diffHex}.json`));
    worker.resume();
    const job = (await Job.fromId(queue, id))!;
    await expect(job.waitUntilFinished(events)).rejects.toThrow(
      /: layer sha256:[0-9a-f]{64} is not in the store$/,
    );
    const failed = (await (await api.request(`/v1/exports/${id}`)).json()) as { state: string };
    expect(failed.state).toBe('failed');

    // The layer committed again (a pull would): the same request now succeeds.
    await storeFixtureImage(api.store, image, ref);
    const again = await post('/v1/exports', { refs: [ref] });
    expect(((await again.json()) as { id: string }).id).toBe(id);
    await (await Job.fromId(queue, id))!.waitUntilFinished(events);
    const done = (await (await api.request(`/v1/exports/${id}`)).json()) as { state: string };
    expect(done.state).toBe('completed');
    expect((await api.request(`/v1/exports/${id}/archive`)).status).toBe(200);
    await queue.close();
  });

  it('DELETE refuses an export a worker is writing (409), and deletes it once the job is done', async () => {
    const queue = new Queue(QUEUES.export, { connection: api.workerRedis, prefix: QUEUE_PREFIX });
    const ours = host.workers.find((w) => w.name === QUEUES.export)!;
    await ours.pause();
    // A worker that holds the job until told to finish (it writes nothing).
    let finish!: () => void;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    const connection = new Redis(redisUrl(DB), { maxRetriesPerRequest: null });
    const slow = new Worker(
      QUEUES.export,
      async () => {
        started();
        await finished;
        return {};
      },
      { connection, prefix: QUEUE_PREFIX },
    );
    try {
      const created = await post('/v1/exports', { refs: [APP], format: 'oci', compression: 'none' });
      const { id } = (await created.json()) as { id: string };
      await running;
      const busy = await api.request(`/v1/exports/${id}`, { method: 'DELETE' });
      expect(busy.status).toBe(409);
      expect(await busy.json()).toEqual({
        error: `export ${id} is being written: delete it once its job has finished`,
      });
      expect(await (await queue.getJob(id))!.getState()).toBe('active');
      finish();
      await (await Job.fromId(queue, id))!.waitUntilFinished(events);
      expect((await api.request(`/v1/exports/${id}`, { method: 'DELETE' })).status).toBe(204);
      expect(await queue.getJob(id)).toBeUndefined();
    } finally {
      finish();
      await slow.close();
      connection.disconnect();
      ours.resume();
      await queue.close();
    }
  });

  it('refuses an export of an unknown reference before queueing it', async () => {
    const res = await post('/v1/exports', { refs: ['registry.test/none:2'] });
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: 'no image "registry.test/none:2" in the store' });
  });

  it.each([
    ['/v1/exports/export-0000000000000000'],
    ['/v1/exports/export-0000000000000000/archive'],
    ['/v1/exports/nope'],
  ])('%s is 404', async (path) => {
    const res = await api.request(path);
    expect(res.status).toBe(404);
  });
});

// Last: it removes the damaged image the tests above download.
describe('downloads and garbage collection', () => {
  async function noReaders(): Promise<void> {
    const deadline = Date.now() + 5_000;
    while ((await listStoreReaders(api.workerRedis)).length > 0) {
      if (Date.now() > deadline) throw new Error('a read lease outlived its download by 5 s');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  it('refuses a download while a collection runs (503, Retry-After), and reads the rewritten packs after it', async () => {
    // v's files are all in w's layer too, imported first: v's objects live in w's pack. Once w is
    // removed, that pack is mostly dead and the collection rewrites it, moving v's objects.
    const shared = generateTree({ seed: 61, files: 12, root: 'shared' });
    const extra = generateTree({ seed: 62, files: 60, root: 'extra' });
    const w = await buildImageFromTrees([[...shared, ...extra]]);
    const v = await buildImageFromTrees([shared]);
    const writer = await openStore({ backend: { kind: 'directory', path: api.storeDir } });
    try {
      await storeFixtureImage(writer, w, 'registry.test/gc/w:1');
      await storeFixtureImage(writer, v, 'registry.test/gc/v:1');
      const first = await post('/v1/exports/download', {
        refs: ['registry.test/gc/v:1'],
        compression: 'none',
      });
      expect(first.status).toBe(200);
      const before = Buffer.from(await first.arrayBuffer());

      const locks = new LockManager(api.workerRedis);
      const gate = await locks.tryAcquire(GC_GATE);
      expect(gate.acquired).toBe(true);
      if (!gate.acquired) return;
      const refused = await post('/v1/exports/download', { refs: ['registry.test/gc/v:1'] });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('30');
      expect(((await refused.json()) as { error: string }).error).toMatch(/garbage collection/);
      await locks.release(gate.grant);

      await writer.deleteReference(parseReference('registry.test/gc/w:1'));
      // The deliberately damaged image goes too: with it live, the collection would find the store
      // damaged and leave every pack alone.
      await writer.deleteReference(parseReference(BROKEN));
      const collected = await runGarbageCollection(
        { connection: api.workerRedis, store: writer },
        { repackBelow: 0.9 },
      );
      expect(collected.problems).toEqual([]);
      expect(collected.repacked.packs.count).toBe(1);
      // The API process placed v's objects in the pack that is gone; it reloads its index first.
      const after = await post('/v1/exports/download', {
        refs: ['registry.test/gc/v:1'],
        compression: 'none',
      });
      expect(after.status).toBe(200);
      expect(Buffer.from(await after.arrayBuffer())).toEqual(before);
    } finally {
      await writer.close();
    }
  });
  it('a collection waits for a download in progress, which arrives whole; downloads after it are refused until it ends', async () => {
    const MIB = 1024 * 1024;
    // 32 MiB of archive: far more than the loopback socket buffers, so the server is still
    // writing (its read lease held) while the client holds back.
    const big = await buildImageFromTrees([
      generateTree({
        seed: 71,
        files: 4,
        largeFiles: 8,
        largeSize: { min: 4 * MIB, max: 4 * MIB },
        content: 'random',
      }),
    ]);
    await storeFixtureImage(api.store, big, 'registry.test/gc/big:1');
    const body = { refs: ['registry.test/gc/big:1'], compression: 'none' };
    const whole = Buffer.from(await (await post('/v1/exports/download', body)).arrayBuffer());
    // The lease ends just after the last byte went out.
    await noReaders();

    // node:http, paused: the socket stops reading, so the server blocks on its writes (fetch
    // would buffer the whole body on its own).
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = httpRequest(
        new URL(`${api.url}/v1/exports/download`),
        { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } },
        resolve,
      );
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });
    expect(response.statusCode).toBe(200);
    response.pause();
    await new Promise((r) => setTimeout(r, 300));
    const readers = await listStoreReaders(api.workerRedis);
    expect(readers).toHaveLength(1);
    expect(readers[0]).toMatch(/api: download of 1 image reference\(s\)$/);

    const steps: string[] = [];
    let ended = false;
    const collection = runGarbageCollection(
      { connection: api.workerRedis, store: api.store },
      { dryRun: true, onStep: (m) => steps.push(m) },
    ).finally(() => (ended = true));
    const deadline = Date.now() + 20_000;
    while (!steps.some((m) => /waiting for 1 store reader\(s\) to finish/.test(m))) {
      if (Date.now() > deadline)
        throw new Error(`the collection did not wait for the download: ${steps.join('; ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    // Meanwhile a new download is refused, and the collection keeps waiting.
    const refused = await post('/v1/exports/download', body);
    expect(refused.status).toBe(503);
    await new Promise((r) => setTimeout(r, 500));
    expect(ended).toBe(false);

    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    const received = Buffer.concat(chunks);
    // Digests, not the bytes: a diff of 32 MiB would not fit in the test's memory.
    expect({ size: received.length, digest: sha256(received) }).toEqual({
      size: whole.length,
      digest: sha256(whole),
    });
    await collection;
    await noReaders();
    expect((await post('/v1/exports/download', body)).status).toBe(200);
  }, 60_000);
});
