/**
 * Imports sharing a small limiter: more imports than blocks and than I/O slots finish (each holds a
 * splitstream upload for its whole life, which must not hold an I/O slot its pack writes need), and
 * every block is back in the pool afterwards.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIG, chunked, collect, KiB, packTar, randomFiles, TEXT } from '../test/fixtures.ts';
import { Limiter } from './limiter.ts';
import { openStore } from './store.ts';

const dirs: string[] = [];
const limiters: Limiter[] = [];
afterAll(async () => {
  await Promise.all(limiters.map((l) => l.close()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

describe('imports sharing a small limiter', () => {
  it('all finish with more imports than blocks and I/O slots, and give every block back', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stevedore-import-'));
    dirs.push(dir);
    // Two blocks (the least), one worker, two I/O slots, four imports at once.
    const limiter = new Limiter({ memoryBytes: 4 * 1024 * KiB, workers: 1, ioConcurrency: 2 });
    limiters.push(limiter);
    const store = await openStore({ backend: { kind: 'directory', path: dir }, limiter });
    const layers = await Promise.all(
      [1, 2, 3, 4].map((seed) =>
        packTar([
          ...randomFiles(seed * 1000, 120, 100 * KiB),
          { header: { name: 'text.txt', size: TEXT.length }, content: TEXT },
          { header: { name: 'big.bin', size: BIG.length }, content: BIG },
          ...randomFiles(seed * 1000 + 500, 50, 2 * KiB),
        ]),
      ),
    );
    const results = await Promise.all(layers.map((l) => store.importLayer(chunked(l))));
    expect(limiter.blocks.available).toBe(2);
    expect(results.map((r) => r.size)).toEqual(layers.map((l) => l.length));
    // Concurrent imports do not see each other's objects before their index files are published:
    // each wrote its 170 files, BIG's 3 chunks and TEXT.
    expect(results.map((r) => r.stats.objectsWritten)).toEqual([174, 174, 174, 174]);
    for (const [i, r] of results.entries()) {
      expect((await collect(await store.openLayer(r.diffID))).equals(layers[i]!)).toBe(true);
    }
    expect(limiter.blocks.available).toBe(2);
  });
});
