import { once } from 'node:events';
import { Queue } from 'bullmq';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { RedisPipelineMetrics } from '@stevedore/metrics';
import { parseReference } from '@stevedore/oci';
import { producerConnection, PullSubmitter } from '@stevedore/pipeline';
import { QUEUE_PREFIX } from '@stevedore/queue';
import { openS3Backend, Store } from '@stevedore/store';
import {
  buildImage,
  buildIndex,
  buildImageFromTrees,
  generateTree,
  storeFixtureImage,
} from '@stevedore/testing';
import {
  basic,
  BOARD_PASSWORD,
  BOARD_USER,
  redisUrl,
  startApi,
  TOKEN,
  type TestApi,
} from '../test/support.ts';
import { buildServer } from './server.ts';

/** This file's Redis database (the browser test uses another). */
const DB = 1;

let api: TestApi;

beforeAll(async () => {
  api = await startApi(DB);
});
afterAll(async () => {
  await api.close();
});
beforeEach(async () => {
  await api.redis.flushdb();
});

async function json(res: Response): Promise<unknown> {
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return res.json();
}

describe('authentication', () => {
  const apiRoutes: [string, string][] = [
    ['GET', '/v1/images'],
    ['GET', '/v1/images/alpine:3.20'],
    ['DELETE', '/v1/images/alpine:3.20'],
    ['DELETE', '/v1/exports/export-0000000000000000'],
    ['GET', '/v1/exports'],
    ['POST', '/v1/pulls'],
    ['GET', '/v1/pulls/pull-1'],
    ['GET', '/metrics'],
    ['GET', '/openapi.json'],
    ['GET', '/no/such/route'],
  ];

  it.each(apiRoutes)('%s %s without credentials: 401 asking for a bearer token', async (method, path) => {
    const res = await fetch(`${api.url}${path}`, { method });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="stevedore"');
    expect(await json(res)).toEqual({
      error: 'authentication required: send "Authorization: Bearer <token>"',
    });
  });

  it.each(apiRoutes)('%s %s with a wrong token: 401 invalid_token', async (method, path) => {
    const res = await fetch(`${api.url}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}x` } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="stevedore", error="invalid_token"');
    expect(await json(res)).toEqual({ error: 'invalid bearer token' });
  });

  it('refuses the board password on the API', async () => {
    const res = await fetch(`${api.url}/v1/images`, {
      headers: { authorization: basic(BOARD_USER, BOARD_PASSWORD) },
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="stevedore"');
    expect(await json(res)).toEqual({
      error: 'unsupported authorization scheme: send "Authorization: Bearer <token>"',
    });
  });

  it.each([
    ['no credentials', undefined, 'authentication required: HTTP Basic or a bearer token'],
    ['a wrong password', basic(BOARD_USER, `${BOARD_PASSWORD}x`), 'invalid user name or password'],
    ['a wrong user', basic('admin', BOARD_PASSWORD), 'invalid user name or password'],
    ['no password', basic(BOARD_USER, ''), 'invalid user name or password'],
    ['a wrong token', `Bearer ${TOKEN.slice(1)}`, 'invalid bearer token'],
  ])('Bull Board with %s: 401 with Basic and Bearer challenges', async (_what, authorization, error) => {
    for (const path of ['/admin/queues', '/admin/queues/api/queues']) {
      const res = await fetch(`${api.url}${path}`, {
        headers: authorization === undefined ? {} : { authorization },
      });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe(
        'Basic realm="stevedore admin", charset="UTF-8", Bearer realm="stevedore"',
      );
      expect(await json(res)).toEqual({ error });
    }
  });

  it.each([
    ['HTTP Basic', basic(BOARD_USER, BOARD_PASSWORD)],
    ['the bearer token', `Bearer ${TOKEN}`],
  ])('Bull Board lets %s in and lists every stevedore queue', async (_what, authorization) => {
    const page = await fetch(`${api.url}/admin/queues`, { headers: { authorization } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const queues = await fetch(`${api.url}/admin/queues/api/queues`, { headers: { authorization } });
    expect(queues.status).toBe(200);
    const body = (await queues.json()) as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(body.queues.map((q) => [q.name, q.readOnlyMode])).toEqual([
      ['pull', true],
      ['fetch', true],
      ['split', true],
      ['commit', true],
      ['export', true],
    ]);
  });

  it.each(['/healthz', '/readyz'])('%s needs no credentials', async (path) => {
    const res = await fetch(`${api.url}${path}`);
    expect(res.status).toBe(200);
  });
});

describe('POST /v1/pulls and GET /v1/pulls/:id', () => {
  it.each([
    ['{}', 'body.ref is required'],
    ['{"ref": 5}', 'body.ref must be string'],
    ['{"ref": ""}', 'body.ref must NOT have fewer than 1 characters'],
    ['{"ref": "alpine", "tag": "3.20"}', 'body.tag is not allowed'],
    ['{"ref": "alpine", "platform": 64}', 'body.platform must be string'],
    ['[]', 'body must be object'],
    ['{"ref": "Alpine"}', 'invalid reference "Alpine": repository must be lowercase'],
    [
      '{"ref": "alpine:-1"}',
      'invalid reference "alpine:-1": invalid tag "-1": must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}',
    ],
    [
      '{"ref": "alpine", "platform": "linux"}',
      'invalid platform "linux": expected os/architecture[/variant]',
    ],
    ['{"ref": "alpine"', "Body is not valid JSON but content-type is set to 'application/json'"],
  ])('refuses %s: %s', async (body, error) => {
    const res = await api.request('/v1/pulls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(res.status).toBe(400);
    expect(await json(res)).toEqual({ error });
    expect(await api.redis.keys(`${QUEUE_PREFIX}:pull:*`)).toEqual([]);
  });

  it('queues a pull and reports its state', async () => {
    const res = await api.request('/v1/pulls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ref: 'alpine:3.20', platform: 'linux/arm64/v8' }),
    });
    expect(res.status).toBe(202);
    const { id } = (await json(res)) as { id: string };
    expect(id).toMatch(/^pull-[0-9a-f]{16}-[0-9a-z]+$/);

    const status = await api.request(`/v1/pulls/${id}`);
    expect(status.status).toBe(200);
    expect(await json(status)).toEqual({
      id,
      ref: 'docker.io/library/alpine:3.20',
      platform: 'linux/arm64/v8',
      state: 'waiting',
      progress: { bytesDone: 0, bytesTotal: 0, layersDone: 0, layersTotal: 0 },
      layers: [],
      error: null,
      result: null,
    });
  });

  it('answers 404 for an unknown pull', async () => {
    const res = await api.request('/v1/pulls/pull-0000000000000000-0');
    expect(res.status).toBe(404);
    expect(await json(res)).toEqual({ error: 'no pull with id "pull-0000000000000000-0"' });
  });
});

describe('/metrics', () => {
  it('exposes the job counts of every queue and state', async () => {
    const fetchQueue = new Queue('fetch', { connection: api.workerRedis, prefix: QUEUE_PREFIX });
    await fetchQueue.addBulk([
      { name: 'fetch-blob', data: {} },
      { name: 'fetch-blob', data: {} },
      { name: 'fetch-blob', data: {} },
      { name: 'fetch-blob', data: {}, opts: { delay: 60_000 } },
      { name: 'fetch-blob', data: {}, opts: { priority: 3 } },
    ]);
    await fetchQueue.close();
    await api.submitter.submit('alpine:3.20', 'linux/amd64');

    const res = await api.request('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const lines = (await res.text()).split('\n').filter((l) => l.startsWith('stevedore_queue_jobs{'));
    const expected: Record<string, number[]> = {
      // waiting, active, delayed, waiting-children, prioritized, completed, failed
      pull: [1, 0, 0, 0, 0, 0, 0],
      fetch: [3, 0, 1, 0, 1, 0, 0],
      split: [0, 0, 0, 0, 0, 0, 0],
      commit: [0, 0, 0, 0, 0, 0, 0],
      export: [0, 0, 0, 0, 0, 0, 0],
    };
    const states = ['waiting', 'active', 'delayed', 'waiting-children', 'prioritized', 'completed', 'failed'];
    expect(lines).toEqual(
      Object.entries(expected).flatMap(([queue, counts]) =>
        states.map((state, i) => `stevedore_queue_jobs{queue="${queue}",state="${state}"} ${counts[i]}`),
      ),
    );
  });

  it('exposes the counters and histograms workers recorded in Redis', async () => {
    const worker1 = new RedisPipelineMetrics(api.workerRedis, {
      onError: (err) => expect.unreachable(err.message),
    });
    const worker2 = new RedisPipelineMetrics(api.workerRedis, {
      onError: (err) => expect.unreachable(err.message),
    });
    worker1.count('bytes_fetched', 3_000);
    worker2.count('bytes_fetched', 1_234);
    worker1.count('blobs_committed', 2);
    worker2.count('objects_reused', 40);
    worker1.observe('stage_seconds', 0.2, { stage: 'fetch' });
    worker2.observe('stage_seconds', 42, { stage: 'split' });
    await Promise.all([worker1.close(), worker2.close()]);

    const text = await (await api.request('/metrics')).text();
    const pick = (prefix: string): string[] => text.split('\n').filter((l) => l.startsWith(prefix));
    expect(pick('stevedore_').filter((l) => l.includes('_total '))).toEqual([
      'stevedore_bytes_fetched_total 4234',
      'stevedore_bytes_skipped_total 0',
      'stevedore_blobs_committed_total 2',
      'stevedore_layers_committed_total 0',
      'stevedore_objects_written_total 0',
      'stevedore_objects_reused_total 40',
      'stevedore_lock_waits_total 0',
    ]);
    expect(
      pick('stevedore_stage_seconds').filter(
        (l) => l.includes('le="0.25"') || l.includes('le="60"') || !l.includes('_bucket'),
      ),
    ).toEqual([
      'stevedore_stage_seconds_bucket{stage="fetch",le="0.25"} 1',
      'stevedore_stage_seconds_bucket{stage="fetch",le="60"} 1',
      'stevedore_stage_seconds_sum{stage="fetch"} 0.2',
      'stevedore_stage_seconds_count{stage="fetch"} 1',
      'stevedore_stage_seconds_bucket{stage="split",le="0.25"} 0',
      'stevedore_stage_seconds_bucket{stage="split",le="60"} 1',
      'stevedore_stage_seconds_sum{stage="split"} 42',
      'stevedore_stage_seconds_count{stage="split"} 1',
    ]);
  });
});

describe('/v1/images', () => {
  it('lists references and images, shows one in detail, and deletes a reference', async () => {
    const amd64 = await buildImageFromTrees(
      [generateTree({ seed: 11, files: 20 }), generateTree({ seed: 12, files: 10 })],
      { platform: { os: 'linux', architecture: 'amd64' } },
    );
    const arm64Tree = await buildImageFromTrees([generateTree({ seed: 11, files: 20 })], {
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    });
    const arm64 = buildImage({ layers: arm64Tree.layers, platform: arm64Tree.platform });
    const index = buildIndex({ images: [amd64, arm64] });
    // The index is stored with only its amd64 image, as a pull of linux/amd64 leaves it.
    await storeFixtureImage(api.store, amd64);
    await api.store.putBlob(index.manifest.descriptor.digest, index.manifest.bytes);
    await api.store.setReference(parseReference('registry.test/app:1'), index.manifest.descriptor.digest);
    const single = await buildImageFromTrees([generateTree({ seed: 13, files: 5 })]);
    await storeFixtureImage(api.store, single, 'registry.test/tool:latest');

    const amd64Digest = amd64.manifest.descriptor.digest;
    const singleDigest = single.manifest.descriptor.digest;
    const amd64Record = (await api.store.getImage(amd64Digest))!;
    const singleRecord = (await api.store.getImage(singleDigest))!;
    const compressed = (img: typeof amd64): number =>
      img.manifest.descriptor.size +
      img.config.descriptor.size +
      img.layers.reduce((n, l) => n + l.descriptor.size, 0);

    const list = await api.request('/v1/images');
    expect(list.status).toBe(200);
    const refs = await api.store.listReferences();
    const updatedAt = (r: string): string => refs.find((x) => x.reference === r)!.updatedAt;
    const summaries = [
      {
        manifestDigest: amd64Digest,
        platform: 'linux/amd64',
        configDigest: amd64.config.descriptor.digest,
        layers: 2,
        compressedSize: compressed(amd64),
        createdAt: amd64Record.createdAt,
        references: ['registry.test/app:1'],
      },
      {
        manifestDigest: singleDigest,
        platform: 'linux/amd64',
        configDigest: single.config.descriptor.digest,
        layers: 1,
        compressedSize: compressed(single),
        createdAt: singleRecord.createdAt,
        references: ['registry.test/tool:latest'],
      },
    ].sort((a, b) => (a.manifestDigest < b.manifestDigest ? -1 : 1));
    expect(await json(list)).toEqual({
      references: [
        {
          reference: 'registry.test/app:1',
          digest: index.manifest.descriptor.digest,
          updatedAt: updatedAt('registry.test/app:1'),
          images: [amd64Digest],
        },
        {
          reference: 'registry.test/tool:latest',
          digest: singleDigest,
          updatedAt: updatedAt('registry.test/tool:latest'),
          images: [singleDigest],
        },
      ],
      images: summaries,
    });

    const layerRecords = await Promise.all(
      amd64.layers.map(async (l) => (await api.store.getLayer(l.diffId))!),
    );
    const expectedLayers = amd64.layers.map((l, i) => {
      const s = layerRecords[i]!.stats;
      return {
        digest: l.descriptor.digest,
        diffID: l.diffId,
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        size: l.descriptor.size,
        uncompressedSize: l.uncompressedSize,
        files: s.files,
        objects: s.objects,
        objectsWritten: s.objectsWritten,
        objectsReused: s.objectsReused,
        bytesWritten: s.bytesWritten,
        bytesReused: s.bytesReused,
        bytesStored: s.bytesStored,
        splitstreamBytes: s.splitstreamBytes,
      };
    });
    const uncompressed = amd64.layers.reduce((n, l) => n + l.uncompressedSize, 0);
    const stored = expectedLayers.reduce((n, l) => n + l.bytesStored + l.splitstreamBytes, 0);
    const amd64Detail = {
      manifest: {
        digest: amd64Digest,
        size: amd64.manifest.descriptor.size,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
      },
      config: {
        digest: amd64.config.descriptor.digest,
        size: amd64.config.descriptor.size,
        mediaType: 'application/vnd.oci.image.config.v1+json',
      },
      platform: 'linux/amd64',
      createdAt: amd64Record.createdAt,
      layers: expectedLayers,
      sizes: { compressed: compressed(amd64), uncompressed, stored },
      dedup: {
        objectsWritten: expectedLayers.reduce((n, l) => n + l.objectsWritten, 0),
        objectsReused: expectedLayers.reduce((n, l) => n + l.objectsReused, 0),
        bytesWritten: expectedLayers.reduce((n, l) => n + l.bytesWritten, 0),
        bytesReused: expectedLayers.reduce((n, l) => n + l.bytesReused, 0),
        ratio: uncompressed / stored,
      },
    };
    // The store figures are real: files were split into objects, and the tars were counted.
    expect(expectedLayers.map((l) => l.files > 0 && l.objectsWritten > 0)).toEqual([true, true]);
    expect(uncompressed).toBe(layerRecords.reduce((n, r) => n + r.size, 0));

    for (const path of ['registry.test/app:1', encodeURIComponent('registry.test/app:1')]) {
      const res = await api.request(`/v1/images/${path}`);
      expect(res.status).toBe(200);
      expect(await json(res)).toEqual({
        reference: 'registry.test/app:1',
        digest: index.manifest.descriptor.digest,
        mediaType: 'application/vnd.oci.image.index.v1+json',
        images: [amd64Detail],
      });
    }
    for (const path of [amd64Digest, `registry.test/app@${amd64Digest}`]) {
      const res = await api.request(`/v1/images/${path}`);
      expect(res.status).toBe(200);
      expect(await json(res)).toEqual({
        reference: null,
        digest: amd64Digest,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        images: [amd64Detail],
      });
    }

    const deleted = await api.request('/v1/images/registry.test/app:1', { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    expect(await deleted.text()).toBe('');
    const gone = await api.request('/v1/images/registry.test/app:1');
    expect(gone.status).toBe(404);
    expect(await json(gone)).toEqual({ error: 'no image "registry.test/app:1" in the store' });
    const after = (await json(await api.request('/v1/images'))) as {
      references: { reference: string }[];
      images: { references: string[] }[];
    };
    expect(after.references.map((r) => r.reference)).toEqual(['registry.test/tool:latest']);
    // The image itself stays (garbage collection is separate).
    expect((await api.request(`/v1/images/${amd64Digest}`)).status).toBe(200);
  });

  it('lists and deletes the digest reference a pull by digest keeps, as it does a tag', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 14, files: 5 })]);
    const digest = image.manifest.descriptor.digest;
    const name = `registry.test/pinned@${digest}`;
    await storeFixtureImage(api.store, image, name);
    const record = (await api.store.getReference(parseReference(name)))!;
    type Listing = {
      references: { reference: string }[];
      images: { manifestDigest: string; references: string[] }[];
    };
    const pinnedOf = (l: Listing): unknown[] =>
      l.references.filter((r) => r.reference.startsWith('registry.test/pinned'));

    const list = (await json(await api.request('/v1/images'))) as Listing;
    expect(pinnedOf(list)).toEqual([
      { reference: name, digest, updatedAt: record.updatedAt, images: [digest] },
    ]);
    expect(list.images.find((i) => i.manifestDigest === digest)?.references).toEqual([name]);
    const shown = await api.request(`/v1/images/${encodeURIComponent(name)}`);
    expect(shown.status).toBe(200);
    expect(await json(shown)).toMatchObject({ reference: null, digest, images: [{ manifest: { digest } }] });

    const deleted = await api.request(`/v1/images/${encodeURIComponent(name)}`, { method: 'DELETE' });
    expect(deleted.status).toBe(204);
    const again = await api.request(`/v1/images/${name}`, { method: 'DELETE' });
    expect(again.status).toBe(404);
    expect(await json(again)).toEqual({ error: `no reference "${name}" in the store` });
    expect(pinnedOf((await json(await api.request('/v1/images'))) as Listing)).toEqual([]);
    expect(await api.store.getReference(parseReference(name))).toBeUndefined();
    // The image itself stays (garbage collection is separate).
    expect((await api.request(`/v1/images/${digest}`)).status).toBe(200);
  });

  it.each([
    ['GET', '/v1/images/registry.test/none:1', 404, 'no image "registry.test/none:1" in the store'],
    ['GET', '/v1/images/sha256:' + 'a'.repeat(64), 404, `no image "sha256:${'a'.repeat(64)}" in the store`],
    ['DELETE', '/v1/images/registry.test/none:1', 404, 'no reference "registry.test/none:1" in the store'],
    [
      'GET',
      '/v1/images/Registry.test/App:1',
      400,
      'invalid reference "Registry.test/App:1": repository must be lowercase',
    ],
    ['GET', '/v1/images/', 400, 'params.ref must NOT have fewer than 1 characters'],
    [
      'DELETE',
      `/v1/images/sha256:${'b'.repeat(64)}`,
      400,
      `cannot delete "sha256:${'b'.repeat(64)}": a bare digest is not a reference; name its repository (repo@sha256:…)`,
    ],
  ])('%s %s: %i', async (method, path, status, error) => {
    const res = await api.request(path, { method });
    expect(res.status).toBe(status);
    expect(await json(res)).toEqual({ error });
  });
});

describe('probes', () => {
  it('/healthz answers while the process runs', async () => {
    const res = await fetch(`${api.url}/healthz`);
    expect(await json(res)).toEqual({ status: 'ok' });
  });

  it('/readyz checks Redis and the store', async () => {
    const res = await fetch(`${api.url}/readyz`);
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ status: 'ready', failed: {} });
  });

  it('/readyz answers 503 naming each check that failed', async () => {
    const s3 = inject('stack').s3;
    const redis = producerConnection(redisUrl(DB));
    await once(redis, 'ready');
    const missingBucket = new Store(
      await openS3Backend({
        bucket: 'no-such-bucket',
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: true,
        credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
        maxAttempts: 1,
      }),
    );
    const broken = await buildServer({
      config: {
        STEVEDORE_API_TOKEN: TOKEN,
        STEVEDORE_BOARD_USER: BOARD_USER,
        STEVEDORE_BOARD_PASSWORD: BOARD_PASSWORD,
      },
      redis,
      submitter: api.submitter,
      store: missingBucket,
      metrics: new Registry(),
    });
    redis.disconnect();
    const res = await broken.inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.json()).toEqual({
      status: 'not ready',
      failed: {
        redis: "Stream isn't writeable and enableOfflineQueue options is false",
        store: 'list  in s3://no-such-bucket/ failed: The specified bucket does not exist: no-such-bucket',
      },
    });
    await broken.close();
    await missingBucket.close();
  });

  it('answers 503 at once on the queue routes while Redis is unreachable (BullMQ would wait without end)', async () => {
    // Nothing listens on port 1: the connection keeps trying, as the API's does while Redis is down.
    const redis = producerConnection('redis://127.0.0.1:1');
    redis.on('error', () => undefined);
    const cut = await buildServer({
      config: {
        STEVEDORE_API_TOKEN: TOKEN,
        STEVEDORE_BOARD_USER: BOARD_USER,
        STEVEDORE_BOARD_PASSWORD: BOARD_PASSWORD,
      },
      redis,
      submitter: new PullSubmitter(redis),
      store: api.store,
      metrics: new Registry(),
    });
    try {
      const auth = { authorization: `Bearer ${TOKEN}` };
      for (const [method, url, payload] of [
        ['POST', '/v1/pulls', { ref: 'registry.test/app:1' }],
        ['GET', '/v1/pulls/pull-0000000000000000-x', undefined],
        ['POST', '/v1/exports', { refs: ['registry.test/app:1'] }],
        ['GET', '/v1/exports/export-0000000000000000', undefined],
        ['GET', '/metrics', undefined],
      ] as const) {
        const res = await cut.inject({ method, url, headers: auth, ...(payload ? { payload } : {}) });
        expect([method, url, res.statusCode, res.headers['retry-after']]).toEqual([method, url, 503, '5']);
        expect(res.json<{ error: string }>().error).toMatch(
          /^the queues' Redis is unreachable \(connection \w+\): try again later$/,
        );
      }
      // Routes that read only the store still answer.
      expect((await cut.inject({ method: 'GET', url: '/v1/images', headers: auth })).statusCode).toBe(200);
    } finally {
      redis.disconnect();
      await cut.close();
    }
  });
});

describe('/openapi.json', () => {
  it('documents every route from its schema', async () => {
    const res = await api.request('/openapi.json');
    expect(res.status).toBe(200);
    const doc = (await json(res)) as {
      openapi: string;
      paths: Record<string, Record<string, { security?: unknown[]; parameters?: { name: string }[] }>>;
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.entries(doc.paths).map(([path, ops]) => [path, Object.keys(ops)])).toEqual([
      ['/healthz', ['get']],
      ['/readyz', ['get']],
      ['/metrics', ['get']],
      ['/openapi.json', ['get']],
      ['/v1/pulls', ['post']],
      ['/v1/pulls/{id}', ['get']],
      ['/v1/images', ['get']],
      ['/v1/images/{ref}', ['get', 'delete']],
      ['/v1/exports/download', ['post']],
      ['/v1/exports', ['post', 'get']],
      ['/v1/exports/{id}', ['get', 'delete']],
      ['/v1/exports/{id}/archive', ['get']],
    ]);
    expect(doc.paths['/healthz']!.get!.security).toEqual([]);
    expect(doc.paths['/v1/images']!.get!.security).toBeUndefined();
    expect(doc.paths['/v1/images/{ref}']!.get!.parameters!.map((p) => p.name)).toEqual(['ref']);
  });
});
