/**
 * The pull pipeline end to end: separate fetcher, hasher and committer processes, the real
 * registry (counted through a proxy), real Redis, and the store on a directory and on S3.
 */
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IndexCompactionConflictError } from '@stevedore/store';
import { LockManager } from '@stevedore/lock';
import { QUEUE_PREFIX, QUEUES, wakeWaiters } from '@stevedore/queue';
import '@stevedore/testing';
import { parseReference, type Digest, type DiffID } from '@stevedore/oci';
import { buildImageFromTrees, generateTree, type FixtureImage } from '@stevedore/testing';
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

function blobsOf(...images: FixtureImage[]): Digest[] {
  const all = new Set<Digest>();
  for (const image of images) {
    for (const layer of image.layerDescriptors) all.add(layer.digest);
    all.add(image.config.descriptor.digest);
  }
  return [...all];
}

function imageMissing(): never {
  throw new Error('fixture image missing');
}

/** The first layer's compressed digest and diffID. */
function firstLayer(image: FixtureImage): { digest: Digest; diffID: DiffID } {
  const first = layersOf(image)[0];
  if (first === undefined) throw new Error('fixture image has no layer');
  return first;
}

describe.each<BackendKind>(['directory', 's3'])('pull pipeline, store on %s', (backend) => {
  let cluster: Cluster;
  // Two fetchers, one hasher, one committer: four OS processes sharing the work.
  beforeAll(async () => {
    cluster = await startCluster(backend, ['fetcher', 'fetcher', 'hasher', 'committer']);
  });
  afterAll(() => checkLayersAndStop(cluster));

  it('fetches each blob of overlapping images pulled at once exactly once', async () => {
    const { images, repos } = await pushImagesSharingABase(cluster, {
      baseSeed: 11,
      appSeeds: [21, 22, 23],
      repoPrefix: `${backend}/overlap`,
    });
    const done = await pullAllAtOnce(cluster, repos);
    expect(done.map((s) => [s.state, s.failedReason])).toEqual(repos.map(() => ['completed', undefined]));
    for (const digest of blobsOf(...images)) expect(blobGets(cluster.proxy, digest), digest).toBe(1);
    const sharedBase = firstLayer(images[0] ?? imageMissing()).digest;
    const outcomes = done.map((s) => s.layers.find((l) => l.digest === sharedBase)?.outcome).sort();
    // One pull fetched the shared base; the others waited for it or found it stored.
    expect(outcomes.filter((o) => o === 'fetched')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'waited' || o === 'reused')).toHaveLength(2);

    const store = await cluster.openStore();
    try {
      const refs = (await store.listReferences()).map((r) => r.reference).sort();
      expect(refs).toEqual(expect.arrayContaining(repos.map((r) => `${cluster.proxy.host}/${r}`)));
      for (const [i, image] of images.entries()) {
        const ref = await store.getReference(parseReference(`${cluster.proxy.host}/${repos[i] ?? ''}`));
        expect(ref?.digest).toBe(image.manifest.descriptor.digest);
        const record = await store.getImage(image.manifest.descriptor.digest);
        expect(record?.layers.map((l) => l.diffID)).toEqual(image.layers.map((l) => l.diffId));
      }
    } finally {
      await store.close();
    }
  });

  it('keeps an image pulled by digest under a digest reference, published after its image record', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 91, files: 20 })], { compression: 'gzip' });
    const repo = `${backend}/by-digest`;
    await cluster.push(`${repo}:1`, image);
    const digest = image.manifest.descriptor.digest;
    const name = `${cluster.proxy.host}/${repo}@${digest}`;
    const status = await cluster.wait(await cluster.submit(`${repo}@${digest}`));
    expect([status.state, status.failedReason]).toEqual(['completed', undefined]);

    const store = await cluster.openStore();
    try {
      const record = await store.getReference(parseReference(name));
      expect(record && { reference: record.reference, digest: record.digest }).toEqual({
        reference: name,
        digest,
      });
      // No tag was named, so none is published (not even `latest`).
      const ofRepo = (await store.listReferences()).filter((r) =>
        r.reference.startsWith(`${cluster.proxy.host}/${repo}`),
      );
      expect(ofRepo).toEqual([record]);
      // Published last: after the image record it leads to.
      const imageRecord = await store.getImage(digest);
      expect(imageRecord?.layers.map((l) => l.diffID)).toEqual(image.layers.map((l) => l.diffId));
      expect(Date.parse(imageRecord?.createdAt ?? '')).toBeLessThanOrEqual(
        Date.parse(record?.updatedAt ?? ''),
      );

      // Pulled again: the same one reference, nothing transferred.
      cluster.proxy.resetCounters();
      const again = await cluster.wait(await cluster.submit(`${repo}@${digest}`));
      expect([again.state, again.failedReason]).toEqual(['completed', undefined]);
      expect(cluster.proxy.requests({ method: 'GET', path: /\/blobs\// })).toEqual([]);
      const after = (await store.listReferences()).filter((r) =>
        r.reference.startsWith(`${cluster.proxy.host}/${repo}`),
      );
      expect(after.map((r) => [r.reference, r.digest])).toEqual([[name, digest]]);
    } finally {
      await store.close();
    }
  });

  it('readies the store of hasher processes as they start, not of fetchers or committers', () => {
    const prepared = (w: Cluster['workers'][number]): boolean =>
      w.output().includes('"msg":"store prepared"');
    expect(cluster.workers.map((w) => [w.role, prepared(w)])).toEqual([
      ['fetcher', false],
      ['fetcher', false],
      ['hasher', true],
      ['committer', false],
    ]);
  });

  it('pulls while the store’s index files are compacted under the workers, again and again', async () => {
    const { images, repos } = await pushImagesSharingABase(cluster, {
      baseSeed: 61,
      appSeeds: [62, 63, 64],
      repoPrefix: `${backend}/compact`,
    });
    const store = await cluster.openStore();
    const runs = { merging: 0, merged: 0, conflicts: 0 };
    let pulling = true;
    // Compactions back to back (every index file counts as old): the workers list, load and
    // publish index files while files vanish under them.
    const compacting = (async () => {
      while (pulling) {
        try {
          const result = await store.compactIndex({ minAgeMs: 0 });
          if (result.merged > 0) runs.merging++;
          runs.merged += result.merged;
        } catch (err) {
          if (!(err instanceof IndexCompactionConflictError)) throw err;
          runs.conflicts++;
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    try {
      const done = await pullAllAtOnce(cluster, repos);
      expect(done.map((s) => [s.state, s.failedReason])).toEqual(repos.map(() => ['completed', undefined]));
    } finally {
      pulling = false;
      await compacting;
    }
    const last = await store.compactIndex({ minAgeMs: 0 });
    await store.close();
    expect(runs.merging + (last.merged > 0 ? 1 : 0), JSON.stringify(runs)).toBeGreaterThan(0);
    // A process started now loads the merged files and rebuilds every layer of the images.
    const fresh = await cluster.openStore();
    try {
      for (const image of images) {
        for (const layer of image.layers) {
          const tar = await buffer(await fresh.openLayer(layer.diffId));
          expect(tar.length, layer.diffId).toBe(layer.uncompressedSize);
        }
      }
    } finally {
      await fresh.close();
    }
  });

  it('parks a pull whose config another worker holds, and never fetches that config', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 41, files: 20 })]);
    const repo = `${backend}/config-lock:1`;
    await cluster.push(repo, image);
    const config = image.config.descriptor.digest;
    const redis = new Redis(cluster.redisUrl);
    const pullQueue = new Queue(QUEUES.pull, { connection: redis, prefix: QUEUE_PREFIX });
    try {
      // Another worker is fetching this config (the lock the fetch of any blob takes).
      const locks = new LockManager(redis, { ttlMs: 60_000 });
      const held = await locks.tryAcquire(`blob:${config}`, 'test|holder');
      if (!held.acquired) throw new Error('the config lock was taken');
      cluster.proxy.resetCounters();
      const id = await cluster.submit(repo);
      await until('the pull is parked', async () => (await cluster.status(id))?.state === 'delayed');
      expect(blobGets(cluster.proxy, config)).toBe(0);

      // The holder stores the config, releases the lock and wakes the parked pull.
      const store = await cluster.openStore();
      try {
        await store.putBlob(config, image.config.bytes);
      } finally {
        await store.close();
      }
      const { released, waiters } = await locks.release(held.grant);
      expect(released).toBe(true);
      expect(waiters).toEqual([`${QUEUES.pull}|${id}`]);
      expect(await wakeWaiters(new Map([[QUEUES.pull, pullQueue]]), waiters)).toBe(1);

      expect((await cluster.wait(id)).state).toBe('completed');
      expect(blobGets(cluster.proxy, config)).toBe(0);
      for (const layer of image.layerDescriptors) expect(blobGets(cluster.proxy, layer.digest)).toBe(1);
    } finally {
      await pullQueue.close();
      redis.disconnect();
    }
  });

  it('fetches each blob once when the same image is pulled twice at once', async () => {
    const image = await buildImageFromTrees(
      [
        generateTree({ seed: 31, files: 200, largeFiles: 1 }),
        generateTree({ seed: 32, files: 50, root: 'srv' }),
      ],
      { compression: 'zstd' },
    );
    const repo = `${backend}/twice:1`;
    await cluster.push(repo, image);
    cluster.proxy.resetCounters();
    const ids = await Promise.all([cluster.submit(repo), cluster.submit(repo)]);
    const done = await Promise.all(ids.map((id) => cluster.wait(id)));
    expect(done.map((s) => s.state)).toEqual(['completed', 'completed']);
    for (const digest of blobsOf(image)) expect(blobGets(cluster.proxy, digest), digest).toBe(1);
  });

  it('transfers nothing when an image already committed is pulled again', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 35, files: 80 })], { compression: 'gzip' });
    const repo = `${backend}/again:1`;
    await cluster.push(repo, image);
    expect((await cluster.wait(await cluster.submit(repo))).state).toBe('completed');
    cluster.proxy.resetCounters();
    const again = await cluster.wait(await cluster.submit(repo));
    expect(again.state).toBe('completed');
    expect(again.layers.map((l) => l.outcome)).toEqual(['reused']);
    expect(cluster.proxy.requests({ method: 'GET', path: /\/blobs\// })).toEqual([]);
  });

  it('does not fetch or split again a layer whose diffID is committed under another compression', async () => {
    const tree = generateTree({ seed: 41, files: 100 });
    const gzip = await buildImageFromTrees([tree], { compression: 'gzip' });
    const zstd = await buildImageFromTrees([tree], {
      compression: 'zstd',
      config: { Labels: { variant: 'zstd' } },
    });
    await cluster.push(`${backend}/gz:1`, gzip);
    await cluster.push(`${backend}/zst:1`, zstd);
    const first = await cluster.wait(await cluster.submit(`${backend}/gz:1`));
    expect(first.state).toBe('completed');
    cluster.proxy.resetCounters();
    const second = await cluster.wait(await cluster.submit(`${backend}/zst:1`));
    expect(second.state).toBe('completed');
    expect(blobGets(cluster.proxy, firstLayer(zstd).digest)).toBe(0);
    expect(second.layers.map((l) => l.outcome)).toEqual(['reused']);
  });

  it('recovers when a fetcher is killed in the middle of a layer', async () => {
    const image = await buildImageFromTrees(
      [generateTree({ seed: 51, files: 20, largeFiles: 2, largeSize: { min: 8 * MiB, max: 8 * MiB } })],
      { compression: 'gzip' },
    );
    const repo = `${backend}/crash:1`;
    await cluster.push(repo, image);
    const layer = firstLayer(image).digest;
    // Hold the first transfer of the layer open, so a fetcher is certainly in the middle of it.
    cluster.proxy.setRules([
      { method: 'GET', path: new RegExp(`/blobs/${layer}$`), delayMs: 5_000, times: 1 },
    ]);
    cluster.proxy.resetCounters();
    const extra = await cluster.startWorker('fetcher');
    const id = await cluster.submit(repo);
    await until(
      'the layer transfer to start',
      () => cluster.proxy.requests({ method: 'GET', path: new RegExp(`/blobs/${layer}$`) }).length > 0,
    );
    // Kill every fetcher process (the one holding the transfer among them), then start a fresh one.
    const fetchers = cluster.workers.filter((w) => w.role === 'fetcher');
    for (const fetcher of fetchers) fetcher.kill9();
    await Promise.all(fetchers.map((f) => f.exited));
    cluster.workers.splice(
      0,
      cluster.workers.length,
      ...cluster.workers.filter((w) => !fetchers.includes(w)),
    );
    void extra;
    await cluster.startWorker('fetcher');
    await cluster.startWorker('fetcher');
    const status = await cluster.wait(id);
    expect([status.state, status.failedReason]).toEqual(['completed', undefined]);
    const store = await cluster.openStore();
    try {
      expect(await store.hasLayer(firstLayer(image).diffID)).toBe(true);
    } finally {
      await store.close();
    }
    cluster.proxy.clearRules();
  });

  it('pulls an OCI image whose manifest names no mediaType, as podman and skopeo push them', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 81, files: 20 })], {
      compression: 'gzip',
      omitManifestMediaType: true,
    });
    expect(new TextDecoder().decode(image.manifest.bytes)).not.toContain(
      '"mediaType":"application/vnd.oci.image.manifest',
    );
    const repo = `${backend}/no-media-type:1`;
    await cluster.push(repo, image);
    const status = await cluster.wait(await cluster.submit(repo));
    expect([status.state, status.failedReason]).toEqual(['completed', undefined]);
    const store = await cluster.openStore();
    try {
      const record = await store.getImage(image.manifest.descriptor.digest);
      expect(record?.layers.map((l) => l.diffID)).toEqual(image.layers.map((l) => l.diffId));
    } finally {
      await store.close();
    }
  });

  it('retries a registry that fails, then recovers', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 61, files: 30 })], { compression: 'gzip' });
    const repo = `${backend}/flaky:1`;
    await cluster.push(repo, image);
    const layer = firstLayer(image).digest;
    cluster.proxy.resetCounters();
    // More 503s than one HTTP call retries (5 attempts): the job itself fails once and is retried.
    cluster.proxy.setRules([{ method: 'GET', path: new RegExp(`/blobs/${layer}$`), status: 503, times: 7 }]);
    const status = await cluster.wait(await cluster.submit(repo));
    cluster.proxy.clearRules();
    expect([status.state, status.failedReason]).toEqual(['completed', undefined]);
    const answered = cluster.proxy
      .requests({ method: 'GET', path: new RegExp(`/blobs/${layer}$`) })
      .map((r) => r.status);
    expect(answered).toEqual([503, 503, 503, 503, 503, 503, 503, 200]);
  });

  it('fails a pull whose blob does not match its digest, naming it, and commits nothing', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 71, files: 30 })], { compression: 'gzip' });
    const repo = `${backend}/corrupt:1`;
    await cluster.push(repo, image);
    const layer = firstLayer(image).digest;
    cluster.proxy.setRules([
      { method: 'GET', path: new RegExp(`/blobs/${layer}$`), corruptByteAt: 100, times: Infinity },
    ]);
    const status = await cluster.wait(await cluster.submit(repo));
    cluster.proxy.clearRules();
    expect(status.state).toBe('failed');
    expect(status.failedReason, status.failedReason).toContain(
      `digest mismatch, expected ${layer}, got sha256:`,
    );
    const store = await cluster.openStore();
    try {
      expect(await store.hasBlob(layer)).toBe(false);
      expect(await store.hasLayer(firstLayer(image).diffID)).toBe(false);
      expect(await store.getReference(parseReference(`${cluster.proxy.host}/${repo}`))).toBeUndefined();
      expect(await store.getImage(image.manifest.descriptor.digest)).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
