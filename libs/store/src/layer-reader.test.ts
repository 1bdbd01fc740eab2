/**
 * Rebuilds through the limiter's shared blocks: exact bytes with fewer blocks than the layer needs,
 * and every block back in the pool afterwards, whether the rebuild ends, stops early or fails.
 */
import { finished } from 'node:stream/promises';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIG, chunked, collect, KiB, packTar, randomFiles, TEXT } from '../test/fixtures.ts';
import { CorruptObjectError } from './errors.ts';
import { Limiter } from './limiter.ts';
import { openStore, type Store } from './store.ts';

const dirs: string[] = [];
const limiters: Limiter[] = [];
afterAll(async () => {
  await Promise.all(limiters.map((l) => l.close()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A store with a limiter of its own: 4 blocks of 2 MiB, so the layers below need them many times over. */
async function smallStore(): Promise<{ store: Store; limiter: Limiter; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'stevedore-reader-'));
  dirs.push(dir);
  const limiter = new Limiter({ memoryBytes: 8 * 1024 * KiB, workers: 2 });
  limiters.push(limiter);
  return { store: await openStore({ backend: { kind: 'directory', path: dir }, limiter }), limiter, dir };
}

const layer = await packTar([
  ...randomFiles(1, 40, 100 * KiB),
  { header: { name: 'text.txt', size: TEXT.length }, content: TEXT },
  { header: { name: 'big.bin', size: BIG.length }, content: BIG },
  { header: { name: 'tiny', size: 10 }, content: Buffer.from('0123456789') },
  ...randomFiles(2, 300, 3 * KiB),
]);

describe('openLayer through shared blocks', () => {
  it('rebuilds the exact tar and gives every block back', async () => {
    const { store, limiter } = await smallStore();
    const { diffID } = await store.importLayer(chunked(layer));
    expect(limiter.blocks.available).toBe(4);
    const rebuilt = await collect(await store.openLayer(diffID));
    expect(rebuilt.equals(layer)).toBe(true);
    expect(limiter.blocks.available).toBe(4);
  });

  it('gives every block back when the reader stops early', async () => {
    const { store, limiter } = await smallStore();
    const { diffID } = await store.importLayer(chunked(layer));
    const stream = await store.openLayer(diffID);
    const first = await new Promise<Buffer>((resolve) => stream.once('data', resolve));
    expect(first.length).toBeGreaterThan(0);
    stream.destroy();
    await finished(stream).catch(() => undefined);
    expect(limiter.blocks.available).toBe(4);
  });

  it('names the pack of a corrupt object and gives every block back', async () => {
    const { store, limiter, dir } = await smallStore();
    const { diffID } = await store.importLayer(chunked(layer));
    const packs = await readdir(join(dir, 'packs'));
    const pack = join(dir, 'packs', packs.sort()[0]!);
    const bytes = await readFile(pack);
    bytes[1000]! ^= 0xff;
    await writeFile(pack, bytes);
    const err: unknown = await collect(await store.openLayer(diffID)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    expect((err as Error).message).toContain(`packs/${packs.sort()[0]!}`);
    expect(limiter.blocks.available).toBe(4);
  });

  it('names a truncated pack (a short read into the blocks) and gives every block back', async () => {
    const { store, limiter, dir } = await smallStore();
    const { diffID } = await store.importLayer(chunked(layer));
    const packs = (await readdir(join(dir, 'packs'))).sort();
    const pack = join(dir, 'packs', packs[0]!);
    const bytes = await readFile(pack);
    await writeFile(pack, bytes.subarray(0, bytes.length >> 1));
    for (const read of [
      async () => collect(await store.openLayer(diffID)),
      async () => {
        for await (const b of await store.openLayerBlocks(diffID)) b.release();
      },
    ]) {
      const err: unknown = await read().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CorruptObjectError);
      expect((err as Error).message).toMatch(
        new RegExp(`packs/${packs[0]!}.*short read: \\d+ of \\d+ bytes`),
      );
      expect(limiter.blocks.available).toBe(4);
    }
  });
});

describe('openLayerBlocks: the rebuilt tar lent in place', () => {
  it('lends the exact tar in blocks, each back in the pool once released (and hashed)', async () => {
    const { store, limiter } = await smallStore();
    const { diffID } = await store.importLayer(chunked(layer));
    const copies: Buffer[] = [];
    let held = 0;
    for await (const b of await store.openLayerBlocks(diffID)) {
      // A lent block is out of the pool until released.
      held = Math.max(held, 4 - limiter.blocks.available);
      expect(b.bytes.buffer).toBe(limiter.blocks.input);
      copies.push(Buffer.from(b.bytes));
      b.release();
      b.release(); // twice is once
    }
    expect(Buffer.concat(copies).equals(layer)).toBe(true);
    expect(held).toBeGreaterThan(0);
    expect(limiter.blocks.available).toBe(4);
  });

  it('keeps a block out of the pool while its borrower holds it', async () => {
    const { store, limiter } = await smallStore();
    const { diffID } = await store.importLayer(chunked(layer));
    const blocks = await store.openLayerBlocks(diffID);
    const first = (await blocks.next()).value as { bytes: Buffer; release: () => void };
    const bytes = Buffer.from(first.bytes);
    // Stop the rebuild: everything but the held block comes back.
    await blocks.return(undefined);
    expect(limiter.blocks.available).toBe(3);
    expect(first.bytes.equals(bytes)).toBe(true);
    first.release();
    expect(limiter.blocks.available).toBe(4);
  });

  it('fails on a corrupt object, naming its pack', async () => {
    const { store, limiter, dir } = await smallStore();
    const { diffID } = await store.importLayer(chunked(layer));
    const packs = (await readdir(join(dir, 'packs'))).sort();
    const pack = join(dir, 'packs', packs[0]!);
    const bytes = await readFile(pack);
    bytes[1000]! ^= 0xff;
    await writeFile(pack, bytes);
    const err = await (async () => {
      for await (const b of await store.openLayerBlocks(diffID)) b.release();
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptObjectError);
    expect((err as Error).message).toContain(`packs/${packs[0]!}`);
    expect(limiter.blocks.available).toBe(4);
  });
});
