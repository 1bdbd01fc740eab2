/**
 * Index compaction (src/compaction.ts) on both backends: merged files replace the old ones, a fresh
 * process reads and dedups through them, a reader that loses a listed file to a compaction lists
 * again, and a compaction that cannot finish deletes nothing.
 */
import { digestHex, digestOf, type DiffID } from '@stevedore/oci';
import { describe, expect, it } from 'vitest';
import {
  CorruptObjectError,
  IndexCompactionConflictError,
  listAll,
  ObjectNotFoundError,
  openStore,
  type Backend,
  type Store,
} from '../src/index.ts';
import { BACKENDS } from './backends.ts';
import { chunked, collect, KiB, packTar, randomFiles } from './fixtures.ts';

const HOUR = 60 * 60 * 1000;
/** Every index file written before the compaction counts as old. */
const ALL = { minAgeMs: 0 };

async function indexKeys(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const { key } of listAll(store.backend, 'index/')) out.push(key);
  return out;
}

/** Imports `count` layers of distinct files (plus 4 files every layer shares); their tars by diffID. */
async function importLayers(store: Store, count: number): Promise<Map<DiffID, Buffer>> {
  const shared = randomFiles(900, 4, 3 * KiB);
  const tars = new Map<DiffID, Buffer>();
  for (let i = 0; i < count; i++) {
    const tar = await packTar([...shared, ...randomFiles(1000 + i, 6, 2 * KiB + i)]);
    const result = await store.importLayer(chunked(tar));
    tars.set(result.diffID, tar);
  }
  return tars;
}

async function expectLayers(store: Store, tars: Map<DiffID, Buffer>): Promise<void> {
  for (const [diffID, tar] of tars) {
    expect((await collect(await store.openLayer(diffID))).equals(tar), diffID).toBe(true);
  }
}

/**
 * `backend` with `before(key)` awaited ahead of every getBytes of an index file: a deterministic
 * place to run a compaction between a reader's listing and its reads.
 */
function interceptIndexReads(backend: Backend, before: (key: string) => Promise<void>): Backend {
  return new Proxy(backend, {
    get(target, prop) {
      if (prop === 'getBytes') {
        return async (key: string, options?: Parameters<Backend['getBytes']>[1]) => {
          if (key.startsWith('index/')) await before(key);
          return target.getBytes(key, options);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe.each(BACKENDS)('index compaction on $name', (backend) => {
  it('merges old index files into one, deletes them, and a fresh process reads and dedups through it', async () => {
    const open = await backend.location();
    const writer = await open();
    const tars = await importLayers(writer, 5);
    const before = await indexKeys(writer);
    expect(before).toHaveLength(5);

    const result = await writer.compactIndex(ALL);
    expect(result).toMatchObject({ before: 5, merged: 5 });
    // 4 shared files stored once, by the first import, and 6 of each layer's own.
    expect(result.entries).toBe(4 + 5 * 6);
    expect(result.written).toHaveLength(1);
    expect(result.bytesAfter).toBeLessThan(result.bytesBefore);
    const after = await indexKeys(writer);
    expect(after).toEqual(result.written);
    expect(after.some((k) => before.includes(k))).toBe(false);
    // Named after every file it replaced: processes that loaded those list it on their next refresh.
    expect(after[0]! > before.at(-1)!).toBe(true);

    const fresh = await open();
    await expectLayers(fresh, tars);
    const shared = randomFiles(900, 4, 3 * KiB);
    const again = await fresh.importLayer(
      chunked(await packTar([...shared, ...randomFiles(2000, 1, 5 * KiB)])),
    );
    expect(again.stats).toMatchObject({ objectsReused: 4, objectsWritten: 1 });
    // The writer, which had loaded the inputs, still reads everything too.
    await expectLayers(writer, tars);
  });

  it('leaves index files younger than the minimum age, and a single old one, alone', async () => {
    const open = await backend.location();
    const store = await open();
    await importLayers(store, 3);
    const before = await indexKeys(store);
    expect(await store.compactIndex()).toMatchObject({ before: 3, merged: 0, written: [] });
    expect(await indexKeys(store)).toEqual(before);
    await store.compactIndex(ALL);
    const merged = await indexKeys(store);
    expect(merged).toHaveLength(1);
    // One old file: nothing to merge it with.
    expect(await store.compactIndex(ALL)).toMatchObject({ before: 1, merged: 0 });
    expect(await indexKeys(store)).toEqual(merged);
  });

  it('a reader that listed index files a compaction then deleted lists again and finds the merged file', async () => {
    const open = await backend.location();
    const writer = await open();
    const tars = await importLayers(writer, 4);
    let compacted = 0;
    const reader = await openStore({
      backend: interceptIndexReads(writer.backend, async () => {
        if (compacted++ === 0) await writer.compactIndex(ALL);
      }),
    });
    // (The reader shares the writer's backend, which the suite closes.)
    // The reader's first refresh lists the 4 files, then each read finds its file gone.
    await expectLayers(reader, tars);
    expect(compacted).toBeGreaterThan(1);
    expect(await indexKeys(writer)).toHaveLength(1);
  });

  it('names a reader’s index file that keeps vanishing, after three listings', async () => {
    const open = await backend.location();
    const writer = await open();
    const [diffID] = [...(await importLayers(writer, 1)).keys()];
    // Compactions back to back, as seen by the reader: each file it is about to read moves to a
    // newer name first.
    let moves = 0;
    const reader = await openStore({
      backend: interceptIndexReads(writer.backend, async (key) => {
        const bytes = await writer.backend.getBytes(key);
        const time = String(Date.now() + HOUR + ++moves).padStart(13, '0');
        await writer.backend.put(`index/${time}-${digestHex(digestOf(bytes))}.idx`, bytes);
        await writer.backend.delete(key);
      }),
    });
    const err = await reader
      .openLayer(diffID!)
      .then(collect)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ObjectNotFoundError);
    expect(String(err)).toMatch(
      /index file index\/\d{13}-[0-9a-f]{64}\.idx was deleted between listing and reading, 3 times/,
    );
    expect(moves).toBe(3);
  });

  it('stops at a corrupt index file, naming it, and deletes nothing', async () => {
    const open = await backend.location();
    const store = await open();
    await importLayers(store, 3);
    const before = await indexKeys(store);
    const victim = before[1]!;
    const bytes = await store.backend.getBytes(victim);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await store.backend.put(victim, bytes);
    const err = await store.compactIndex(ALL).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    expect(String(err)).toContain(victim);
    expect(await indexKeys(store)).toEqual(before);
  });

  it('two compactions at once: each finishes or stops having changed nothing, and every layer stays readable', async () => {
    const open = await backend.location();
    const a = await open();
    const tars = await importLayers(a, 6);
    const b = await open();
    const results = await Promise.allSettled([a.compactIndex(ALL), b.compactIndex(ALL)]);
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(IndexCompactionConflictError);
    }
    expect(results.some((r) => r.status === 'fulfilled')).toBe(true);
    const keys = await indexKeys(a);
    expect(keys.length).toBeGreaterThanOrEqual(1);
    expect(keys.length).toBeLessThanOrEqual(2);
    await expectLayers(await open(), tars);
  });
});
