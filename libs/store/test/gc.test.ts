/**
 * Garbage collection (src/gc.ts) on both backends: what no reference reaches is deleted, what one
 * reaches still rebuilds; packs mostly dead are rewritten and packs all dead deleted; roots keep
 * queued work; a dry run changes nothing; a damaged store keeps its packs; a process that loaded
 * the index before a collection reads correctly once it forgets it.
 */
import { parseReference, type Digest } from '@stevedore/oci';
import { describe, expect, it } from 'vitest';
import { verifyStore, type Store } from '../src/index.ts';
import { BACKENDS } from './backends.ts';
import { chunked, collect, KiB, randomFiles, type PackEntry } from './fixtures.ts';
import { commitImage, keysUnder, type Committed } from './images.ts';

async function allKeys(store: Store): Promise<string[]> {
  return keysUnder(store, '');
}

/** Files named under `dir` (so that two sets never share a path). */
function files(dir: string, seed: number, count: number): PackEntry[] {
  return randomFiles(seed, count, 6 * KiB).map((e) => ({
    ...e,
    header: { ...e.header, name: `${dir}/${e.header.name}` },
  }));
}

const blobKey = (d: Digest): string => `blobs/sha256/${d.slice('sha256:'.length)}`;
const recordKey = (kind: string, d: Digest): string => `${kind}/sha256/${d.slice('sha256:'.length)}.json`;

/** Every key an image's commit wrote, besides its packs and index file. */
function keysOf(c: Committed): string[] {
  return [
    blobKey(c.manifest),
    blobKey(c.config),
    blobKey(c.layer.digest),
    recordKey('images', c.manifest),
    recordKey('layers', c.layer.diffID),
    recordKey('layer-blobs', c.layer.digest),
    c.splitstream,
  ];
}

describe.each(BACKENDS)('garbage collection on $name', (backend) => {
  /**
   * Image a: 4 files shared with b and 12 of its own (a pack three quarters dead once a goes);
   * image b: the 4 shared files (reused from a's pack) and 4 of its own.
   */
  async function twoImages(): Promise<{
    store: Store;
    open: () => Promise<Store>;
    a: Committed;
    b: Committed;
  }> {
    const open = await backend.location();
    const store = await open();
    const shared = files('shared', 5100, 4);
    const a = await commitImage(store, 'localhost:5000/team/a:1', [...shared, ...files('a', 5200, 12)]);
    const b = await commitImage(store, 'localhost:5000/team/b:1', [...shared, ...files('b', 5300, 4)]);
    return { store, open: () => open(), a, b };
  }

  it('with every image referenced, deletes nothing and rewrites nothing', async () => {
    const { store } = await twoImages();
    const before = await allKeys(store);
    const r = await store.collectGarbage();
    expect(r.problems).toEqual([]);
    expect(r.live).toMatchObject({ references: 2, images: 2, layers: 2, blobs: { count: 6 } });
    expect(r.live.objects.count).toBe(4 + 12 + 4);
    for (const c of Object.values(r.deleted)) expect(c).toEqual({ count: 0, bytes: 0 });
    expect(r.repacked.packs.count).toBe(0);
    // Nothing changes, the index files included.
    expect(await allKeys(store)).toEqual(before);
    expect(r.indexFiles).toEqual({ before: 2, written: 0 });
    expect((await verifyStore(store)).problems).toEqual([]);
  });

  it('after rm, a dry run reports what would go and changes nothing; the collection then deletes it', async () => {
    const { store, open, a, b } = await twoImages();
    await store.deleteReference(parseReference(a.ref));
    const before = await allKeys(store);

    const dry = await store.collectGarbage({ dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(await allKeys(store)).toEqual(before);
    expect(dry.deleted.images.count).toBe(1);
    expect(dry.deleted.layers.count).toBe(1);
    expect(dry.deleted.layerBlobs.count).toBe(1);
    expect(dry.deleted.splitstreams.count).toBe(1);
    expect(dry.deleted.blobs.count).toBe(3);
    // a's pack: 4 live objects (b uses them) of 16, so below the default half: rewritten.
    expect(dry.repacked.packs.count).toBe(1);
    expect(dry.live.objects.count).toBe(8);

    const r = await store.collectGarbage();
    expect(r.problems).toEqual([]);
    expect({ ...r.deleted, repacked: r.repacked.packs.count }).toEqual({
      ...dry.deleted,
      repacked: 1,
    });
    const after = new Set(await allKeys(store));
    for (const key of keysOf(a)) expect(after.has(key), key).toBe(false);
    for (const key of keysOf(b)) expect(after.has(key), key).toBe(true);
    for (const key of a.packs) expect(after.has(key), key).toBe(false);
    for (const key of b.packs) expect(after.has(key), key).toBe(true);
    // One new pack holds a's 4 objects that b still uses; the stored bytes shrank.
    const packsAfter = await keysUnder(store, 'packs/');
    expect(packsAfter).toHaveLength(b.packs.length + 1);
    expect(r.deleted.blobs.bytes).toBeGreaterThan(0);

    // b rebuilds byte for byte, here and in a process that opens the store afresh.
    expect((await verifyStore(store)).problems).toEqual([]);
    const fresh = await open();
    expect(await collect(await fresh.openLayer(b.layer.diffID))).toEqual(b.tar);
    expect(await fresh.listImages()).toHaveLength(1);

    // Pulling a again works, and reuses b's objects (the 4 shared files were kept).
    const again = await fresh.importLayer(chunked(a.tar));
    expect(again.stats.objectsReused).toBe(4);
    expect(again.stats.objectsWritten).toBe(12);
    expect(await collect(await fresh.openLayer(a.layer.diffID))).toEqual(a.tar);

    // A second collection has nothing left to do but the re-imported, unreferenced layer.
    const second = await fresh.collectGarbage();
    expect(second.deleted.layers.count).toBe(1);
    expect(second.deleted.images.count).toBe(0);
    expect((await verifyStore(fresh)).problems).toEqual([]);
  });

  it('keeps an image pulled by digest (its digest reference), and collects it once that is removed', async () => {
    const open = await backend.location();
    const store = await open();
    const d = await commitImage(store, 'localhost:5000/team/d:1', files('d', 6500, 5));
    // As a pull by digest leaves it: the digest reference only.
    await store.deleteReference(parseReference(d.ref));
    const byDigest = parseReference(`localhost:5000/team/d@${d.manifest}`);
    await store.setReference(byDigest, d.manifest);
    const kept = await store.collectGarbage();
    expect(kept.live).toMatchObject({ references: 1, images: 1, layers: 1 });
    expect(kept.deleted.images.count + kept.deleted.layers.count + kept.deleted.blobs.count).toBe(0);
    await store.deleteReference(byDigest);
    const gone = await store.collectGarbage();
    expect(gone.deleted).toMatchObject({ images: { count: 1 }, layers: { count: 1 }, blobs: { count: 3 } });
    expect(await keysUnder(store, 'packs/')).toEqual([]);
  });

  it('deletes a pack none of whose objects is live, and keeps a mostly live one with its dead bytes counted', async () => {
    const open = await backend.location();
    const store = await open();
    const shared = files('shared', 6100, 12);
    const a = await commitImage(store, 'localhost:5000/team/a:1', [...shared, ...files('a', 6200, 4)]);
    const b = await commitImage(store, 'localhost:5000/team/b:1', shared);
    const c = await commitImage(store, 'localhost:5000/team/c:1', files('c', 6300, 6));
    await store.deleteReference(parseReference(a.ref));
    await store.deleteReference(parseReference(c.ref));
    const r = await store.collectGarbage();
    expect(r.problems).toEqual([]);
    // c's pack: all dead. a's pack: 12 of 16 objects live (b's), above half: kept.
    expect(r.deleted.packs.count).toBe(1);
    expect(r.repacked.packs.count).toBe(0);
    expect(r.deadBytesKept).toBe(4 * 6 * KiB);
    const packs = new Set(await keysUnder(store, 'packs/'));
    for (const key of c.packs) expect(packs.has(key)).toBe(false);
    for (const key of a.packs) expect(packs.has(key)).toBe(true);
    expect(b.packs).toEqual([]);
    expect((await verifyStore(store)).problems).toEqual([]);
    expect(await collect(await store.openLayer(b.layer.diffID))).toEqual(b.tar);
  });

  it('keeps what queued work names (roots): a pull whose layer is committed but whose image is not yet', async () => {
    const open = await backend.location();
    const store = await open();
    const pending = await commitImage(store, 'localhost:5000/team/p:1', files('p', 7100, 5), {
      image: false,
    });
    const kept = await store.collectGarbage({ roots: [pending.manifest, 'not a digest'] });
    expect(kept.problems).toEqual([]);
    expect(kept.deleted.layers.count).toBe(0);
    expect(kept.deleted.blobs.count).toBe(0);
    expect(kept.live.layers).toBe(1);
    expect(await store.getLayer(pending.layer.diffID)).toBeDefined();
    // The diffID alone (a split job's payload) keeps the layer too; the blobs then go.
    const byDiffID = await store.collectGarbage({ roots: [pending.layer.diffID] });
    expect(byDiffID.deleted.layers.count).toBe(0);
    expect(byDiffID.deleted.blobs.count).toBe(3);
    // With no roots, it is garbage.
    const gone = await store.collectGarbage();
    expect(gone.deleted.layers.count).toBe(1);
    expect(await store.getLayer(pending.layer.diffID)).toBeUndefined();
  });

  it('a process that loaded the index before a collection reads right once it forgets it', async () => {
    const { store, open, a, b } = await twoImages();
    const worker = await open();
    await worker.prepareReads(); // the object index as a worker loads it when it starts
    await store.deleteReference(parseReference(a.ref));
    const r = await store.collectGarbage();
    expect(r.repacked.packs.count).toBe(1);
    // Its index still places b's shared objects in a's deleted pack: reading fails.
    await expect(collect(await worker.openLayer(b.layer.diffID))).rejects.toThrow(
      /not found|no such|NoSuchKey/i,
    );
    await worker.forgetObjectIndex();
    expect(await collect(await worker.openLayer(b.layer.diffID))).toEqual(b.tar);
  });

  it('in a damaged store, collects records but deletes no pack', async () => {
    const { store, a, b } = await twoImages();
    await store.deleteReference(parseReference(a.ref));
    await store.backend.delete(b.splitstream);
    const packsBefore = await keysUnder(store, 'packs/');
    const indexBefore = await keysUnder(store, 'index/');
    const r = await store.collectGarbage();
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toContain(`layer ${b.layer.diffID}`);
    expect(r.deleted.layers.count).toBe(1);
    expect(r.deleted.packs).toEqual({ count: 0, bytes: 0 });
    expect(r.repacked.packs).toEqual({ count: 0, bytes: 0 });
    expect(await store.getLayer(a.layer.diffID)).toBeUndefined();
    expect(await keysUnder(store, 'packs/')).toEqual(packsBefore);
    expect(await keysUnder(store, 'index/')).toEqual(indexBefore);
  });
});
