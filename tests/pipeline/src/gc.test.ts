/**
 * Garbage collection with real worker processes (fetcher, hasher and committer, each its own
 * process), Redis, the registry and both store backends: jobs wait behind the collection's gate
 * and run once it opens; a collection deletes what `rm` left unreferenced and nothing that is
 * referenced or queued; workers that loaded the object index before a collection reload it, so an
 * image whose files only the collected image had is stored whole again, not deduplicated against
 * deleted objects.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference } from '@stevedore/oci';
import { LockManager } from '@stevedore/lock';
import {
  beginStoreRead,
  GC_GATE,
  MaintenanceBusyError,
  MAINTENANCE_LOCK,
  maintenanceConnection,
  readGcGeneration,
  runGarbageCollection,
} from '@stevedore/pipeline';
import { ALL_QUEUES, QUEUE_PREFIX, wakeWaiters } from '@stevedore/queue';
import { verifyStore } from '@stevedore/store';
import { buildImageFromTrees, generateTree, type TreeEntry } from '@stevedore/testing';
import { Queue } from 'bullmq';
import {
  blobGets,
  checkLayersAndStop,
  layersOf,
  startCluster,
  until,
  type BackendKind,
  type Cluster,
} from './harness.ts';

const fileContents = (tree: readonly TreeEntry[]): unknown[] =>
  tree.flatMap((e) => (e.type === 'file' ? [e.content] : []));

describe.each<BackendKind>(['directory', 's3'])('garbage collection, store on %s', (backend) => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster(backend, ['fetcher', 'hasher', 'committer']);
  }, 120_000);
  afterAll(() => checkLayersAndStop(cluster));

  it('a job waits behind the gate, holding no worker, and runs when the gate opens', async () => {
    const image = await buildImageFromTrees([generateTree({ seed: 8100, files: 40 })], {
      compression: 'gzip',
    });
    await cluster.push('gc/gated:1', image);
    const redis = await maintenanceConnection(cluster.redisUrl);
    const locks = new LockManager(redis);
    const queues = new Map(
      ALL_QUEUES.map((n) => [n as string, new Queue(n, { connection: redis, prefix: QUEUE_PREFIX })]),
    );
    try {
      const gate = await locks.tryAcquire(GC_GATE);
      expect(gate.acquired).toBe(true);
      if (!gate.acquired) return;
      // A compaction (or a second collection) is refused while the maintenance lock is held.
      const maintenance = await locks.tryAcquire(MAINTENANCE_LOCK);
      expect(maintenance.acquired).toBe(true);
      const id = await cluster.submit('gc/gated:1');
      await until(
        'the pull to park behind the gate',
        async () => (await cluster.status(id))?.state === 'delayed',
      );
      // Parked, it fetched nothing and no job is active.
      await new Promise((r) => setTimeout(r, 500));
      expect((await cluster.status(id))?.state).toBe('delayed');
      expect(blobGets(cluster.proxy, layersOf(image)[0]!.digest)).toBe(0);
      expect(
        (await Promise.all([...queues.values()].map((q) => q.getActiveCount()))).every((n) => n === 0),
      ).toBe(true);
      await expect(
        runGarbageCollection({ connection: redis, store: await cluster.openStore() }, { dryRun: true }),
      ).rejects.toBeInstanceOf(MaintenanceBusyError);
      if (maintenance.acquired) await locks.release(maintenance.grant);

      const released = await locks.release(gate.grant);
      expect(released.waiters.length).toBeGreaterThan(0);
      await wakeWaiters(queues, released.waiters);
      const status = await cluster.wait(id);
      expect(status.state).toBe('completed');
    } finally {
      await Promise.all([...queues.values()].map((q) => q.close()));
      redis.disconnect();
    }
  }, 60_000);

  it('a reader that keeps its lease past the drain timeout: the collection names it and collects nothing', async () => {
    const redis = await maintenanceConnection(cluster.redisUrl);
    const store = await cluster.openStore();
    try {
      const generation = await readGcGeneration(redis);
      const lease = await beginStoreRead(redis, 'test: a long export');
      const steps: string[] = [];
      await expect(
        runGarbageCollection(
          { connection: redis, store },
          { drainTimeoutMs: 600, onStep: (m) => steps.push(m) },
        ),
      ).rejects.toThrow(
        /1 store reader\(s\) still there after 1 s \(.* pid \d+: test: a long export\): nothing was collected/,
      );
      expect(steps).toContainEqual(
        expect.stringMatching(
          /^waiting for 1 store reader\(s\) to finish \(\S+ pid \d+: test: a long export\)$/,
        ),
      );
      expect(await readGcGeneration(redis)).toBe(generation);
      // The gate opened again: readers and jobs go on.
      const next = await beginStoreRead(redis, 'test: after the timeout');
      await next.end();
      await lease.end();
    } finally {
      redis.disconnect();
      await store.close();
    }
  }, 60_000);

  it('a failed pull keeps the layers it committed through a collection: run again, it fetches only the rest', async () => {
    const base = generateTree({ seed: 8500, files: 50 });
    const app = generateTree({ seed: 8600, files: 20, root: 'app' });
    const image = await buildImageFromTrees([base, app], { compression: 'gzip' });
    await cluster.push('gc/failed:1', image);
    const [baseLayer, appLayer] = layersOf(image);
    cluster.proxy.resetCounters();
    cluster.proxy.setRules([
      { method: 'GET', path: new RegExp(`/blobs/${appLayer!.digest}$`), corruptByteAt: 50, times: Infinity },
    ]);
    const failed = await cluster.wait(await cluster.submit('gc/failed:1'));
    expect(failed.state).toBe('failed');
    const store = await cluster.openStore();
    const redis = await maintenanceConnection(cluster.redisUrl);
    try {
      // The base layer's jobs go on after the other layer failed the image.
      await until('the base layer to be committed', () => store.hasLayer(baseLayer!.diffID));
      const r = await runGarbageCollection({ connection: redis, store });
      expect(r.problems).toEqual([]);
      expect(await store.hasLayer(baseLayer!.diffID)).toBe(true);
      expect((await verifyStore(store)).problems).toEqual([]);

      cluster.proxy.clearRules();
      const again = await cluster.wait(await cluster.submit('gc/failed:1'));
      expect([again.state, again.failedReason]).toEqual(['completed', undefined]);
      // The base blob was fetched once in all: the collection left what the failed pull committed.
      expect(blobGets(cluster.proxy, baseLayer!.digest)).toBe(1);
      expect((await verifyStore(store)).problems).toEqual([]);
    } finally {
      redis.disconnect();
      await store.close();
    }
  }, 120_000);

  it('deletes what rm left, keeps the rest; workers reload the index, so a later pull stores the collected files again', async () => {
    const base = generateTree({ seed: 8200, files: 120, largeFiles: 1, content: 'mixed' });
    const appA = generateTree({ seed: 8300, files: 60, root: 'app-a' });
    const appB = generateTree({ seed: 8400, files: 60, root: 'app-b' });
    // The same files as app-a under another directory: another layer, the same objects.
    const appACopy = generateTree({ seed: 8300, files: 60, root: 'copy-of-a' });
    expect(fileContents(appACopy)).toEqual(fileContents(appA));
    const a = await buildImageFromTrees([base, appA], { compression: 'gzip' });
    const b = await buildImageFromTrees([base, appB], { compression: 'gzip' });
    const c = await buildImageFromTrees([appACopy], { compression: 'gzip' });
    await cluster.push('gc/a:1', a);
    await cluster.push('gc/b:1', b);
    await cluster.push('gc/c:1', c);
    for (const repo of ['gc/a:1', 'gc/b:1'])
      expect((await cluster.wait(await cluster.submit(repo))).state).toBe('completed');

    const store = await cluster.openStore();
    const redis = await maintenanceConnection(cluster.redisUrl);
    try {
      const [aBase, aApp] = layersOf(a);
      await store.deleteReference(parseReference(`${cluster.proxy.host}/gc/a:1`));
      const generation = await readGcGeneration(redis);
      const dry = await runGarbageCollection({ connection: redis, store }, { dryRun: true });
      expect(dry.deleted.images.count).toBe(1);
      // A dry run changes nothing: no worker need reload its index.
      expect(await readGcGeneration(redis)).toBe(generation);
      expect(await store.getLayer(aApp!.diffID)).toBeDefined();

      const steps: string[] = [];
      const r = await runGarbageCollection({ connection: redis, store }, { onStep: (m) => steps.push(m) });
      expect(r.problems).toEqual([]);
      expect(steps[0]).toMatch(/gate closed/);
      expect(r.deleted.images.count).toBe(1);
      expect(r.deleted.layers.count).toBe(1); // a's app layer; the base is b's too
      expect(r.deleted.blobs.count).toBe(3); // a's manifest, config and app layer blob
      expect(r.deleted.packs.count + r.repacked.packs.count).toBeGreaterThan(0);
      expect(Number(await readGcGeneration(redis))).toBe(Number(generation) + 1);
      expect(await store.getLayer(aApp!.diffID)).toBeUndefined();
      expect(await store.getLayer(aBase!.diffID)).toBeDefined();
      expect((await verifyStore(store)).problems).toEqual([]);

      // c's files are the collected ones: the hasher must not find them in the index it loaded
      // before the collection. Stored again, c verifies.
      expect((await cluster.wait(await cluster.submit('gc/c:1'))).state).toBe('completed');
      const verified = await verifyStore(store);
      expect(verified.problems).toEqual([]);
      expect(verified.references).toBe(4); // b, c, the gated pull and the failed one run again
      const hasher = cluster.workers.find((w) => w.output().includes('"hasher"')) ?? cluster.workers[1]!;
      expect(hasher.output()).toContain('object index forgotten');
      // And a is pulled again from scratch, dedup against b's base intact.
      expect((await cluster.wait(await cluster.submit('gc/a:1'))).state).toBe('completed');
      expect((await verifyStore(store)).problems).toEqual([]);
    } finally {
      redis.disconnect();
      await store.close();
    }
  }, 120_000);
});
