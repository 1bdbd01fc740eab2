/**
 * kill -9 at any moment: worker processes of every role are killed at random moments while
 * overlapping images are pulled, and restarted. Every pull must end (a pull whose job BullMQ gave
 * up on after repeated stalls is submitted again, as a user would), every committed layer must
 * rebuild to its diffID, the references must point at the pushed images, no lock may be left
 * behind, what the killed workers left in the store must go without taking anything a layer
 * needs, and a pull of everything again must fetch nothing. A garbage collection runs in the middle
 * of it all (an image pulled and removed before is its garbage): it must take nothing that the
 * pulls in flight, their committed layers or the finished images need.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference } from '@stevedore/oci';
import '@stevedore/testing';
import { maintenanceConnection, runGarbageCollection, type GcRunResult } from '@stevedore/pipeline';
import { verifyStore } from '@stevedore/store';
import { buildImageFromTrees, generateTree, type FixtureImage, type WorkerRole } from '@stevedore/testing';
import {
  assertEveryLayerRebuilds,
  layersOf,
  startCluster,
  until,
  type BackendKind,
  type Cluster,
} from './harness.ts';

const MiB = 1024 * 1024;
/** Every role twice at least (`all` serves them all), so a killed role is never the only one. */
const ROLES: readonly WorkerRole[] = ['fetcher', 'hasher', 'committer', 'all', 'all'];
const KILLS = Number(process.env.CHAOS_KILLS ?? 12);
const SEED = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000);

/** A small deterministic PRNG (mulberry32), so a failing run can be replayed with CHAOS_SEED. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe.each<BackendKind>(['directory', 's3'])('kill -9 at random moments, store on %s', (backend) => {
  let cluster: Cluster;
  beforeAll(async () => {
    cluster = await startCluster(backend, ROLES);
  });
  afterAll(() => cluster.stop());

  it(`every pull ends, and everything committed is whole (seed ${SEED})`, async () => {
    const random = prng(SEED);
    const base = generateTree({
      seed: 7,
      files: 400,
      largeFiles: 6,
      largeSize: { min: 8 * MiB, max: 12 * MiB },
      content: 'mixed',
    });
    const mid = generateTree({
      seed: 8,
      files: 200,
      largeFiles: 1,
      largeSize: { min: 4 * MiB, max: 4 * MiB },
      root: 'mid',
    });
    const apps = [31, 32, 33, 34, 35, 36].map((seed) =>
      generateTree({ seed, files: 80, largeFiles: 1, root: `app${seed}` }),
    );
    const images: FixtureImage[] = await Promise.all(
      apps.map((app, i) =>
        buildImageFromTrees(i % 2 === 0 ? [base, mid, app] : [base, app], {
          compression: i === 3 ? 'zstd' : 'gzip',
        }),
      ),
    );
    const repos = images.map((_, i) => `${backend}/chaos-${SEED}-${i}:1`);
    for (const [i, image] of images.entries()) await cluster.push(repos[i]!, image);

    // Garbage for the collection: an image of its own, pulled, then its reference removed.
    const doomed = await buildImageFromTrees([generateTree({ seed: 99, files: 50, root: 'doomed' })]);
    const doomedRepo = `${backend}/chaos-${SEED}-doomed:1`;
    await cluster.push(doomedRepo, doomed);
    expect((await cluster.wait(await cluster.submit(doomedRepo))).state).toBe('completed');
    const remover = await cluster.openStore();
    await remover.deleteReference(parseReference(`${cluster.proxy.host}/${doomedRepo}`));
    await remover.close();

    const ids = await Promise.all(repos.map((r) => cluster.submit(r)));
    // The collection starts while the pulls run and workers are killed; it waits for the active
    // jobs, and the pulls' later jobs wait for it.
    const collection = (async (): Promise<GcRunResult> => {
      await new Promise((r) => setTimeout(r, 500 + random() * 1500));
      const redis = await maintenanceConnection(cluster.redisUrl);
      const store = await cluster.openStore();
      try {
        return await runGarbageCollection({ connection: redis, store }, { drainTimeoutMs: 120_000 });
      } finally {
        await store.close();
        redis.disconnect();
      }
    })();
    let killing = true;
    let kills = 0;
    const killer = (async () => {
      while (killing && kills < KILLS) {
        await new Promise((r) => setTimeout(r, 100 + random() * 500));
        const victim = cluster.workers[Math.floor(random() * cluster.workers.length)];
        if (victim === undefined) continue;
        victim.kill9();
        await victim.exited;
        kills++;
        cluster.workers.splice(cluster.workers.indexOf(victim), 1);
        await cluster.startWorker(victim.role);
      }
    })();
    const outcomes: string[] = [];
    // The killer stops before anything is checked, and before the cluster stops when a wait fails.
    const results = await Promise.all(
      ids.map(async (id, i) => {
        let status = await cluster.wait(id, 180_000);
        // BullMQ fails a job that stalled more often than maxStalledCount: the user submits again.
        for (let again = 0; status.state === 'failed' && again < 3; again++) {
          outcomes.push(`${repos[i]}: failed (${status.failedReason}), submitted again`);
          status = await cluster.wait(await cluster.submit(repos[i]!), 180_000);
        }
        return status;
      }),
    ).finally(async () => {
      killing = false;
      await killer;
    });
    const collected = await collection;
    console.log(
      `seed ${SEED}: ${kills} kills; ${outcomes.length} resubmissions`,
      outcomes,
      `; gc: ${collected.roots} roots, ${collected.woken} jobs woken, deleted`,
      JSON.stringify(collected.deleted),
    );
    expect(collected.problems).toEqual([]);
    // It took the removed image (its layer is its own) and nothing else.
    expect(collected.deleted.images.count).toBe(1);
    expect(collected.deleted.layers.count).toBe(1);
    const doomedLayer = layersOf(doomed)[0]!;
    expect(results.map((s) => [s.state, s.failedReason])).toEqual(repos.map(() => ['completed', undefined]));

    const store = await cluster.openStore();
    try {
      for (const [i, image] of images.entries()) {
        const ref = await store.getReference(parseReference(`${cluster.proxy.host}/${repos[i]}`));
        expect(ref?.digest).toBe(image.manifest.descriptor.digest);
      }
      expect(await assertEveryLayerRebuilds(store)).toBe(
        new Set(images.flatMap((im) => im.layers.map((l) => l.diffId))).size,
      );
      expect(await store.getLayer(doomedLayer.diffID)).toBeUndefined();
    } finally {
      await store.close();
    }

    // No lock outlives its expiry: a killed holder's lock is gone within the TTL (2 s in tests).
    const redis = new Redis(cluster.redisUrl);
    try {
      const held = async (): Promise<string[]> =>
        (await redis.keys('stevedore:lock:*')).filter(
          (k) => !k.endsWith(':fence') && !k.endsWith(':waiters'),
        );
      await until('every lock to be released or to expire', async () => (await held()).length === 0, 10_000);
      expect(await held()).toEqual([]);
    } finally {
      redis.disconnect();
    }
    // What the killed workers left behind (packs no index lists, splitstreams no layer names,
    // temporary files) goes, and nothing else: every layer still rebuilds. No import is running
    // now, so no minimum age is needed.
    const cleaner = await cluster.openStore();
    try {
      const removed = await cleaner.removeOrphans({ minAgeMs: 0 });
      console.log(`seed ${SEED}: crash leftovers removed`, JSON.stringify(removed));
      expect((await cleaner.removeOrphans({ minAgeMs: 0 })).packs.count).toBe(0);
      expect(await assertEveryLayerRebuilds(cleaner)).toBe(
        new Set(images.flatMap((im) => im.layers.map((l) => l.diffId))).size,
      );
      // The whole store, as `stevedore verify` reads it: nothing partial is visible anywhere.
      const verified = await verifyStore(cleaner);
      expect(verified.problems).toEqual([]);
      expect(verified.references).toBe(repos.length);
    } finally {
      await cleaner.close();
    }
    // Everything pulled again fetches nothing.
    cluster.proxy.resetCounters();
    const again = await Promise.all(
      (await Promise.all(repos.map((r) => cluster.submit(r)))).map((id) => cluster.wait(id)),
    );
    expect(again.map((s) => s.state)).toEqual(repos.map(() => 'completed'));
    expect(cluster.proxy.requests({ method: 'GET', path: /\/blobs\// })).toEqual([]);
  }, 600_000);
});
