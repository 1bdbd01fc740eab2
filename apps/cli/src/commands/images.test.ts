/**
 * `stevedore images`, `inspect`, `rm` and `export` as a user runs them, on a directory store
 * holding a tagged image and one kept by a digest reference (what a pull by digest leaves): no
 * Redis, registry or worker, only the store and the command as a process.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReference } from '@stevedore/oci';
import { openStore } from '@stevedore/store';
import { buildImageFromTrees, generateTree, storeFixtureImage, type FixtureImage } from '@stevedore/testing';

const CLI = fileURLToPath(new URL('../../bin/stevedore.mjs', import.meta.url));
const run = promisify(execFile);
const TIMEOUT_MS = 60_000;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let home: string;
let tagged: FixtureImage;
let pinned: FixtureImage;
let byDigest: string;

async function stevedore(args: readonly string[]): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      // No Redis (a closed port, whatever runs on the default one): export reads without a lease.
      env: {
        PATH: process.env.PATH,
        HOME: home,
        STEVEDORE_STORE: join(home, 'store'),
        STEVEDORE_REDIS_URL: 'redis://127.0.0.1:1',
      },
      timeout: TIMEOUT_MS,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

interface Row {
  reference: string;
  digest: string;
  platforms: string[];
  size: number;
  layers: number;
}

async function listed(): Promise<Row[]> {
  const result = await stevedore(['images', '--json']);
  expect([result.code, result.stderr]).toEqual([0, '']);
  return JSON.parse(result.stdout) as Row[];
}

const row = (reference: string, image: FixtureImage): Row => ({
  reference,
  digest: image.manifest.descriptor.digest,
  platforms: ['linux/amd64'],
  size: image.layerDescriptors.reduce((n, d) => n + d.size, 0),
  layers: image.layers.length,
});

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'stevedore-cli-images-'));
  tagged = await buildImageFromTrees([generateTree({ seed: 301, files: 10 })]);
  pinned = await buildImageFromTrees([generateTree({ seed: 302, files: 10 })]);
  byDigest = `registry.test/pinned@${pinned.manifest.descriptor.digest}`;
  const store = await openStore({ backend: { kind: 'directory', path: join(home, 'store') } });
  try {
    await storeFixtureImage(store, tagged, 'registry.test/app:1');
    // What a pull by digest commits: the image, and a digest reference to it.
    await storeFixtureImage(store, pinned, byDigest);
  } finally {
    await store.close();
  }
});

afterAll(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('digest references in the CLI', () => {
  it('lists, inspects, exports and removes a digest reference like a tag', async () => {
    expect(await listed()).toEqual([row('registry.test/app:1', tagged), row(byDigest, pinned)]);
    const table = await stevedore(['images']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(['REFERENCE', 'registry.test/app:1', byDigest]);
    expect(lines[2]).toContain(
      pinned.manifest.descriptor.digest.slice('sha256:'.length, 'sha256:'.length + 12),
    );

    const inspected = await stevedore(['inspect', byDigest]);
    expect(inspected.code).toBe(0);
    const doc = JSON.parse(inspected.stdout) as { reference: string; digest: string; images: unknown[] };
    expect([doc.reference, doc.digest, doc.images.length]).toEqual([
      byDigest,
      pinned.manifest.descriptor.digest,
      1,
    ]);
    const archive = join(home, 'pinned.tar');
    const exported = await stevedore(['export', byDigest, '-o', archive, '--format', 'oci']);
    expect(exported.code).toBe(0);
    expect(exported.stderr).toMatch(
      new RegExp(
        `^stevedore export: cannot reach Redis at .*; reading the store without a read lease\nExported 1 image\\(s\\), 1 layer\\(s\\) to ${archive}: `,
      ),
    );
    expect((await stat(archive)).size).toBeGreaterThan(0);

    // The tag's image has no digest reference: there is nothing by that name to remove.
    const taggedByDigest = `registry.test/app@${tagged.manifest.descriptor.digest}`;
    expect(await stevedore(['rm', taggedByDigest])).toEqual({
      code: 1,
      stdout: '',
      stderr: `Error: No such image: ${taggedByDigest}\n`,
    });

    expect(await stevedore(['rm', byDigest])).toEqual({
      code: 0,
      stdout: `Untagged: ${byDigest}\n`,
      stderr: '',
    });
    expect(await listed()).toEqual([row('registry.test/app:1', tagged)]);
    expect(await stevedore(['rm', byDigest])).toEqual({
      code: 1,
      stdout: '',
      stderr: `Error: No such image: ${byDigest}\n`,
    });

    // The content stays until garbage collection.
    const store = await openStore({ backend: { kind: 'directory', path: join(home, 'store') } });
    try {
      expect(await store.getImage(pinned.manifest.descriptor.digest)).toBeDefined();
      expect(await store.getReference(parseReference(byDigest))).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
