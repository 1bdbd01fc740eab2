/**
 * A stevedore cluster for one test suite: a private Redis, the stack's registry behind a counting
 * fault proxy, a store (directory or the stack's S3 under a unique prefix), and worker processes.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, inject } from 'vitest';
import { Digester, RegistryClient, parseReference, type Digest, type DiffID } from '@stevedore/oci';
import { PullSubmitter, producerConnection, type PullStatus } from '@stevedore/pipeline';
import { openStore, verifyStore, type Store } from '@stevedore/store';
import {
  buildImageFromTrees,
  generateTree,
  pushImage,
  startFaultProxy,
  startRedis,
  startWorkerProcess,
  type FaultProxy,
  type FixtureImage,
  type RedisServer,
  type WorkerProcess,
  type WorkerRole,
} from '@stevedore/testing';

export type BackendKind = 'directory' | 's3';

/** Short lock and job-lock times so crash recovery happens within a test's time. */
const TEST_LOCK_TTL_MS = 2_000;
const TEST_JOB_LOCK_MS = 3_000;
const STATUS_INTERVAL_MS = 200;
/** Lines of the workers' warnings and errors a timed-out wait reports. */
const WAIT_TIMEOUT_LOG_LINES = 30;

export interface Cluster {
  readonly proxy: FaultProxy;
  readonly workers: WorkerProcess[];
  readonly registryHost: string;
  /** The cluster's Redis (the workers' locks and queues). */
  readonly redisUrl: string;
  /** Pushes an image straight to the registry (not through the counting proxy). */
  push(repository: string, image: FixtureImage): Promise<void>;
  /** Queues a pull of `proxyHost/repository` and returns its id. */
  submit(repository: string): Promise<string>;
  /** Follows a pull until it completes or fails. */
  wait(id: string, timeoutMs?: number): Promise<PullStatus>;
  status(id: string): Promise<PullStatus | undefined>;
  startWorker(role: WorkerRole): Promise<WorkerProcess>;
  openStore(): Promise<Store>;
  stop(): Promise<void>;
}

export async function startCluster(backend: BackendKind, roles: readonly WorkerRole[]): Promise<Cluster> {
  const stack = inject('stack');
  const redis: RedisServer = await startRedis();
  const proxy = await startFaultProxy({ upstream: stack.registry.url });
  const dir = backend === 'directory' ? await mkdtemp(join(tmpdir(), 'stevedore-pipeline-')) : undefined;
  const prefix = `pipeline-${randomUUID()}`;
  const env: Record<string, string> = {
    STEVEDORE_REDIS_URL: redis.url,
    STEVEDORE_LOCK_TTL_MS: String(TEST_LOCK_TTL_MS),
    STEVEDORE_JOB_LOCK_MS: String(TEST_JOB_LOCK_MS),
    STEVEDORE_LOG_LEVEL: 'info',
    ...(dir !== undefined
      ? { STEVEDORE_STORE: join(dir, 'store') }
      : {
          STEVEDORE_STORE: `s3://${stack.s3.bucket}/${prefix}`,
          STEVEDORE_S3_ENDPOINT: stack.s3.endpoint,
          STEVEDORE_S3_REGION: stack.s3.region,
          STEVEDORE_S3_FORCE_PATH_STYLE: 'true',
          AWS_ACCESS_KEY_ID: stack.s3.accessKeyId,
          AWS_SECRET_ACCESS_KEY: stack.s3.secretAccessKey,
        }),
  };
  const workers: WorkerProcess[] = [];
  const startWorker = async (role: WorkerRole): Promise<WorkerProcess> => {
    const worker = await startWorkerProcess({ role, env, name: `${backend}-${role}-${workers.length}` });
    workers.push(worker);
    return worker;
  };
  for (const role of roles) await startWorker(role);
  const connection = producerConnection(redis.url);
  const submitter = new PullSubmitter(connection);
  const client = new RegistryClient();

  const openConfigured = (): Promise<Store> =>
    openStore({
      backend:
        dir !== undefined
          ? { kind: 'directory', path: join(dir, 'store') }
          : {
              kind: 's3',
              bucket: stack.s3.bucket,
              prefix,
              endpoint: stack.s3.endpoint,
              region: stack.s3.region,
              forcePathStyle: true,
              credentials: { accessKeyId: stack.s3.accessKeyId, secretAccessKey: stack.s3.secretAccessKey },
            },
    });

  return {
    proxy,
    workers,
    registryHost: stack.registry.host,
    redisUrl: redis.url,
    async push(repository, image) {
      await pushImage(client, parseReference(`${stack.registry.host}/${repository}`), image);
    },
    submit: (repository) => submitter.submit(`${proxy.host}/${repository}`),
    status: (id) => submitter.status(id),
    async wait(id, timeoutMs = 90_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const status = await submitter.status(id);
        if (status === undefined) throw new Error(`pull ${id} is not in the queue`);
        if (status.state === 'completed' || status.state === 'failed') return status;
        if (Date.now() > deadline) {
          // What the workers warned about is what explains a stuck pull.
          const warnings = workers
            .flatMap((w) => w.output().split('\n'))
            .filter((line) => !line.includes('"level":30') && line.trim() !== '')
            .slice(-WAIT_TIMEOUT_LOG_LINES);
          throw new Error(
            `pull ${id} still ${status.state} after ${timeoutMs} ms; the workers' last warnings:\n${warnings.join('\n')}`,
          );
        }
        await new Promise((r) => setTimeout(r, STATUS_INTERVAL_MS));
      }
    },
    startWorker,
    openStore: openConfigured,
    async stop() {
      await Promise.all(workers.map((w) => w.stop()));
      await submitter.close();
      connection.disconnect();
      await proxy.stop();
      await redis.stop();
      if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Each layer of a fixture image: its compressed digest and its diffID, bottom first. */
export function layersOf(image: FixtureImage): { digest: Digest; diffID: DiffID }[] {
  return image.layerDescriptors.map((descriptor, i) => {
    const layer = image.layers[i];
    if (layer === undefined) throw new Error('fixture image: fewer layers than descriptors');
    return { digest: descriptor.digest, diffID: layer.diffId };
  });
}

/** GET requests for one blob that the registry answered with content. */
export function blobGets(proxy: FaultProxy, digest: Digest | string): number {
  return proxy
    .requests({ method: 'GET', path: new RegExp(`/blobs/${digest}$`) })
    .filter((r) => r.status === 200 || r.status === 206).length;
}

/** Rebuilds every committed layer and checks its sha256 is its diffID. Returns how many. */
export async function assertEveryLayerRebuilds(store: Store): Promise<number> {
  const layers = await store.listLayers();
  for (const layer of layers) {
    const tar = await store.openLayer(layer.diffID);
    const digester = new Digester();
    for await (const chunk of tar) digester.update(chunk as Buffer);
    if (digester.digest() !== layer.diffID) {
      throw new Error(`layer ${layer.diffID} rebuilt to ${digester.digest()}`);
    }
    if (digester.size !== layer.size)
      throw new Error(`layer ${layer.diffID} rebuilt to ${digester.size} bytes, not ${layer.size}`);
  }
  return layers.length;
}

/**
 * Images of a shared base layer (300 mixed files, two large) and one small app layer each, gzip,
 * pushed as `<repoPrefix>-<i>:1`; the proxy's counters are reset afterwards.
 */
export async function pushImagesSharingABase(
  cluster: Cluster,
  spec: { readonly baseSeed: number; readonly appSeeds: readonly number[]; readonly repoPrefix: string },
): Promise<{ images: FixtureImage[]; repos: string[] }> {
  const base = generateTree({ seed: spec.baseSeed, files: 300, largeFiles: 2, content: 'mixed' });
  const apps = spec.appSeeds.map((seed) => generateTree({ seed, files: 60, root: `app${seed}` }));
  const images = await Promise.all(
    apps.map((app) => buildImageFromTrees([base, app], { compression: 'gzip' })),
  );
  const repos = images.map((_, i) => `${spec.repoPrefix}-${i}:1`);
  for (const [i, image] of images.entries()) await cluster.push(repos[i] ?? '', image);
  cluster.proxy.resetCounters();
  return { images, repos };
}

/** Submits a pull of every repository at once and follows them all to their end. */
export async function pullAllAtOnce(cluster: Cluster, repos: readonly string[]): Promise<PullStatus[]> {
  const ids = await Promise.all(repos.map((repo) => cluster.submit(repo)));
  return Promise.all(ids.map((id) => cluster.wait(id)));
}

/** A suite's end: every committed layer rebuilds to its diffID (and there is one), then the cluster stops. */
export async function checkLayersAndStop(cluster: Cluster): Promise<void> {
  const store = await cluster.openStore();
  try {
    expect(await assertEveryLayerRebuilds(store)).toBeGreaterThan(0);
    // And the whole store as `stevedore verify` reads it: every reference reaches a committed
    // image, every image's blobs and layer records are there and hash right.
    const verified = await verifyStore(store);
    expect(verified.problems).toEqual([]);
    expect(verified.references).toBeGreaterThan(0);
  } finally {
    await store.close();
    await cluster.stop();
  }
}

/** Waits until `check` holds, checking every 50 ms (for states no event announces). */
export async function until(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
