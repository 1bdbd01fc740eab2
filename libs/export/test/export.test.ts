/**
 * Exports from a real directory store: every format and compression, shared layers, archive
 * compression, variant records, and bad input (before any byte, and mid-stream).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import {
  digestHex,
  digestOf,
  OCI_INDEX,
  OCI_MANIFEST,
  parseDigest,
  parseManifest,
  parseReference,
  type Digest,
} from '@stevedore/oci';
import { CorruptObjectError, openStore, Store } from '@stevedore/store';
import {
  buildImage,
  buildImageFromTrees,
  buildIndex,
  buildLayer,
  generateTree,
  type FixtureImage,
  type FixtureIndex,
  storeFixtureImage,
} from '@stevedore/testing';
import {
  ExportRequestError,
  expireStoredExports,
  exportId,
  exportToStore,
  findStoredExport,
  IncompleteImageError,
  listStoredExportRecords,
  openStoredExport,
  LayerVariantMismatchError,
  UnknownReferenceError,
  planExport,
  recipeOf,
  removeStoredExport,
  writeArchive,
  writeArchiveFile,
  type ExportFormat,
  type ExportRequest,
  type LayerCompressionChoice,
  type PinnedExport,
} from '../src/index.ts';
import { CopyingSink, MemorySink, openTestStore, readTar, storeIndex, type TestStore } from './support.ts';

let ts: TestStore;
let app: FixtureImage;
let tool: FixtureImage;
let multi: FixtureIndex;

beforeAll(async () => {
  const base = await buildLayer(generateTree({ seed: 11, files: 60 }));
  const a = await buildLayer(generateTree({ seed: 12, files: 20, root: 'app' }));
  const b = await buildLayer(generateTree({ seed: 13, files: 15, root: 'tool' }));
  app = buildImage({ layers: [base, a], config: { Cmd: ['/app/run'] } });
  tool = buildImage({ layers: [base, b], format: 'docker' });
  const amd64 = buildImage({ layers: [a], platform: { os: 'linux', architecture: 'amd64' } });
  const arm64 = buildImage({ layers: [b], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  multi = buildIndex({ images: [amd64, arm64] });
  ts = await openTestStore();
  await storeFixtureImage(ts.store, app, 'registry.test/app:1');
  await ts.store.setReference(parseReference('registry.test/app:latest'), app.manifest.descriptor.digest);
  await storeFixtureImage(ts.store, tool, 'registry.test/tool:2');
  await storeIndex(ts.store, multi, [amd64, arm64], 'registry.test/multi:1');
  await storeIndex(
    ts.store,
    buildIndex({
      images: [amd64, buildImage({ layers: [base], platform: { os: 'linux', architecture: 's390x' } })],
    }),
    [amd64],
    'registry.test/partial:1',
  );
  // A pull that stored its manifest and tag but never committed the image.
  const half = await buildImageFromTrees([generateTree({ seed: 14, files: 3 })]);
  await ts.store.putBlob(half.manifest.descriptor.digest, half.manifest.bytes);
  await ts.store.setReference(parseReference('registry.test/half:1'), half.manifest.descriptor.digest);
});

afterAll(async () => {
  await ts.close();
});

function sha256(bytes: Uint8Array): Digest {
  return digestOf(bytes);
}

function decompress(
  compression: LayerCompressionChoice | 'gzip' | 'zstd' | 'none',
  bytes: Buffer,
  mediaType?: string,
): Buffer {
  const kind = compression === 'original' ? (mediaType?.endsWith('zstd') ? 'zstd' : 'gzip') : compression;
  switch (kind) {
    case 'gzip':
      return gunzipSync(bytes);
    case 'zstd':
      return zstdDecompressSync(bytes);
    default:
      return bytes;
  }
}

async function exportToMemory(request: ExportRequest): Promise<{
  bytes: Buffer;
  plan: Awaited<ReturnType<typeof planExport>>;
  result: Awaited<ReturnType<typeof writeArchive>>;
}> {
  const plan = await planExport(ts.store, request);
  const sink = new MemorySink();
  const result = await writeArchive(ts.store, plan, sink);
  return { bytes: sink.bytes, plan, result };
}

const FORMATS: ExportFormat[] = ['docker', 'oci'];
const COMPRESSIONS: LayerCompressionChoice[] = ['original', 'none', 'gzip', 'zstd'];
const COMBINATIONS = FORMATS.flatMap((f) => COMPRESSIONS.map((c) => [f, c] as const));

describe.each(COMBINATIONS)('a %s archive with %s layers', (format, compression) => {
  it('is the same archive when the output borrows the rebuilt layers (lendBlocks, as for a file)', async () => {
    const request: ExportRequest = {
      targets: [{ input: 'registry.test/app:1' }, { input: 'registry.test/tool:2' }],
      format,
      compression,
    };
    const copied = await exportToMemory(request);
    const plan = await planExport(ts.store, request);
    const sink = new CopyingSink();
    let progress = 0;
    const result = await writeArchive(ts.store, plan, sink, {
      lendBlocks: true,
      onProgress: (n) => (progress = n),
    });
    expect(sink.bytes.equals(copied.bytes)).toBe(true);
    expect(result).toEqual(copied.result);
    expect(progress).toBe(copied.bytes.length);
    const blocks = ts.store.limiter.blocks;
    expect(blocks.available).toBe(blocks.count);
  });

  it('has the planned size and digest, each layer once, layers whose content is their diffID, the index last', async () => {
    const { bytes, plan, result } = await exportToMemory({
      targets: [{ input: 'registry.test/app:1' }, { input: 'registry.test/tool:2' }],
      format,
      compression,
    });
    expect(result.size).toBe(bytes.length);
    expect(plan.size).toBe(bytes.length);
    expect(result.digest).toBe(sha256(bytes));
    const members = await readTar(bytes);
    expect(members.map((m) => m.name)).toEqual(plan.members.map((m) => m.name));
    expect(new Set(members.map((m) => m.mode))).toEqual(new Set([0o644]));
    expect(new Set(members.map((m) => m.mtime))).toEqual(new Set([0]));
    expect(members.at(-1)!.name).toBe(format === 'docker' ? 'manifest.json' : 'index.json');
    const byName = new Map(members.map((m) => [m.name, m.bytes]));

    // Three distinct layers (the base is shared), written once each.
    const layers = plan.members.filter((m) => m.kind === 'layer');
    expect(layers.map((l) => l.diffID)).toEqual([
      app.layers[0]!.diffId,
      app.layers[1]!.diffId,
      tool.layers[1]!.diffId,
    ]);
    for (const layer of layers) {
      const content = byName.get(layer.name)!;
      expect(sha256(content)).toBe(layer.digest);
      expect(content.length).toBe(layer.size);
      expect(sha256(decompress(compression, content, layer.mediaType))).toBe(layer.diffID);
    }
    if (compression === 'original') {
      expect(layers.map((l) => l.digest)).toEqual([
        app.layerDescriptors[0]!.digest,
        app.layerDescriptors[1]!.digest,
        tool.layerDescriptors[1]!.digest,
      ]);
    }
    if (compression === 'none') expect(layers.map((l) => l.digest)).toEqual(layers.map((l) => l.diffID));

    const names = (l: readonly { name: string }[]): string[] => l.map((x) => x.name);
    if (format === 'docker') {
      const manifest = JSON.parse(byName.get('manifest.json')!.toString('utf8')) as unknown;
      expect(manifest).toEqual([
        {
          Config: `${digestHex(app.config.descriptor.digest)}.json`,
          RepoTags: ['registry.test/app:1'],
          Layers: names(layers.slice(0, 2)),
        },
        {
          Config: `${digestHex(tool.config.descriptor.digest)}.json`,
          RepoTags: ['registry.test/tool:2'],
          Layers: names([layers[0]!, layers[2]!]),
        },
      ]);
      expect(byName.get(`${digestHex(app.config.descriptor.digest)}.json`)!.equals(app.config.bytes)).toBe(
        true,
      );
    } else {
      expect(JSON.parse(byName.get('oci-layout')!.toString('utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
      const index = JSON.parse(byName.get('index.json')!.toString('utf8')) as {
        mediaType: string;
        manifests: { mediaType: string; digest: Digest; size: number; annotations: Record<string, string> }[];
      };
      expect(index.mediaType).toBe(OCI_INDEX);
      expect(index.manifests.map((m) => m.annotations)).toEqual(
        ['registry.test/app:1', 'registry.test/tool:2'].map((name) => ({
          'io.containerd.image.name': name,
          'org.opencontainers.image.ref.name': name,
        })),
      );
      const expectedLayers = [layers.slice(0, 2), [layers[0]!, layers[2]!]];
      for (const [i, entry] of index.manifests.entries()) {
        const image = [app, tool][i]!;
        const blob = byName.get(`blobs/sha256/${digestHex(entry.digest)}`)!;
        expect(sha256(blob)).toBe(entry.digest);
        expect(blob.length).toBe(entry.size);
        if (compression === 'original' && image.format === 'oci') {
          // The stored manifest, byte for byte.
          expect(entry.digest).toBe(image.manifest.descriptor.digest);
        }
        // Otherwise a new OCI manifest (of the original blobs, for Docker images): checked below.
        expect(entry.mediaType).toBe(OCI_MANIFEST);
        const parsed = parseManifest(blob);
        if (parsed.kind !== 'manifest') throw new Error('expected a manifest');
        expect(parsed.manifest.config.digest).toBe(image.config.descriptor.digest);
        expect(parsed.manifest.layers.map((l) => [l.digest, l.size])).toEqual(
          expectedLayers[i]!.map((l) => [l.digest, l.size]),
        );
        expect(
          byName.get(`blobs/sha256/${digestHex(image.config.descriptor.digest)}`)!.equals(image.config.bytes),
        ).toBe(true);
      }
    }
  });
});

describe('names and platforms', () => {
  it('lists an image once in manifest.json with every tag, and once per name in index.json', async () => {
    const targets = [{ input: 'registry.test/app:1' }, { input: 'registry.test/app:latest' }];
    const docker = await readTar(
      (await exportToMemory({ targets, format: 'docker', compression: 'none' })).bytes,
    );
    const manifest = JSON.parse(docker.at(-1)!.bytes.toString('utf8')) as { RepoTags: string[] }[];
    expect(manifest.map((m) => m.RepoTags)).toEqual([['registry.test/app:1', 'registry.test/app:latest']]);
    const oci = await readTar(
      (await exportToMemory({ targets, format: 'oci', compression: 'original' })).bytes,
    );
    const index = JSON.parse(oci.at(-1)!.bytes.toString('utf8')) as {
      manifests: { digest: string; annotations: Record<string, string> }[];
    };
    expect(
      index.manifests.map((m) => [m.digest, m.annotations['org.opencontainers.image.ref.name']]),
    ).toEqual([
      [app.manifest.descriptor.digest, 'registry.test/app:1'],
      [app.manifest.descriptor.digest, 'registry.test/app:latest'],
    ]);
  });

  it('writes a multi-platform image as its stored index when every platform is stored', async () => {
    const { bytes, plan } = await exportToMemory({
      targets: [{ input: 'registry.test/multi:1' }],
      format: 'oci',
      compression: 'original',
    });
    expect(plan.images.map((i) => i.platform)).toEqual(['linux/amd64', 'linux/arm64/v8']);
    const members = await readTar(bytes);
    const index = JSON.parse(members.at(-1)!.bytes.toString('utf8')) as {
      manifests: { digest: string; mediaType: string }[];
    };
    expect(index.manifests.map((m) => [m.mediaType, m.digest])).toEqual([
      [OCI_INDEX, multi.manifest.descriptor.digest],
    ]);
    expect(
      members
        .find((m) => m.name === `blobs/sha256/${digestHex(multi.manifest.descriptor.digest)}`)!
        .bytes.equals(multi.manifest.bytes),
    ).toBe(true);
  });

  it('writes a new index of the stored platforms when the layers are recompressed', async () => {
    const { bytes, plan } = await exportToMemory({
      targets: [{ input: 'registry.test/multi:1' }],
      format: 'oci',
      compression: 'zstd',
    });
    const members = await readTar(bytes);
    const entry = (JSON.parse(members.at(-1)!.bytes.toString('utf8')) as { manifests: { digest: Digest }[] })
      .manifests[0]!;
    const index = parseManifest(
      members.find((m) => m.name === `blobs/sha256/${digestHex(entry.digest)}`)!.bytes,
    );
    if (index.kind !== 'index') throw new Error('expected an index');
    expect(index.index.manifests.map((m) => [m.digest, m.platform])).toEqual(
      plan.images.map((i, n) => [i.manifestDigest, multi.images[n]!.platform]),
    );
  });

  it('exports the only stored platform of a partly pulled index as that image', async () => {
    const { plan } = await exportToMemory({
      targets: [{ input: 'registry.test/partial:1' }],
      format: 'docker',
      compression: 'none',
    });
    expect(plan.images.map((i) => [i.sourceManifestDigest, i.platform])).toEqual([
      [multi.images[0]!.manifest.descriptor.digest, 'linux/amd64'],
    ]);
  });

  it('picks one platform of a multi-platform image for a docker archive', async () => {
    const plan = await planExport(ts.store, {
      targets: [{ input: 'registry.test/multi:1' }],
      format: 'docker',
      compression: 'none',
      platform: { os: 'linux', architecture: 'arm64' },
    });
    expect(plan.images.map((i) => i.platform)).toEqual(['linux/arm64/v8']);
  });

  it('exports by digest, with no tag', async () => {
    const digest = app.manifest.descriptor.digest;
    const { bytes } = await exportToMemory({
      targets: [{ input: digest }],
      format: 'docker',
      compression: 'none',
    });
    const manifest = JSON.parse((await readTar(bytes)).at(-1)!.bytes.toString('utf8')) as {
      RepoTags: string[];
    }[];
    expect(manifest.map((m) => m.RepoTags)).toEqual([[]]);
  });
});

describe('archive compression', () => {
  it.each(['gzip', 'zstd'] as const)(
    'a %s archive is the plain archive compressed, of unknown size in advance',
    async (archiveCompression) => {
      const request = {
        targets: [{ input: 'registry.test/app:1' }],
        format: 'oci' as const,
        compression: 'none' as const,
      };
      const plain = await exportToMemory(request);
      const packed = await exportToMemory({ ...request, archiveCompression });
      expect(packed.plan.size).toBeUndefined();
      expect(packed.plan.contentType).toBe(`application/x-tar+${archiveCompression}`);
      expect(packed.result.digest).toBe(sha256(packed.bytes));
      expect(packed.result.tarSize).toBe(plain.bytes.length);
      expect(decompress(archiveCompression, packed.bytes).equals(plain.bytes)).toBe(true);
    },
  );
});

describe('layer variants', () => {
  it('computes and records a recompressed layer the first time only; the archive is the same', async () => {
    const fresh = await openTestStore();
    try {
      await storeFixtureImage(fresh.store, app, 'registry.test/app:1');
      const request: ExportRequest = {
        targets: [{ input: 'registry.test/app:1' }],
        format: 'oci',
        compression: 'gzip',
      };
      const first = await planExport(fresh.store, request);
      expect(first.variantsComputed).toBe(2);
      const sink1 = new MemorySink();
      const r1 = await writeArchive(fresh.store, first, sink1);
      const second = await planExport(fresh.store, request);
      expect(second.variantsComputed).toBe(0);
      const sink2 = new MemorySink();
      const r2 = await writeArchive(fresh.store, second, sink2);
      expect(r2.digest).toBe(r1.digest);
      for (const layer of r1.layers) {
        const record = await fresh.store.getLayerVariant(layer.diffID, recipeOf('gzip'));
        expect([record?.digest, record?.size]).toEqual([layer.digest, layer.size]);
      }
    } finally {
      await fresh.close();
    }
  });
});

describe('bad input before any byte', () => {
  it.each<[string, ExportRequest, Error]>([
    [
      'an unknown reference',
      { targets: [{ input: 'registry.test/nope:1' }], format: 'docker', compression: 'none' },
      new UnknownReferenceError('registry.test/nope:1'),
    ],
    [
      'an unknown digest',
      { targets: [{ input: `sha256:${'0'.repeat(64)}` }], format: 'oci', compression: 'none' },
      new UnknownReferenceError(`sha256:${'0'.repeat(64)}`),
    ],
    [
      'an invalid reference',
      { targets: [{ input: 'Not A Ref' }], format: 'oci', compression: 'none' },
      new ExportRequestError('invalid reference "Not A Ref": repository must be lowercase'),
    ],
    [
      'no reference',
      { targets: [], format: 'oci', compression: 'none' },
      new ExportRequestError('nothing to export: no reference given'),
    ],
    [
      'several platforms in a docker archive',
      {
        targets: [{ input: 'registry.test/multi:1' }],
        format: 'docker',
        compression: 'none',
        platform: 'all',
      },
      new ExportRequestError(
        '"registry.test/multi:1" has 2 platform images (linux/amd64, linux/arm64/v8): a docker archive holds one image per tag; choose one with a platform, or export the OCI format',
      ),
    ],
    [
      'a platform that is not stored',
      {
        targets: [{ input: 'registry.test/multi:1' }],
        format: 'oci',
        compression: 'none',
        platform: { os: 'linux', architecture: 's390x' },
      },
      new ExportRequestError(
        '"registry.test/multi:1" has no image for platform linux/s390x in the store (stored: linux/amd64, linux/arm64/v8)',
      ),
    ],
  ])('%s', async (_name, request, error) => {
    await expect(planExport(ts.store, request)).rejects.toThrow(error);
  });

  it('an image that is not fully committed', async () => {
    const digest = (await ts.store.getReference(parseReference('registry.test/half:1')))!.digest;
    await expect(
      planExport(ts.store, {
        targets: [{ input: 'registry.test/half:1' }],
        format: 'oci',
        compression: 'none',
      }),
    ).rejects.toThrow(
      new IncompleteImageError(
        `image ${digest} ("registry.test/half:1") is not fully committed: no image record yet (a pull still running, or one that failed)`,
      ),
    );
  });

  it('original layers from a store that drops them', async () => {
    const drop = await openTestStore('drop');
    try {
      await storeFixtureImage(drop.store, tool, 'registry.test/tool:2');
      const request: ExportRequest = {
        targets: [{ input: 'registry.test/tool:2' }],
        format: 'docker',
        compression: 'original',
      };
      await expect(planExport(drop.store, request)).rejects.toThrow(
        new ExportRequestError(
          'compression "original" needs the original layer blobs, but this store drops them (blob policy drop): export with compression gzip, zstd or none',
        ),
      );
      // The same store opened with another policy still has no blobs to give.
      const keep = new Store(drop.store.backend, { blobPolicy: 'keep' });
      await expect(planExport(keep, request)).rejects.toThrow(
        new ExportRequestError(
          `image ${tool.manifest.descriptor.digest} ("registry.test/tool:2"): the original blob ${tool.layerDescriptors[0]!.digest} of layer ${tool.layers[0]!.diffId} is not in the store (a store with blob policy drop keeps none): export with compression gzip, zstd or none`,
        ),
      );
      // Recompressed, it exports.
      const plan = await planExport(drop.store, { ...request, compression: 'gzip' });
      expect(plan.images.length).toBe(1);
    } finally {
      await drop.close();
    }
  });
});

describe('failures mid-stream', () => {
  async function damagedStore(): Promise<TestStore> {
    const t = await openTestStore();
    await storeFixtureImage(t.store, app, 'registry.test/app:1');
    return t;
  }

  it('a layer that does not compress to its variant record fails the export naming the layer; no file is left', async () => {
    const t = await damagedStore();
    try {
      const diffID = app.layers[1]!.diffId;
      const recipe = recipeOf('zstd');
      const plan0 = await planExport(t.store, {
        targets: [{ input: 'registry.test/app:1' }],
        format: 'docker',
        compression: 'zstd',
      });
      const real = plan0.members.find((m) => m.kind === 'layer' && m.diffID === diffID)!;
      const wrong = parseDigest(`sha256:${'e'.repeat(64)}`);
      await t.store.putLayerVariant({
        ...recipe,
        diffID,
        digest: wrong,
        size: real.kind === 'layer' ? real.size : 0,
      });
      const plan = await planExport(t.store, {
        targets: [{ input: 'registry.test/app:1' }],
        format: 'docker',
        compression: 'zstd',
      });
      const target = join(t.dir, 'app.tar');
      await expect(writeArchiveFile(t.store, plan, target)).rejects.toThrow(
        new LayerVariantMismatchError(
          `layer ${diffID}: zstd level 3 (${recipe.codec}) gave ${real.kind === 'layer' ? real.digest : ''} (${real.kind === 'layer' ? real.size : 0} bytes), but its variant record says ${wrong} (${real.kind === 'layer' ? real.size : 0} bytes)`,
        ),
      );
      expect(existsSync(target)).toBe(false);
      expect((await readdir(t.dir)).sort()).toEqual(['store']);
    } finally {
      await t.close();
    }
  });

  /** Flips bytes in the middle of every pack: some object no longer hashes to its key. */
  async function corruptPacks(t: TestStore): Promise<void> {
    const packs = join(t.dir, 'store', 'packs');
    for (const name of await readdir(packs)) {
      const path = join(packs, name);
      const bytes = await readFile(path);
      for (let i = 0; i < 64; i++) bytes[Math.floor(bytes.length / 2) + i]! ^= 0xff;
      await writeFile(path, bytes);
    }
  }

  it.each([
    ['copied to it', 'oci', () => new MemorySink(), false],
    ['lent to it (lendBlocks)', 'docker', () => new CopyingSink(), true],
  ] as const)(
    'a corrupt object destroys the output instead of ending it: layers %s; every block goes back',
    async (_how, format, makeSink, lendBlocks) => {
      const t = await damagedStore();
      try {
        const plan = await planExport(t.store, {
          targets: [{ input: 'registry.test/app:1' }],
          format,
          compression: 'none',
        });
        await corruptPacks(t);
        const sink = makeSink();
        const failed: unknown = await writeArchive(t.store, plan, sink, { lendBlocks }).catch(
          (e: unknown) => e,
        );
        expect(failed).toBeInstanceOf(Error);
        const chain: unknown[] = [];
        for (let e: unknown = failed; e instanceof Error; e = e.cause) chain.push(e);
        expect(chain.some((e) => e instanceof CorruptObjectError)).toBe(true);
        expect(sink.destroyed).toBe(true);
        expect(sink.writableFinished).toBe(false);
        expect(sink.bytes.length).toBeLessThan(plan.size!);
        const blocks = t.store.limiter.blocks;
        expect(blocks.available).toBe(blocks.count);
      } finally {
        await t.close();
      }
    },
  );

  it.each([
    // Recompressed layers, prepared ahead; aborted at the first progress.
    ['oci', 'gzip', 1],
    // Lent layers; aborted past the first layer's first block.
    ['docker', 'none', 4],
  ] as const)(
    'an abort stops a %s export of %s layers with the caller’s reason; no file is left, every block goes back',
    async (format, compression, abortAt) => {
      const t = await damagedStore();
      try {
        const plan = await planExport(t.store, {
          targets: [{ input: 'registry.test/app:1' }],
          format,
          compression,
        });
        const controller = new AbortController();
        const reason = new Error('stop: operator request');
        const target = join(t.dir, 'out.tar');
        let calls = 0;
        await expect(
          writeArchiveFile(t.store, plan, target, {
            signal: controller.signal,
            onProgress: () => (++calls === abortAt ? controller.abort(reason) : undefined),
          }),
        ).rejects.toThrow(reason);
        expect((await readdir(t.dir)).sort()).toEqual(['store']);
        const blocks = t.store.limiter.blocks;
        expect(blocks.available).toBe(blocks.count);
      } finally {
        await t.close();
      }
    },
  );
});

describe('exports into the store (export jobs)', () => {
  async function s3Store(): Promise<{ store: Store; close(): Promise<void> }> {
    const s3 = inject('stack').s3;
    const store = await openStore({
      backend: {
        kind: 's3',
        bucket: s3.bucket,
        prefix: `export-test-${randomUUID()}`,
        endpoint: s3.endpoint,
        region: s3.region,
        forcePathStyle: s3.forcePathStyle,
        credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      },
    });
    return { store, close: () => store.close() };
  }

  /** Runs `use` on a fresh store of `kind` holding registry.test/app:1, then closes the store. */
  async function withAppStore(kind: 'directory' | 's3', use: (store: Store) => Promise<void>): Promise<void> {
    const target = kind === 'directory' ? await openTestStore() : await s3Store();
    try {
      await storeFixtureImage(target.store, app, 'registry.test/app:1');
      await use(target.store);
    } finally {
      await target.close();
    }
  }

  it.each(['directory', 's3'] as const)(
    'writes the archive and then its record on %s, once; reads it back verified',
    async (kind) =>
      withAppStore(kind, async (store) => {
        const spec: PinnedExport = {
          refs: ['registry.test/app:1'],
          digests: [app.manifest.descriptor.digest],
          format: 'oci',
          compression: 'zstd',
          archiveCompression: 'gzip',
        };
        const id = exportId(spec);
        expect(id).toMatch(/^export-[0-9a-f]{16}$/);
        expect(exportId({ ...spec, compression: 'gzip' })).not.toBe(id);
        expect(await findStoredExport(store, id)).toBeUndefined();
        const first = await exportToStore(store, id, spec);
        expect(first).toMatchObject({
          id,
          key: `exports/${id}.tar.gz`,
          contentType: 'application/x-tar+gzip',
          refs: spec.refs,
          digests: spec.digests,
          written: true,
        });
        const again = await exportToStore(store, id, spec);
        expect(again).toEqual({ ...first, written: false });
        const { written: _written, ...record } = first;
        expect(await findStoredExport(store, id)).toEqual(record);

        const chunks: Buffer[] = [];
        for await (const chunk of await openStoredExport(store, record)) chunks.push(chunk as Buffer);
        const stored = Buffer.concat(chunks);
        expect(sha256(stored)).toBe(record.digest);
        expect(stored.length).toBe(record.size);
        // The same export streamed directly is the same bytes.
        const plan = await planExport(store, {
          targets: [{ input: 'registry.test/app:1' }],
          format: 'oci',
          compression: 'zstd',
          archiveCompression: 'gzip',
        });
        const sink = new MemorySink();
        await writeArchive(store, plan, sink);
        expect(sink.bytes.equals(stored)).toBe(true);
      }),
  );

  it.each(['directory', 's3'] as const)(
    'deletes stored exports on %s: record first, by age, and a deleted export is written again',
    async (kind) =>
      withAppStore(kind, async (store) => {
        const pinned = (format: ExportFormat): PinnedExport => ({
          refs: ['registry.test/app:1'],
          digests: [app.manifest.descriptor.digest],
          format,
          compression: 'none',
          archiveCompression: 'none',
        });
        const docker = await exportToStore(store, exportId(pinned('docker')), pinned('docker'));
        const oci = await exportToStore(store, exportId(pinned('oci')), pinned('oci'));
        // An export job that died between its archive and its record, and a key that is not an export's.
        const stray = 'exports/export-00000000000000ff.tar.zst';
        await store.backend.put(stray, Buffer.alloc(1000, 1));
        await store.backend.put('exports/notes.txt', Buffer.from('kept\n'));
        const keys = async (): Promise<string[]> =>
          (await store.backend.list('exports/')).objects.map((o) => o.key).sort();
        const DAY = 86_400_000;

        // Listed newest first, with their records; the stray archive has none and is not listed.
        expect((await listStoredExportRecords(store)).map((r) => r.id)).toEqual([oci.id, docker.id]);

        // Young: nothing goes.
        const young = await expireStoredExports(store, { olderThanMs: 7 * DAY, incompleteOlderThanMs: DAY });
        expect(young).toEqual({
          expired: { count: 0, bytes: 0 },
          incomplete: { count: 0, bytes: 0 },
          kept: 2,
        });
        expect(await keys()).toHaveLength(6);

        // Deleting one by id: its record and archive go, nothing else; a second delete finds nothing.
        const removed = await removeStoredExport(store, docker.id);
        expect(removed.count).toBe(1);
        expect(removed.bytes).toBeGreaterThan(docker.size);
        expect(await findStoredExport(store, docker.id)).toBeUndefined();
        expect(await removeStoredExport(store, docker.id)).toEqual({ count: 0, bytes: 0 });
        expect(await keys()).toEqual(
          [`exports/${oci.id}.json`, `exports/${oci.id}.tar`, 'exports/notes.txt', stray].sort(),
        );

        // Eight days on: the OCI export has expired, the stray archive too; other keys stay.
        const later = await expireStoredExports(store, {
          olderThanMs: 7 * DAY,
          incompleteOlderThanMs: DAY,
          now: Date.now() + 8 * DAY,
        });
        expect(later.expired.count).toBe(1);
        expect(later.expired.bytes).toBeGreaterThan(oci.size);
        expect(later.incomplete).toEqual({ count: 1, bytes: 1000 });
        expect(later.kept).toBe(0);
        expect(await keys()).toEqual(['exports/notes.txt']);

        // Requested again, an expired export is written again, to the same bytes.
        const again = await exportToStore(store, oci.id, pinned('oci'));
        expect(again.written).toBe(true);
        expect(again.digest).toBe(oci.digest);
        // A record whose archive is gone is no export: the job writes it again.
        await store.backend.delete(again.key);
        const healed = await exportToStore(store, oci.id, pinned('oci'));
        expect(healed.written).toBe(true);
        expect((await store.backend.head(again.key))?.size).toBe(oci.size);
      }),
  );

  it('a stored archive that does not match its record fails at its end', async () => {
    const t = await openTestStore();
    try {
      await storeFixtureImage(t.store, app, 'registry.test/app:1');
      const spec: PinnedExport = {
        refs: ['registry.test/app:1'],
        digests: [app.manifest.descriptor.digest],
        format: 'docker',
        compression: 'none',
        archiveCompression: 'none',
      };
      const record = await exportToStore(t.store, exportId(spec), spec);
      const path = join(t.dir, 'store', record.key);
      const bytes = await readFile(path);
      bytes[1000]! ^= 0xff;
      await writeFile(path, bytes);
      const read = async (): Promise<void> => {
        for await (const _chunk of await openStoredExport(t.store, record)) {
          // Read to the end, where the digest is checked.
        }
      };
      await expect(read()).rejects.toThrow(CorruptObjectError);
    } finally {
      await t.close();
    }
  });
});
