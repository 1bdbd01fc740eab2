/**
 * The pull pipeline when every process serves all three roles (`stevedore worker all`, the embedded
 * default): fetch jobs split each layer from the bytes they fetch (libs/pipeline
 * split-while-fetching.ts). The same guarantees as with separate services: each blob fetched once
 * across processes, nothing visible from a blob that fails its digest, recovery from kill -9 with
 * both locks held. The store on a directory and on S3.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import '@stevedore/testing';
import { parseReference, type Digest } from '@stevedore/oci';
import { buildImageFromTrees, generateTree } from '@stevedore/testing';
import {
  checkLayersAndStop,
  pullAllAtOnce,
  pushImagesSharingABase,
  blobGets,
  layersOf,
  startCluster,
  until,
  type BackendKind,
  type Cluster,
} from './harness.ts';

const MiB = 1024 * 1024;
const SPLIT_WHILE_FETCHING = '"msg":"blob fetched and layer split"';

/** Log lines, across every worker, saying that `digest` was split while it was fetched. */
function splitWhileFetchingLines(cluster: Cluster, digest: Digest): number {
  return cluster.workers
    .flatMap((w) => w.output().split('\n'))
    .filter((line) => line.includes(SPLIT_WHILE_FETCHING) && line.includes(digest)).length;
}

/** Log lines of split jobs that split `digest` themselves (from the stored blob). */
function splitJobLines(cluster: Cluster, digest: Digest): number {
  return cluster.workers
    .flatMap((w) => w.output().split('\n'))
    .filter((line) => line.includes('"msg":"layer split"') && line.includes(digest)).length;
}

describe.each<BackendKind>(['directory', 's3'])('split while fetching, store on %s', (backend) => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster(backend, ['all', 'all', 'all']);
  });
  afterAll(() => checkLayersAndStop(cluster));

  it('splits each layer in the fetch that transfers it, once across processes', async () => {
    const { images, repos } = await pushImagesSharingABase(cluster, {
      baseSeed: 111,
      appSeeds: [121, 122],
      repoPrefix: `${backend}/swf`,
    });
    const done = await pullAllAtOnce(cluster, repos);
    expect(done.map((s) => [s.state, s.failedReason])).toEqual(repos.map(() => ['completed', undefined]));
    const layers = [...new Map(images.flatMap(layersOf).map((l) => [l.digest, l])).values()];
    expect(layers).toHaveLength(3);
    const store = await cluster.openStore();
    try {
      let inline = 0;
      for (const { digest, diffID } of layers) {
        expect(blobGets(cluster.proxy, digest), digest).toBe(1);
        // Split once: by the transfer, or by the split job where the fetching process had no
        // split slot left (two per process; three layers may land on one process).
        const whileFetching = splitWhileFetchingLines(cluster, digest);
        expect(whileFetching + splitJobLines(cluster, digest), digest).toBe(1);
        inline += whileFetching;
        expect(await store.hasBlob(digest)).toBe(true);
        expect(await store.hasLayer(diffID)).toBe(true);
      }
      expect(inline).toBeGreaterThanOrEqual(2);
    } finally {
      await store.close();
    }
  });

  it('publishes no layer from a blob that fails its digest', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 171, files: 30 })], {
      compression: 'gzip',
    });
    const repo = `${backend}/swf-corrupt:1`;
    await cluster.push(repo, image);
    const [layer] = layersOf(image);
    if (layer === undefined) throw new Error('fixture image has no layer');
    // A byte of gzip's CRC flipped (the last 8 bytes are CRC32 and length): the split sees the
    // whole layer, and its tar matches the diffID, before the blob fails its digest.
    const size = image.layerDescriptors[0]?.size ?? 0;
    cluster.proxy.setRules([
      {
        method: 'GET',
        path: new RegExp(`/blobs/${layer.digest}$`),
        corruptByteAt: size - 6,
        times: Infinity,
      },
    ]);
    const status = await cluster.wait(await cluster.submit(repo));
    cluster.proxy.clearRules();
    expect(status.state).toBe('failed');
    expect(status.failedReason, status.failedReason).toContain(
      `digest mismatch, expected ${layer.digest}, got sha256:`,
    );
    const store = await cluster.openStore();
    try {
      expect(await store.hasBlob(layer.digest)).toBe(false);
      expect(await store.hasLayer(layer.diffID)).toBe(false);
      expect(await store.getReference(parseReference(`${cluster.proxy.host}/${repo}`))).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('recovers when every process is killed while fetching and splitting a layer', async () => {
    const image = await buildImageFromTrees(
      [generateTree({ seed: 151, files: 20, largeFiles: 2, largeSize: { min: 8 * MiB, max: 8 * MiB } })],
      { compression: 'gzip' },
    );
    const repo = `${backend}/swf-crash:1`;
    await cluster.push(repo, image);
    const [layer] = layersOf(image);
    if (layer === undefined) throw new Error('fixture image has no layer');
    // The first transfer is held open: a process certainly holds the blob and the layer lock.
    cluster.proxy.setRules([
      { method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`), delayMs: 5_000, times: 1 },
    ]);
    cluster.proxy.resetCounters();
    const id = await cluster.submit(repo);
    await until(
      'the layer transfer to start',
      () => cluster.proxy.requests({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`) }).length > 0,
    );
    const killed = cluster.workers.splice(0, cluster.workers.length);
    for (const worker of killed) worker.kill9();
    await Promise.all(killed.map((w) => w.exited));
    await cluster.startWorker('all');
    await cluster.startWorker('all');
    const status = await cluster.wait(id);
    cluster.proxy.clearRules();
    expect([status.state, status.failedReason]).toEqual(['completed', undefined]);
    // The new processes split it while fetching it again (the killed transfer published nothing).
    expect(splitWhileFetchingLines(cluster, layer.digest)).toBe(1);
    const store = await cluster.openStore();
    try {
      expect(await store.hasLayer(layer.diffID)).toBe(true);
    } finally {
      await store.close();
    }
  });
});
