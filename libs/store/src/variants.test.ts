import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { parseDiffID, parseDigest } from '@stevedore/oci/spec';
import { InvalidFormatError, MissingDependencyError } from './errors.ts';
import { openStore } from './store.ts';
import { decodeLayerVariantRecord, layerVariantKey, recipeName, type VariantRecipe } from './variants.ts';

const DIFF_ID = parseDiffID(`sha256:${'a'.repeat(64)}`);
const DIGEST = parseDigest(`sha256:${'b'.repeat(64)}`);
const GZIP: VariantRecipe = { compression: 'gzip', level: 6, codec: 'zlib 1.3.2.1-motley-8002e91' };

describe('variant keys', () => {
  it.each<[VariantRecipe, string]>([
    [GZIP, 'gzip-6-zlib_1.3.2.1-motley-8002e91'],
    [{ compression: 'zstd', level: 3, codec: 'zstd 1.5.7' }, 'zstd-3-zstd_1.5.7'],
    [{ compression: 'zstd', level: 19, codec: 'zstd/1.5+x' }, 'zstd-19-zstd_1.5_x'],
  ])('%j is named %s', (recipe, name) => {
    expect(recipeName(recipe)).toBe(name);
    expect(layerVariantKey(DIFF_ID, recipe)).toBe(`layer-variants/sha256/${'a'.repeat(64)}/${name}.json`);
  });
});

describe('decodeLayerVariantRecord', () => {
  const good = {
    schemaVersion: 1,
    diffID: DIFF_ID,
    compression: 'gzip',
    level: 6,
    codec: GZIP.codec,
    digest: DIGEST,
    size: 1234,
    createdAt: '2024-01-01T00:00:00.000Z',
  };
  const bytes = (o: unknown): Buffer => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o));

  it('decodes a record', () => {
    expect(decodeLayerVariantRecord(bytes(good), 'k')).toEqual(good);
  });

  it.each<[string, unknown, string]>([
    ['bad JSON', '{', 'record k: invalid JSON'],
    ['an array', [], 'record k: record must be an object'],
    ['another version', { ...good, schemaVersion: 2 }, 'record k: unsupported schemaVersion 2'],
    ['an unknown codec', { ...good, compression: 'xz' }, 'record k: unknown compression "xz"'],
    [
      'a bad digest',
      { ...good, digest: 'sha256:x' },
      'record k: digest: invalid digest "sha256:x": sha256 needs 64 hex characters, got 1',
    ],
    ['a negative size', { ...good, size: -1 }, 'record k: size must be a non-negative integer'],
    ['no codec', { ...good, codec: undefined }, 'record k: codec must be a string'],
  ])('refuses %s', (_name, input, message) => {
    expect(() => decodeLayerVariantRecord(bytes(input), 'k')).toThrow(new InvalidFormatError(message));
  });
});

describe('Store layer variants', () => {
  it('records a variant of a stored layer and finds it by recipe only', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'stevedore-variants-'));
    try {
      const store = await openStore({ backend: { kind: 'directory', path: dir } });
      // The smallest valid tar: the end-of-archive marker.
      const { diffID } = await store.importLayer(Readable.from([Buffer.alloc(1024)]));
      await expect(
        store.putLayerVariant({ ...GZIP, diffID: DIFF_ID, digest: DIGEST, size: 1 }),
      ).rejects.toThrow(
        new MissingDependencyError(`cannot record a gzip variant: layer ${DIFF_ID} is not in the store`),
      );
      const written = await store.putLayerVariant({ ...GZIP, diffID, digest: DIGEST, size: 42 });
      expect(await store.getLayerVariant(diffID, GZIP)).toEqual(written);
      expect(written).toMatchObject({ diffID, digest: DIGEST, size: 42, compression: 'gzip', level: 6 });
      expect(await store.getLayerVariant(diffID, { ...GZIP, level: 9 })).toBeUndefined();
      expect(await store.getLayerVariant(diffID, { ...GZIP, codec: 'zlib 1.3.1' })).toBeUndefined();
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
