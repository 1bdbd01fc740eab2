/**
 * The CLI as a user runs it: `stevedore stack` (Redis, workers and API as child processes), then
 * pull, images, inspect and rm as separate commands, against the real registry.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RegistryClient, parseReference } from '@stevedore/oci';
import { LockManager } from '@stevedore/lock';
import { GC_GATE, MAINTENANCE_LOCK, maintenanceConnection } from '@stevedore/pipeline';
import { buildImageFromTrees, generateTree, pushImage, type FixtureImage } from '@stevedore/testing';

/** The `stevedore` command as installed (package.json bin): the launcher, then main.ts. */
const CLI = fileURLToPath(new URL('../bin/stevedore.mjs', import.meta.url));
const run = promisify(execFile);

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function stevedore(args: readonly string[], env: NodeJS.ProcessEnv): Promise<Result> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env, timeout: 90_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('stevedore CLI', () => {
  let home: string;
  let stack: ChildProcess;
  let env: NodeJS.ProcessEnv;
  let banner = '';
  let image: FixtureImage;
  let ref: string;

  beforeAll(async () => {
    const registry = inject('stack').registry;
    image = await buildImageFromTrees([
      generateTree({ seed: 5, files: 40 }),
      generateTree({ seed: 6, files: 10, root: 'opt' }),
    ]);
    ref = `${registry.host}/cli/hello:1.0`;
    await pushImage(new RegistryClient(), parseReference(ref), image);
    home = await mkdtemp(join(tmpdir(), 'stevedore-cli-'));
    env = {
      PATH: process.env.PATH,
      HOME: home,
      STEVEDORE_HOME: join(home, '.stevedore'),
      STEVEDORE_API_TOKEN: 'cli-test-token-0123456789',
      NODE_COMPILE_CACHE: join(home, 'node-compile-cache'),
    };
    stack = spawn(process.execPath, [CLI, 'stack'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    stack.stdout?.on('data', (chunk: Buffer) => {
      banner += chunk.toString('utf8');
    });
    // The stack prints its addresses; the Redis URL in it is what the other commands use.
    const deadline = Date.now() + 60_000;
    while (!/pull +STEVEDORE_REDIS_URL=(\S+)/.test(banner)) {
      if (Date.now() > deadline || stack.exitCode !== null)
        throw new Error(`stevedore stack did not start:\n${banner}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    env.STEVEDORE_REDIS_URL = /STEVEDORE_REDIS_URL=(\S+)/.exec(banner)?.[1];
    env.STEVEDORE_STORE = join(home, '.stevedore', 'store');
  });

  afterAll(async () => {
    if (stack.exitCode === null) {
      stack.kill('SIGINT');
      await once(stack, 'exit');
    }
    await rm(home, { recursive: true, force: true });
  });

  it('prints the API and Bull Board addresses with credentials', () => {
    expect(banner).toMatch(
      /api +http:\/\/127\.0\.0\.1:\d+\/v1 +\(Authorization: Bearer <STEVEDORE_API_TOKEN>\)/,
    );
    expect(banner).toMatch(
      /bull board +http:\/\/127\.0\.0\.1:\d+\/admin\/queues +\(user admin, password <STEVEDORE_BOARD_PASSWORD>\)/,
    );
  });

  it('pulls with --wait and shows plain progress lines when not on a terminal', async () => {
    const result = await stevedore(['pull', ref, '--wait'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(
      `Digest: ${image.manifest.descriptor.digest}\nStatus: downloaded ${ref}\n`,
    );
    for (const layer of image.layerDescriptors)
      expect(result.stdout).toContain(`${layer.digest.slice(7, 19)}: Pull complete`);
  });

  it('compacts the index files while the stack runs, and the image still exports from the merged index', async () => {
    const indexDir = join(env.STEVEDORE_STORE!, 'index');
    const before = (await readdir(indexDir)).sort();
    expect(before).toHaveLength(image.layers.length); // one index file per layer import
    // A crash leftover: a temporary file of a put that never finished.
    const leftover = join(env.STEVEDORE_STORE!, '.tmp', 'interrupted-put');
    await writeFile(leftover, 'partial');
    // Stored exports (what export jobs write): one written eight days ago, one today.
    const exportsDir = join(env.STEVEDORE_STORE!, 'exports');
    await mkdir(exportsDir, { recursive: true });
    const [old, fresh] = ['export-00000000000000aa', 'export-00000000000000bb'];
    for (const id of [old, fresh]) {
      await writeFile(join(exportsDir, `${id}.tar`), Buffer.alloc(4096));
      await writeFile(join(exportsDir, `${id}.json`), '{}\n');
    }
    const eightDaysAgo = new Date(Date.now() - 8 * 86_400_000);
    for (const file of [`${old}.tar`, `${old}.json`])
      await utimes(join(exportsDir, file), eightDaysAgo, eightDaysAgo);
    const result = await stevedore(['compact', '--min-age', '0s', '--orphan-age', '0s', '--json'], env);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const summary = JSON.parse(result.stdout) as {
      index: { merged: number; written: string[]; entries: number };
      orphans: { packs: { count: number }; splitstreams: { count: number }; temporaries: { count: number } };
      exports: unknown;
    };
    expect(summary.index).toMatchObject({
      merged: before.length,
      written: [expect.stringMatching(/^index\//)],
    });
    expect(summary.index.entries).toBeGreaterThan(0);
    expect(summary.orphans).toMatchObject({
      packs: { count: 0 },
      splitstreams: { count: 0 },
      temporaries: { count: 1 },
    });
    expect(await readdir(indexDir)).toEqual(summary.index.written.map((k) => k.slice('index/'.length)));
    await expect(stat(leftover)).rejects.toThrow(/ENOENT/);
    // The default --export-age is a week: the old export goes, record and archive; the new one stays.
    expect(summary.exports).toEqual({
      expired: { count: 1, bytes: 4096 + 3 },
      incomplete: { count: 0, bytes: 0 },
      kept: 1,
    });
    expect((await readdir(exportsDir)).sort()).toEqual([`${fresh}.json`, `${fresh}.tar`]);
    const again = await stevedore(['compact'], env);
    expect(again).toMatchObject({
      code: 0,
      stdout:
        'Index: nothing to merge (1 file(s), fewer than two old enough).\n' +
        'Crash leftovers deleted: 0 pack(s) (0.0 MB), 0 splitstream(s) (0.0 MB), 0 temporary file(s) (0.0 MB).\n' +
        'Exports deleted: 0 expired (0.0 MB), 0 without a record (0.0 MB); 1 kept.\n',
    });
    const kept = await stevedore(['compact', '--export-age', 'never'], env);
    expect(kept.stdout).toMatch(/\nExports: kept \(--export-age never\)\.\n$/);
    const expiring = await stevedore(['compact', '--export-age', '0s', '--json'], env);
    expect(
      (JSON.parse(expiring.stdout) as { exports: { expired: { count: number } } }).exports.expired.count,
    ).toBe(1);
    expect(await readdir(exportsDir)).toEqual([]);
    // A new process rebuilds every layer from its objects, found through the merged file (an
    // uncompressed export verifies each diffID).
    const archive = join(home, 'after-compact.tar');
    const exported = await stevedore(['export', ref, '-o', archive, '--compression', 'none'], env);
    expect(exported.stderr).toContain(`Exported 1 image(s), ${image.layers.length} layer(s)`);
    expect(exported.code).toBe(0);
    expect((await stat(archive)).size).toBeGreaterThan(
      image.layers.reduce((n, l) => n + l.uncompressedSize, 0),
    );
  });

  it('verifies the store end to end, and names a damaged pack with exit code 1', async () => {
    const clean = await stevedore(['verify'], env);
    expect(clean).toEqual({
      code: 0,
      stdout: expect.stringMatching(
        /^Verified 1 reference\(s\), 1 image\(s\), \d+ blob\(s\) \([\d.]+ MB\), 2 layer\(s\) rebuilt \([\d.]+ MB of tar\): no problems\.\n$/,
      ) as string,
      stderr: '',
    });
    const one = await stevedore(['verify', ref, '--json'], env);
    expect(JSON.parse(one.stdout)).toMatchObject({
      references: 1,
      images: 1,
      layers: { count: 2 },
      problems: [],
    });
    expect(await stevedore(['verify', 'not a reference'], env)).toMatchObject({ code: 2 });

    // One byte of the largest pack flipped, then put back (the next tests read the layers).
    const packsDir = join(env.STEVEDORE_STORE!, 'packs');
    const sizes = await Promise.all(
      (await readdir(packsDir)).map(async (name) => ({
        name,
        size: (await stat(join(packsDir, name))).size,
      })),
    );
    const largest = sizes.sort((a, b) => b.size - a.size)[0]!;
    const path = join(packsDir, largest.name);
    const original = await readFile(path);
    const damaged = Buffer.from(original);
    damaged[original.length >> 1] = damaged[original.length >> 1]! ^ 0xff;
    await writeFile(path, damaged);
    try {
      const bad = await stevedore(['verify'], env);
      expect(bad.code).toBe(1);
      expect(bad.stdout).toMatch(new RegExp(`^problem: layer sha256:[0-9a-f]{64}: .*${largest.name}`));
      expect(bad.stdout).toMatch(/: 1 problem\(s\)\.\n$/);
    } finally {
      await writeFile(path, original);
    }
    expect((await stevedore(['verify'], env)).code).toBe(0);
  });

  it('lists, inspects and removes the image', async () => {
    const images = await stevedore(['images', '--json'], env);
    expect(images.code).toBe(0);
    const rows = JSON.parse(images.stdout) as { reference: string; digest: string; layers: number }[];
    expect(rows).toEqual([
      expect.objectContaining({ reference: ref, digest: image.manifest.descriptor.digest, layers: 2 }),
    ]);
    const inspected = await stevedore(['inspect', ref], env);
    expect(inspected.code).toBe(0);
    const doc = JSON.parse(inspected.stdout) as { images: { layers: { diffID: string }[] }[] };
    expect(doc.images[0]?.layers.map((l) => l.diffID)).toEqual(image.layers.map((l) => l.diffId));
    expect(await stevedore(['rm', ref], env)).toEqual({ code: 0, stdout: `Untagged: ${ref}\n`, stderr: '' });
    expect(await stevedore(['rm', ref], env)).toEqual({
      code: 1,
      stdout: '',
      stderr: `Error: No such image: ${ref}\n`,
    });

    // What rm left is garbage: a dry run says what would go and changes nothing; gc deletes it
    // while the stack's workers wait behind its gate.
    const packsDir = join(env.STEVEDORE_STORE!, 'packs');
    const packs = await readdir(packsDir);
    expect(packs.length).toBeGreaterThan(0);
    const dry = await stevedore(['gc', '--dry-run', '--json'], env);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({
      dryRun: true,
      deleted: {
        images: { count: 1 },
        layers: { count: 2 },
        blobs: { count: 4 },
        packs: { count: packs.length },
      },
      live: { references: 0, images: 0, layers: 0 },
    });
    expect(await readdir(packsDir)).toEqual(packs);
    const gc = await stevedore(['gc'], env);
    expect(gc.code).toBe(0);
    expect(gc.stdout).toMatch(/^gate closed: new jobs and store readers wait until the collection ends\n/);
    expect(gc.stdout).toContain('Deleted:\n  1 image(s), 2 layer(s) with 2 splitstream(s)');
    expect(await readdir(packsDir)).toEqual([]);
    const after = JSON.parse((await stevedore(['verify', '--json'], env)).stdout) as Record<string, unknown>;
    expect(after).toMatchObject({
      references: 0,
      images: 0,
      layers: { count: 0 },
      blobs: { count: 0 },
      problems: [],
    });
    expect(await stevedore(['gc', '--repack-below', '2'], env)).toMatchObject({ code: 2 });
    // gc and compact both rewrite the index files: while one holds the maintenance lock, the
    // other refuses (exit 1, saying why) and changes nothing.
    const redis = await maintenanceConnection(env.STEVEDORE_REDIS_URL!);
    try {
      const locks = new LockManager(redis);
      const held = await locks.tryAcquire(MAINTENANCE_LOCK);
      expect(held.acquired).toBe(true);
      for (const command of [['gc'], ['compact']]) {
        const refused = await stevedore(command, env);
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain(`lock ${MAINTENANCE_LOCK} is held`);
      }
      if (held.acquired) await locks.release(held.grant);
    } finally {
      redis.disconnect();
    }
    // The image pulls again after the collection (the workers reload their object index).
    expect((await stevedore(['pull', ref, '--wait'], env)).code).toBe(0);
    expect((await stevedore(['verify'], env)).code).toBe(0);

    // export and verify read what a collection deletes: while one runs (its gate held) they wait,
    // saying so, and write nothing; when it ends they go on.
    const archive = join(home, 'during-gc.tar');
    const gateRedis = await maintenanceConnection(env.STEVEDORE_REDIS_URL!);
    try {
      const locks = new LockManager(gateRedis);
      const gate = await locks.tryAcquire(GC_GATE);
      expect(gate.acquired).toBe(true);
      const waiting = [
        ['export', ref, '-o', archive],
        ['verify', ref],
      ].map((args) => {
        const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
        const output = { stdout: '', stderr: '' };
        child.stdout.on('data', (c: Buffer) => (output.stdout += c.toString('utf8')));
        child.stderr.on('data', (c: Buffer) => (output.stderr += c.toString('utf8')));
        const exited = once(child, 'exit') as Promise<[number | null]>;
        return { command: args[0]!, output, exited };
      });
      for (const w of waiting) {
        const deadline = Date.now() + 30_000;
        const line = `stevedore ${w.command}: a garbage collection of the store is running; waiting for it to end\n`;
        while (!w.output.stderr.includes(line)) {
          if (Date.now() > deadline) throw new Error(`${w.command} did not wait: ${w.output.stderr}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      await new Promise((r) => setTimeout(r, 1_500));
      await expect(stat(archive)).rejects.toMatchObject({ code: 'ENOENT' });
      expect(waiting.map((w) => w.output.stdout)).toEqual(['', '']);
      if (gate.acquired) await locks.release(gate.grant);
      for (const w of waiting) {
        const [code] = await w.exited;
        expect(code, w.output.stderr).toBe(0);
      }
      expect(waiting[0]!.output.stderr).toMatch(/^Exported 1 image\(s\)/m);
      expect(waiting[1]!.output.stdout).toMatch(/^Verified .*: no problems\.$/m);
      expect((await stat(archive)).size).toBeGreaterThan(0);
    } finally {
      gateRedis.disconnect();
    }
    expect((await stevedore(['export', ref, '-o', archive], env)).code).toBe(0);
    // Without Redis no collection can be coordinated: the export runs without a lease, and says so.
    const unguarded = await stevedore(['export', ref, '-o', archive], {
      ...env,
      STEVEDORE_REDIS_URL: 'redis://127.0.0.1:1',
    });
    expect(unguarded.code, unguarded.stderr).toBe(0);
    expect(unguarded.stderr).toMatch(
      /^stevedore export: cannot reach Redis at redis:\/\/127\.0\.0\.1:1: connect ECONNREFUSED 127\.0\.0\.1:1; reading the store without a read lease$/m,
    );
  });

  it('fails a pull of an unknown tag with the registry reason and exit code 1', async () => {
    const result = await stevedore(
      ['pull', `${inject('stack').registry.host}/cli/hello:nope`, '--wait'],
      env,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^stevedore: pull .*cli\/hello:nope failed: pull .*MANIFEST_UNKNOWN/);
  });

  it("turns on Node's compile cache itself (bin/stevedore.mjs), in the temp dir by default", async () => {
    // No NODE_COMPILE_CACHE: node would not cache by itself; the launcher turns the cache on.
    const tmp = join(home, 'tmp');
    await mkdir(tmp);
    const r = await stevedore(['images'], {
      ...env,
      NODE_COMPILE_CACHE: undefined,
      TMPDIR: tmp,
      STEVEDORE_STORE: join(home, 'empty-store'),
    });
    expect(r.code).toBe(0);
    const cached = await readdir(join(tmp, 'node-compile-cache'), { recursive: true });
    // One directory per Node version and one entry per module: main.ts, the command's module and
    // the store's modules it loads.
    expect(cached.length).toBeGreaterThan(5);
  });

  it('says at once when Redis is unreachable, with its password masked (pull)', async () => {
    const result = await stevedore(['pull', 'registry.test/app:1'], {
      ...env,
      STEVEDORE_REDIS_URL: 'redis://:not-for-logs@127.0.0.1:1',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'stevedore: cannot reach Redis at redis://:***@127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1\n',
    );
  });

  it('refuses bad usage with exit code 2', async () => {
    expect((await stevedore(['pull'], env)).code).toBe(2);
    expect((await stevedore(['frobnicate'], env)).stderr).toMatch(/^stevedore: unknown command "frobnicate"/);
    const badAge = await stevedore(['compact', '--min-age', '5 minutes'], env);
    expect(badAge.code).toBe(2);
    expect(badAge.stderr).toMatch(
      /^stevedore compact: --min-age: expected a duration like 30s, 10m, 2h or 7d, got "5 minutes"/,
    );
    const badEvery = await stevedore(['stack', '--compact-every', '0s'], env);
    expect(badEvery.code).toBe(2);
    expect(badEvery.stderr).toMatch(
      /^stevedore stack: --compact-every: expected a duration from 1s to 24d like .* got "0s"/,
    );
    expect((await stevedore(['stack', '--compact-every', '30d'], env)).stderr).toMatch(
      /^stevedore stack: --compact-every: expected a duration from 1s to 24d/,
    );
    expect((await stevedore(['stack', 'now'], env)).code).toBe(2);
    const badExportAge = await stevedore(['compact', '--export-age', 'forever'], env);
    expect(badExportAge.code).toBe(2);
    expect(badExportAge.stderr).toMatch(
      /^stevedore compact: --export-age: expected a duration like 30s, 10m, 2h or 7d \(or never\), got "forever"/,
    );
  });

  it('a stack runs stevedore compact on its own schedule (--compact-every)', async () => {
    const other = join(home, 'other');
    const second = spawn(process.execPath, [CLI, 'stack', '--compact-every', '1s'], {
      env: {
        ...env,
        STEVEDORE_HOME: join(other, '.stevedore'),
        STEVEDORE_REDIS_URL: undefined,
        STEVEDORE_STORE: undefined,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    second.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    try {
      // Two runs, a second apart, each ending with its exports line.
      const deadline = Date.now() + 60_000;
      while ((out.match(/^compact: Exports deleted: .*; 0 kept\.$/gm) ?? []).length < 2) {
        if (Date.now() > deadline || second.exitCode !== null) throw new Error(`no compaction:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(out).toMatch(/^ {2}compact {5}every 1s, first after 1s \(stevedore compact\)$/m);
      expect(out).toMatch(/^compact: Index: nothing to merge \(0 file\(s\), fewer than two old enough\)\.$/m);
    } finally {
      second.kill('SIGINT');
      const [code] = (await once(second, 'exit')) as [number | null];
      expect(code).toBe(0);
    }
  });

  it('a stack stopped as soon as it has started still exits (services killed before their handlers)', async () => {
    const early = spawn(process.execPath, [CLI, 'stack', '--compact-every', 'never'], {
      env: {
        ...env,
        STEVEDORE_HOME: join(home, 'early', '.stevedore'),
        STEVEDORE_REDIS_URL: undefined,
        STEVEDORE_STORE: undefined,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    early.stdout.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    const exited = once(early, 'exit');
    const deadline = Date.now() + 60_000;
    while (!out.includes('  pull  ')) {
      if (Date.now() > deadline || early.exitCode !== null) throw new Error(`no banner:\n${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(out).toMatch(/^ {2}compact {5}never \(--compact-every never\)$/m);
    early.kill('SIGINT');
    const stopped = await Promise.race([
      exited.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 30_000)),
    ]);
    if (!stopped) early.kill('SIGKILL');
    expect(stopped).toBe(true);
  });

  it('a stack whose Redis cannot start says why and exits 1 (here: a damaged AOF manifest)', async () => {
    const broken = join(home, 'broken', '.stevedore');
    await mkdir(join(broken, 'redis', 'appendonlydir'), { recursive: true });
    await writeFile(join(broken, 'redis', 'appendonlydir', 'appendonly.aof.manifest'), 'not a manifest\n');
    const result = await stevedore(['stack'], {
      ...env,
      STEVEDORE_HOME: broken,
      STEVEDORE_REDIS_URL: undefined,
      STEVEDORE_STORE: undefined,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^stevedore stack: redis-server on port \d+ exited at start \(1\): .*Invalid AOF manifest file format/m,
    );
  });

  it('stops the whole stack on Ctrl-C', async () => {
    stack.kill('SIGINT');
    const [code] = (await once(stack, 'exit')) as [number | null];
    expect(code).toBe(0);
  });
});
