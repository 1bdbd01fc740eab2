/**
 * What a command loads. The store commands (images, inspect, rm, export) start without the queue,
 * registry and S3 clients when the store is a directory: each costs tens of milliseconds and tens
 * of MiB of RSS per process (main.ts loads commands lazily; the store and the export use
 * @stevedore/oci/spec and @stevedore/pipeline/store-config; the store loads its S3 backend only
 * for an S3 store). Export loads the Redis client (ioredis, about 40 ms and 20 MiB): it takes a read
 * lease that a garbage collection waits for (@stevedore/pipeline/store-readers). Checked by
 * recording, with a module resolve hook, every package a process resolves.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const CLI = fileURLToPath(new URL('../bin/stevedore.mjs', import.meta.url));
const run = promisify(execFile);

/** Packages a store command must not load. */
const HEAVY = ['bullmq', 'ioredis', 'undici', '@aws-sdk/client-s3'];

/** Preloaded with --import: records the package of every resolved file under node_modules. */
const HOOK = `
import { registerHooks } from 'node:module';
const loaded = new Set();
registerHooks({
  resolve(specifier, context, next) {
    const result = next(specifier, context);
    const m = /\\/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(result.url);
    if (m !== null) loaded.add(m[1]);
    return result;
  },
});
process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify([...loaded]) + '\\n'));
`;

function loadedPackages(stderr: string): string[] {
  const line = stderr.split('\n').find((l) => l.startsWith('LOADED '));
  if (line === undefined) throw new Error(`no LOADED line in: ${stderr}`);
  return JSON.parse(line.slice('LOADED '.length)) as string[];
}

describe('what a command loads', () => {
  let dir: string;
  let hook: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'stevedore-startup-'));
    hook = join(dir, 'hook.mjs');
    await writeFile(hook, HOOK);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('sees what a process loads (the check can fail): @stevedore/oci loads undici', async () => {
    const { stderr } = await run(process.execPath, [
      '--import',
      pathToFileURL(hook).href,
      '--input-type=module',
      '-e',
      "await import('@stevedore/oci');",
    ]);
    expect(loadedPackages(stderr)).toContain('undici');
  });

  it('lists and exports from a directory store without the queue, registry or S3 clients', async () => {
    const env = {
      ...process.env,
      STEVEDORE_STORE: join(dir, 'store'),
      STEVEDORE_REDIS_URL: 'redis://127.0.0.1:1',
    };
    const images = await run(process.execPath, ['--import', pathToFileURL(hook).href, CLI, 'images'], {
      env,
    });
    const loaded = loadedPackages(images.stderr);
    for (const name of HEAVY) expect(loaded).not.toContain(name);

    // An export of an image that is not there fails after opening the store and resolving it.
    const exported = await run(
      process.execPath,
      [
        '--import',
        pathToFileURL(hook).href,
        CLI,
        'export',
        'example.com/absent:1',
        '-o',
        join(dir, 'out.tar'),
      ],
      { env },
    ).then(
      () => {
        throw new Error('the export of an absent image succeeded');
      },
      (err: { code?: number; stderr?: string }) => err,
    );
    expect(exported.code).toBe(1);
    expect(exported.stderr).toContain('example.com/absent:1');
    const loadedByExport = loadedPackages(exported.stderr ?? '');
    for (const name of HEAVY.filter((n) => n !== 'ioredis')) expect(loadedByExport).not.toContain(name);
    expect(loadedByExport).toContain('ioredis');
  });
});
