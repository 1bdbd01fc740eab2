/**
 * Crash leftovers (src/orphans.ts) on both backends: packs no index file lists, splitstreams no
 * layer record names and temporary files go once old enough; nothing a layer needs goes, also
 * after a compaction merged index files that list the same objects twice.
 */
import type { DiffID } from '@stevedore/oci';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CorruptObjectError, DirectoryBackend, listAll, type Store } from '../src/index.ts';
import { BACKENDS } from './backends.ts';
import { chunked, collect, KiB, packTar, randomFiles } from './fixtures.ts';

async function keysUnder(store: Store, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const { key } of listAll(store.backend, prefix)) out.push(key);
  return out;
}

/** Keys written by `run` under `prefix`. */
async function added(store: Store, prefix: string, run: () => Promise<unknown>): Promise<string[]> {
  const before = new Set(await keysUnder(store, prefix));
  await run();
  return (await keysUnder(store, prefix)).filter((k) => !before.has(k));
}

describe.each(BACKENDS)('crash leftovers on $name', (backend) => {
  it('deletes packs no index lists and splitstreams no layer names, once old enough, and nothing a layer needs', async () => {
    const open = await backend.location();
    const store = await open();
    const shared = randomFiles(500, 5, 4 * KiB);
    const live = new Map<DiffID, Buffer>();
    for (let i = 0; i < 3; i++) {
      const tar = await packTar([...shared, ...randomFiles(510 + i, 8, 3 * KiB)]);
      live.set((await store.importLayer(chunked(tar))).diffID, tar);
    }
    // The same layer imported by two processes at once: two packs hold its objects.
    const other = await open();
    const twice = await packTar(randomFiles(530, 10, 5 * KiB));
    const [a] = await Promise.all([store.importLayer(chunked(twice)), other.importLayer(chunked(twice))]);
    live.set(a.diffID, twice);

    // An import killed before it published: its packs and splitstream stay, unnamed. (Simulated:
    // a finished import whose index file and layer record are taken away.)
    const crashed = await packTar(randomFiles(540, 12, 6 * KiB));
    let diffID: DiffID | undefined;
    const index = await added(store, 'index/', async () => {
      diffID = (await store.importLayer(chunked(crashed))).diffID;
    });
    const record = (await store.getLayer(diffID!))!;
    const crashedPacks = (await keysUnder(store, 'packs/')).length;
    for (const key of index) await store.backend.delete(key);
    await store.backend.delete(`layers/sha256/${diffID!.slice('sha256:'.length)}.json`);
    // A pack written by an import that died before its index file (nothing lists it).
    await store.backend.put(`packs/${randomBytes(16).toString('hex')}.pack`, randomBytes(1000));
    if (store.backend instanceof DirectoryBackend) {
      await writeFile(join(store.backend.root, '.tmp', 'interrupted-put'), 'partial');
    }
    // Merged index files keep every entry: the second copy's pack stays listed.
    expect((await store.compactIndex({ minAgeMs: 0 })).merged).toBeGreaterThan(1);

    const young = await store.removeOrphans();
    expect(young).toEqual({
      packs: { count: 0, bytes: 0 },
      splitstreams: { count: 0, bytes: 0 },
      temporaries: { count: 0, bytes: 0 },
    });
    const packsBefore = await keysUnder(store, 'packs/');
    // Unnamed splitstreams: the crashed import's, and the loser's of the two concurrent imports of
    // one layer when both found no record and both wrote it (the last record names the other's).
    const named = new Set((await store.listLayers()).map((l) => l.splitstream.key));
    const unnamed = (await keysUnder(store, 'splitstreams/')).filter((k) => !named.has(k));
    expect(unnamed).toContain(record.splitstream.key);
    const removed = await store.removeOrphans({ minAgeMs: 0 });
    const packsAfter = await keysUnder(store, 'packs/');
    expect(removed.packs.count).toBe(packsBefore.length - packsAfter.length);
    // The crashed import's pack(s) and the stray one.
    expect(removed.packs.count).toBeGreaterThanOrEqual(2);
    expect(packsBefore.length - crashedPacks).toBe(1);
    expect(removed.splitstreams.count).toBe(unnamed.length);
    expect((await keysUnder(store, 'splitstreams/')).sort()).toEqual([...named].sort());
    expect(removed.temporaries.count).toBe(store.backend instanceof DirectoryBackend ? 1 : 0);

    const fresh = await open();
    for (const [id, tar] of live) {
      expect((await collect(await fresh.openLayer(id))).equals(tar), id).toBe(true);
    }
    // Nothing left to remove, and the next import of the crashed layer stores it again.
    expect((await fresh.removeOrphans({ minAgeMs: 0 })).packs.count).toBe(0);
    const again = await fresh.importLayer(chunked(crashed));
    expect(again.stats.objectsWritten).toBe(12);
    expect((await collect(await fresh.openLayer(again.diffID))).equals(crashed)).toBe(true);
  });

  it('deletes nothing when an index file is corrupt, and names it', async () => {
    const open = await backend.location();
    const store = await open();
    await store.importLayer(chunked(await packTar(randomFiles(550, 4, 3 * KiB))));
    await store.backend.put(`packs/${randomBytes(16).toString('hex')}.pack`, randomBytes(100));
    const [victim] = await keysUnder(store, 'index/');
    const bytes = await store.backend.getBytes(victim!);
    bytes[20] = bytes[20]! ^ 0xff;
    await store.backend.put(victim!, bytes);
    const packs = await keysUnder(store, 'packs/');
    const err = await store.removeOrphans({ minAgeMs: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    expect(String(err)).toContain(victim);
    expect(await keysUnder(store, 'packs/')).toEqual(packs);
  });
});
