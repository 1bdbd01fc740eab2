/**
 * The archives as real clients read them: skopeo (docker-archive: and oci-archive: into an OCI
 * layout) and podman (load, then image inspect), for every format and layer compression. The
 * layers' diffIDs and the config digest must be the source image's. podman runs as root with the
 * vfs driver and private root, runroot and tmpdir under a temporary directory.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { digestHex, OCI_INDEX, parseImageConfig, parseManifest, type Digest } from '@stevedore/oci';
import { buildImage, buildLayer, generateTree, storeFixtureImage, type FixtureImage } from '@stevedore/testing';
import {
  planExport,
  writeArchiveFile,
  type ExportFormat,
  type LayerCompressionChoice,
} from '../src/index.ts';
import { openTestStore, type TestStore } from './support.ts';

const run = promisify(execFile);
const CLIENT_TIMEOUT_MS = 60_000;
/** Accept unsigned images: the archives are local files. */
const INSECURE_POLICY = { default: [{ type: 'insecureAcceptAnything' }] };

const APP = 'registry.test/app:1';
const TOOL = 'registry.test/tool:2';

let ts: TestStore;
let work: string;
let policy: string;
const images = new Map<string, FixtureImage>();

beforeAll(async () => {
  ts = await openTestStore();
  work = await mkdtemp(join(tmpdir(), 'stevedore-export-clients-'));
  policy = join(work, 'policy.json');
  await writeFile(policy, JSON.stringify(INSECURE_POLICY));
  const base = await buildLayer(generateTree({ seed: 21, files: 200, largeFiles: 2 }));
  const app = buildImage({
    layers: [
      base,
      await buildLayer(generateTree({ seed: 22, files: 30, root: 'app' }), { compression: 'zstd' }),
    ],
  });
  const tool = buildImage({
    layers: [base, await buildLayer(generateTree({ seed: 23, files: 20, root: 'tool' }))],
    format: 'docker',
  });
  images.set(APP, app);
  images.set(TOOL, tool);
  await storeFixtureImage(ts.store, app, APP);
  await storeFixtureImage(ts.store, tool, TOOL);
});

afterAll(async () => {
  await ts.close();
  await rm(work, { recursive: true, force: true });
});

async function exportFile(
  format: ExportFormat,
  compression: LayerCompressionChoice,
  refs: readonly string[],
): Promise<string> {
  const plan = await planExport(ts.store, { targets: refs.map((input) => ({ input })), format, compression });
  const path = join(work, `${format}-${compression}-${refs.length}.tar`);
  await writeArchiveFile(ts.store, plan, path);
  return path;
}

/** The config digest and diffIDs of the only image of an OCI layout skopeo wrote. */
async function layoutImage(dir: string): Promise<{ config: Digest; diffIDs: string[] }> {
  const blob = (d: Digest): Promise<Buffer> => readFile(join(dir, 'blobs', 'sha256', digestHex(d)));
  const index = parseManifest(await readFile(join(dir, 'index.json')), OCI_INDEX);
  if (index.kind !== 'index') throw new Error('index.json is not an index');
  const entry = index.index.manifests[0]!;
  const manifest = parseManifest(await blob(entry.digest), entry.mediaType);
  if (manifest.kind !== 'manifest') throw new Error('expected an image manifest');
  const config = manifest.manifest.config.digest;
  return { config, diffIDs: parseImageConfig(await blob(config)).rootfs.diff_ids };
}

function expected(ref: string): { config: Digest; diffIDs: string[] } {
  const image = images.get(ref)!;
  return { config: image.config.descriptor.digest, diffIDs: image.layers.map((l) => l.diffId) };
}

const COMPRESSIONS: LayerCompressionChoice[] = ['original', 'none', 'gzip', 'zstd'];

describe('skopeo', () => {
  it.each(COMPRESSIONS)('copies each image of a docker archive with %s layers', async (compression) => {
    const file = await exportFile('docker', compression, [APP, TOOL]);
    for (const ref of [APP, TOOL]) {
      const dir = join(
        work,
        `skopeo-docker-${compression}-${digestHex(images.get(ref)!.config.descriptor.digest)}`,
      );
      await run(
        'skopeo',
        ['--policy', policy, 'copy', '--quiet', `docker-archive:${file}:${ref}`, `oci:${dir}`],
        {
          timeout: CLIENT_TIMEOUT_MS,
        },
      );
      expect(await layoutImage(dir)).toEqual(expected(ref));
    }
  });

  it.each(COMPRESSIONS)(
    'copies each image of an OCI archive with %s layers, by name',
    async (compression) => {
      const file = await exportFile('oci', compression, [APP, TOOL]);
      for (const ref of [APP, TOOL]) {
        const dir = join(
          work,
          `skopeo-oci-${compression}-${digestHex(images.get(ref)!.config.descriptor.digest)}`,
        );
        await run(
          'skopeo',
          ['--policy', policy, 'copy', '--quiet', `oci-archive:${file}:${ref}`, `oci:${dir}`],
          {
            timeout: CLIENT_TIMEOUT_MS,
          },
        );
        expect(await layoutImage(dir)).toEqual(expected(ref));
      }
    },
  );
});

describe('podman', () => {
  let root: string;
  const podman = async (args: readonly string[]): Promise<string> => {
    const { stdout } = await run(
      'podman',
      [
        '--root',
        join(root, 'root'),
        '--runroot',
        join(root, 'run'),
        '--tmpdir',
        join(root, 'tmp'),
        '--storage-driver',
        'vfs',
        '--cgroup-manager',
        'cgroupfs',
        '--events-backend',
        'none',
        ...args,
      ],
      { timeout: CLIENT_TIMEOUT_MS },
    );
    return stdout;
  };
  const inspect = async (ref: string): Promise<{ config: string; diffIDs: string[]; tags: string[] }> => {
    const [image] = JSON.parse(await podman(['image', 'inspect', ref])) as {
      Id: string;
      RepoTags: string[];
      RootFS: { Layers: string[] };
    }[];
    return { config: `sha256:${image!.Id}`, diffIDs: image!.RootFS.Layers, tags: image!.RepoTags };
  };

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'stevedore-podman-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it.each(COMPRESSIONS)('loads a docker archive of two images with %s layers', async (compression) => {
    const file = await exportFile('docker', compression, [APP, TOOL]);
    const loaded = await podman(['load', '--quiet', '-i', file]);
    expect(loaded.trim().split('\n')).toEqual([`Loaded image: ${APP}`, `Loaded image: ${TOOL}`]);
    for (const ref of [APP, TOOL]) {
      expect(await inspect(ref)).toEqual({ ...expected(ref), tags: [ref] });
    }
    await podman(['rmi', '--all', '--force']);
  });

  it('loads an OCI archive of one image', async () => {
    const file = await exportFile('oci', 'zstd', [APP]);
    const loaded = await podman(['load', '--quiet', '-i', file]);
    expect(loaded.trim()).toBe(`Loaded image: ${APP}`);
    expect(await inspect(APP)).toEqual({ ...expected(APP), tags: [APP] });
    await podman(['rmi', '--all', '--force']);
  });
});
