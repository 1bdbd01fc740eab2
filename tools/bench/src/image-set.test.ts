import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { prepareImageSet, type ImageSetSpec } from './image-set.ts';

let work: string;
let cacheRoot: string;
let spec: ImageSetSpec;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'stevedore-bench-set-'));
  cacheRoot = join(work, 'cache');
  const one = join(work, 'one');
  const two = join(work, 'two');
  await mkdir(join(one, 'sub'), { recursive: true });
  await mkdir(two);
  await writeFile(join(one, 'a.txt'), 'x'.repeat(100));
  await writeFile(join(one, 'sub', 'b.txt'), 'x'.repeat(100)); // same content as a.txt
  await writeFile(join(one, 'sub', 'c.txt'), 'short'); // at most 64 bytes: inline in the store
  await writeFile(join(one, 'big.bin'), 'y'.repeat(1000));
  await writeFile(join(two, 'again.txt'), 'x'.repeat(100)); // in the other layer too
  await writeFile(join(two, 'own.txt'), 'z'.repeat(200));
  spec = {
    name: 'test',
    compression: 'gzip',
    layers: [
      { name: 'one', source: { kind: 'directory', path: one, prefix: 'opt/one' } },
      { name: 'two', source: { kind: 'directory', path: two, prefix: 'opt/two' } },
    ],
    images: [
      { ref: 'bench/one:1', layers: ['one'] },
      { ref: 'bench/both:1', layers: ['one', 'two'] },
    ],
  };
});

afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('prepareImageSet', () => {
  it('builds the layers once, counts distinct file content, and reuses the cache', async () => {
    const builds: string[] = [];
    const first = await prepareImageSet(spec, { cacheRoot, onBuild: (dir) => builds.push(dir) });
    expect(first.cached).toBe(false);
    expect(builds).toEqual([first.dir]);
    expect(first.files).toBe(6);
    // a.txt (= b.txt = again.txt) 100 + big.bin 1000 + own.txt 200; c.txt is inline.
    expect(first.uniqueFileContentBytes).toBe(1300);
    expect(first.layers.map((l) => [l.name, l.files])).toEqual([
      ['one', 4],
      ['two', 2],
    ]);
    for (const l of first.layers) {
      if (l.layer.content.kind !== 'file') throw new Error('expected a layer file');
      expect((await stat(l.layer.content.path)).size).toBe(l.layer.descriptor.size);
    }
    expect(first.uniqueLayerBytes).toBe(first.layers.reduce((n, l) => n + l.layer.descriptor.size, 0));
    const configs = first.images.reduce((n, i) => n + i.image.config.descriptor.size, 0);
    expect(first.uniqueBlobBytes).toBe(first.uniqueLayerBytes + configs);
    expect(first.images.map((i) => [i.ref, i.image.layers.length])).toEqual([
      ['bench/one:1', 1],
      ['bench/both:1', 2],
    ]);

    const second = await prepareImageSet(spec, { cacheRoot, onBuild: (dir) => builds.push(dir) });
    expect(second.cached).toBe(true);
    expect(builds).toHaveLength(1);
    expect(second.dir).toBe(first.dir);
    expect(second.images.map((i) => i.image.manifest.descriptor.digest)).toEqual(
      first.images.map((i) => i.image.manifest.descriptor.digest),
    );
    expect(second.uniqueFileContentBytes).toBe(1300);
  });

  it('builds a new set and drops the old one when a source file changes', async () => {
    const first = await prepareImageSet(spec, { cacheRoot });
    await writeFile(join(work, 'two', 'own.txt'), 'w'.repeat(300));
    const changed = await prepareImageSet(spec, { cacheRoot });
    expect(changed.cached).toBe(false);
    expect(changed.dir).not.toBe(first.dir);
    expect(changed.uniqueFileContentBytes).toBe(1400);
    expect(await readdir(cacheRoot)).toEqual([changed.dir.slice(cacheRoot.length + 1)]);
  });

  it("leaves another set's entries alone, even one whose name starts with this set's", async () => {
    const longer = await prepareImageSet(
      { ...spec, name: 'test-one', images: [spec.images[0]!] },
      { cacheRoot },
    );
    await writeFile(join(work, 'two', 'own.txt'), 'w'.repeat(300));
    const ours = await prepareImageSet(spec, { cacheRoot });
    await writeFile(join(work, 'two', 'own.txt'), 'v'.repeat(300));
    const changed = await prepareImageSet(spec, { cacheRoot });
    expect((await readdir(cacheRoot)).sort()).toEqual(
      [longer.dir, changed.dir].map((d) => d.slice(cacheRoot.length + 1)).sort(),
    );
    expect(changed.dir).not.toBe(ours.dir);
  });

  it('rebuilds a set whose build did not finish', async () => {
    const first = await prepareImageSet(spec, { cacheRoot });
    await rm(join(first.dir, 'set.json'));
    const again = await prepareImageSet(spec, { cacheRoot });
    expect(again.cached).toBe(false);
    expect(again.dir).toBe(first.dir);
    expect(again.layers.map((l) => l.layer.descriptor.digest)).toEqual(
      first.layers.map((l) => l.layer.descriptor.digest),
    );
  });
});
