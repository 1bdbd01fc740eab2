/**
 * `stevedore export` as a user runs it, against a store filled by a real pull (Redis, a worker
 * process, the stack's registry): files and stdout, suffixes, errors and exit codes, and the round
 * trip: export, push the archive's image to the registry with skopeo, pull it back through
 * stevedore, and find the same diffIDs.
 */
import { execFile, spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { digestOf, RegistryClient, parseReference } from '@stevedore/oci';
import {
  buildImageFromTrees,
  generateTree,
  pushImage,
  startRedis,
  startWorkerProcess,
  type FixtureImage,
  type RedisServer,
  type WorkerProcess,
} from '@stevedore/testing';

const CLI = fileURLToPath(new URL('../main.ts', import.meta.url));
const run = promisify(execFile);
const TIMEOUT_MS = 90_000;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

let home: string;
let env: NodeJS.ProcessEnv;
let redis: RedisServer;
let worker: WorkerProcess;
let image: FixtureImage;
let ref: string;
let policy: string;

async function stevedore(args: readonly string[], extra: NodeJS.ProcessEnv = {}): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], {
      env: { ...env, ...extra },
      timeout: TIMEOUT_MS,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** The diffIDs `stevedore inspect` shows for a reference's only image. */
async function storedDiffIDs(reference: string): Promise<string[]> {
  const inspected = await stevedore(['inspect', reference]);
  expect(inspected.code).toBe(0);
  const doc = JSON.parse(inspected.stdout) as { images: { layers: { diffID: string }[] }[] };
  return doc.images[0]!.layers.map((l) => l.diffID);
}

beforeAll(async () => {
  const registry = inject('stack').registry;
  home = await mkdtemp(join(tmpdir(), 'stevedore-cli-export-'));
  policy = join(home, 'policy.json');
  await writeFile(policy, JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  redis = await startRedis();
  env = {
    PATH: process.env.PATH,
    HOME: home,
    STEVEDORE_REDIS_URL: redis.url,
    STEVEDORE_STORE: join(home, 'store'),
  };
  worker = await startWorkerProcess({
    role: 'all',
    env: { STEVEDORE_REDIS_URL: redis.url, STEVEDORE_STORE: join(home, 'store') },
    name: 'export-cli-worker',
  });
  image = await buildImageFromTrees([
    generateTree({ seed: 31, files: 120, largeFiles: 1 }),
    generateTree({ seed: 32, files: 15, root: 'srv' }),
  ]);
  ref = `${registry.host}/export/src:1`;
  await pushImage(new RegistryClient(), parseReference(ref), image);
  const pulled = await stevedore(['pull', ref, '--wait']);
  expect(pulled.code, pulled.stderr).toBe(0);
});

afterAll(async () => {
  await worker.stop();
  await redis.stop();
  await rm(home, { recursive: true, force: true });
});

describe('stevedore export', () => {
  it('round trip: export, skopeo push to the registry, pull back: the same diffIDs', async () => {
    const file = join(home, 'src.tar');
    const result = await stevedore(['export', ref, '-o', file]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(
      new RegExp(
        `^Exported 1 image\\(s\\), 2 layer\\(s\\) to ${file}: [0-9.]+ MB, sha256:[0-9a-f]{64}, [0-9.]+ s\\n$`,
      ),
    );
    const copy = `${inject('stack').registry.host}/export/copy:1`;
    await run(
      'skopeo',
      [
        '--policy',
        policy,
        'copy',
        '--quiet',
        '--dest-tls-verify=false',
        `docker-archive:${file}`,
        `docker://${copy}`,
      ],
      { timeout: TIMEOUT_MS },
    );
    const back = await stevedore(['pull', copy, '--wait']);
    expect(back.code, back.stderr).toBe(0);
    const diffIDs = image.layers.map((l) => l.diffId);
    expect(await storedDiffIDs(copy)).toEqual(diffIDs);
    expect(await storedDiffIDs(ref)).toEqual(diffIDs);
  });

  it('writes the same bytes to stdout as to a file, and names the digest', async () => {
    const file = join(home, 'same.tar');
    const toFile = await stevedore(['export', ref, '-o', file, '--compression', 'zstd', '--format', 'oci']);
    expect(toFile.code, toFile.stderr).toBe(0);
    const bytes = await readFile(file);
    const piped = join(home, 'piped.tar');
    const child = spawn(
      process.execPath,
      [CLI, 'export', ref, '-o', '-', '--compression', 'zstd', '--format', 'oci'],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const out = createWriteStream(piped);
    child.stdout.pipe(out);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, stderr).toBe(0);
    const streamed = await readFile(piped);
    expect(streamed.equals(bytes)).toBe(true);
    expect(stderr).toContain(`to stdout: `);
    expect(stderr).toContain(digestOf(bytes));
    expect(toFile.stderr).toContain(digestOf(bytes));
  });

  it('compresses the whole archive as the file suffix asks', async () => {
    const file = join(home, 'src.tar.zst');
    const result = await stevedore(['export', ref, '-o', file, '--compression', 'none']);
    expect(result.code, result.stderr).toBe(0);
    // The zstd frame magic (RFC 8878).
    expect((await readFile(file)).readUInt32LE(0)).toBe(0xfd2fb528);
  });

  it.each<[string, string[], NodeJS.ProcessEnv, Result]>([
    [
      'an unknown reference',
      ['export', 'registry.test/none:1', '-o', 'OUT'],
      {},
      { code: 1, stdout: '', stderr: 'Error: No such image: registry.test/none:1\n' },
    ],
    [
      'original layers from a drop store',
      ['export', 'REF', '-o', 'OUT', '--compression', 'original'],
      { STEVEDORE_BLOB_POLICY: 'drop' },
      {
        code: 1,
        stdout: '',
        stderr:
          'stevedore: compression "original" needs the original layer blobs, but this store drops them (blob policy drop): export with compression gzip, zstd or none\n',
      },
    ],
  ])('fails on %s with exit code 1, leaving no file', async (_name, args, extra, expected) => {
    const file = join(home, 'failed', 'out.tar');
    await rm(join(home, 'failed'), { recursive: true, force: true });
    await mkdir(join(home, 'failed'));
    const result = await stevedore(
      args.map((a) => (a === 'OUT' ? file : a === 'REF' ? ref : a)),
      extra,
    );
    expect(result).toEqual(expected);
    expect(await readdir(join(home, 'failed'))).toEqual([]);
  });

  it.each<[string, string[], string]>([
    ['no -o', ['export', 'x:1'], 'stevedore export: missing -o FILE (or -o - for stdout)\n'],
    ['no reference', ['export', '-o', 'x.tar'], 'stevedore export: expected at least one image reference\n'],
    [
      'a bad format',
      ['export', 'x:1', '-o', 'x.tar', '--format', 'zip'],
      'stevedore export: invalid format "zip": expected docker, oci\n',
    ],
    [
      'a bad platform',
      ['export', 'x:1', '-o', 'x.tar', '--platform', 'linux'],
      'stevedore export: invalid platform "linux": expected os/architecture[/variant]\n',
    ],
  ])('refuses %s with exit code 2 and the usage', async (_name, args, message) => {
    const result = await stevedore(args);
    expect(result.code).toBe(2);
    expect(result.stderr.startsWith(`${message}usage: stevedore export REF... -o FILE|-`)).toBe(true);
  });

  it('has --help', async () => {
    const result = await stevedore(['export', '--help']);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^usage: stevedore export REF\.\.\. -o FILE\|- \[--format docker\|oci\]/);
    expect((await stevedore(['--help'])).stdout).toContain(
      'export REF...   write images as a docker or OCI archive (-o FILE, or -o - for stdout)\n',
    );
  });
});
