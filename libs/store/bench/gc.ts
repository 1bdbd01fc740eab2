/**
 * Garbage collection benchmark: two versions of an image whose layer is the tar of /usr/share,
 * the second with a share of its files changed (`--changed`, default 0.2: every fifth file larger
 * than an inline record gets its first byte flipped), both imported into a fresh store (a directory, or S3);
 * then the first version's reference is removed and `collectGarbage` runs in a process of its own
 * (its CPU and peak RSS are its own), with `--repack-below` (default the store's, 0.5). It prints
 * what the collection deleted and rewrote, the store's bytes before and after, the time, CPU and
 * peak RSS, and checks the second version still verifies (every layer rebuilt to its diffID).
 *
 *     node libs/store/bench/gc.ts [--backend directory|s3] [--changed 0.2] [--repack-below 0.5 ...]
 *
 * Several --repack-below values run one after the other, each on its own fresh store. On S3 the
 * store is the local S3 server in a child process (bench-backend.ts); requests are counted.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { digestOf, parseDiffID, parseMediaType, parseReference } from '@stevedore/oci/spec';
import { extract, pack } from 'tar-stream';
import {
  DEFAULT_REPACK_BELOW,
  diffStats,
  listAll,
  openStore,
  snapshotStats,
  verifyStore,
  type BackendConfig,
  type BackendStats,
  type CollectResult,
  type Store,
} from '../src/index.ts';
import { compileCacheEnv } from '../src/limiter.ts';
import { benchBackend } from './bench-backend.ts';

const MB = 1e6;
const LAYER = parseMediaType('application/vnd.oci.image.layer.v1.tar');
const MANIFEST = parseMediaType('application/vnd.oci.image.manifest.v1+json');
const CONFIG = parseMediaType('application/vnd.oci.image.config.v1+json');
/** Files up to this size stay inline in splitstreams (INLINE_MAX): changing them changes no object. */
const INLINE_MAX = 64;

async function storeBytes(store: Store): Promise<number> {
  let n = 0;
  for await (const o of listAll(store.backend, '')) n += o.size;
  return n;
}

/** The tar of /usr/share, and a copy with every `1/changed`-th larger file's first byte flipped. */
async function writeTars(
  dir: string,
  changed: number,
): Promise<{ v1: string; v2: string; changedFiles: number }> {
  const v1 = join(dir, 'v1.tar');
  const v2 = join(dir, 'v2.tar');
  const tar = spawn('tar', ['-C', '/usr', '-cf', v1, 'share'], { stdio: 'ignore' });
  await new Promise((resolve) => tar.on('close', resolve));
  const every = Math.max(1, Math.round(1 / changed));
  let seen = 0;
  let changedFiles = 0;
  const ex = extract();
  const out = pack();
  ex.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      if (header.type === 'file' && body.length > INLINE_MAX && ++seen % every === 0) {
        body[0] = body[0]! ^ 0xff;
        changedFiles++;
      }
      out.entry(header, body, next);
    });
  });
  ex.on('finish', () => out.finalize());
  await Promise.all([pipeline(createReadStream(v1), ex), pipeline(out, createWriteStream(v2))]);
  return { v1, v2, changedFiles };
}

/** Imports `tar` and commits it as a one-layer image under `ref` (uncompressed layer, no blob kept). */
async function commitImage(store: Store, ref: string, tarPath: string): Promise<void> {
  const imported = await store.importLayer(createReadStream(tarPath, { highWaterMark: 256 * 1024 }));
  const diffID = parseDiffID(imported.diffID);
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffID] } }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST,
      config: { mediaType: CONFIG, digest: digestOf(config), size: config.length },
      layers: [{ mediaType: LAYER, digest: diffID, size: imported.size }],
    }),
  );
  await store.putBlob(digestOf(config), config);
  await store.putBlob(digestOf(manifest), manifest);
  await store.commitLayer(
    { digest: diffID, diffID, size: imported.size, mediaType: LAYER },
    { policy: 'drop' },
  );
  await store.putImage({
    manifest: { digest: digestOf(manifest), size: manifest.length, mediaType: MANIFEST },
    config: { digest: digestOf(config), size: config.length, mediaType: CONFIG },
    layers: [{ digest: diffID, diffID, size: imported.size, mediaType: LAYER }],
  });
  await store.setReference(parseReference(ref), digestOf(manifest));
}

interface CollectRun {
  readonly result: CollectResult;
  readonly seconds: number;
  readonly cpuSeconds: number;
  readonly peakRssMiB: number;
  readonly requests: BackendStats['requests'];
}

/** In a child process: open the store, collect, report. */
async function collectChild(backend: BackendConfig, repackBelow: number): Promise<void> {
  const store = await openStore({ backend });
  const stats = snapshotStats(store.stats);
  const cpu = process.cpuUsage();
  const started = performance.now();
  const result = await store.collectGarbage({ repackBelow });
  const seconds = (performance.now() - started) / 1000;
  const used = process.cpuUsage(cpu);
  await store.close();
  const run: CollectRun = {
    result,
    seconds,
    cpuSeconds: (used.user + used.system) / 1e6,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    requests: diffStats(store.stats, stats).requests,
  };
  process.stdout.write(`${JSON.stringify(run)}\n`);
}

async function inChild(backend: BackendConfig, repackBelow: number): Promise<CollectRun> {
  const args = [fileURLToPath(import.meta.url), '--child', JSON.stringify(backend), String(repackBelow)];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: compileCacheEnv(),
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const code = await new Promise((resolve) => child.on('close', resolve));
  if (code !== 0) throw new Error(`collection child exited with ${String(code)}`);
  return JSON.parse(out.trim().split('\n').at(-1)!) as CollectRun;
}

async function main(): Promise<void> {
  if (process.argv[2] === '--child')
    return collectChild(JSON.parse(process.argv[3]!) as BackendConfig, Number(process.argv[4]));
  const { values } = parseArgs({
    options: {
      backend: { type: 'string', default: 'directory' },
      changed: { type: 'string', default: '0.2' },
      'repack-below': { type: 'string', multiple: true },
    },
  });
  const kind = values.backend;
  if (kind !== 'directory' && kind !== 's3') throw new Error('--backend is directory or s3');
  const changed = Number(values.changed);
  const shares = (values['repack-below'] ?? [String(DEFAULT_REPACK_BELOW)]).map(Number);
  const work = await mkdtemp(join(tmpdir(), 'stevedore-gc-bench-'));
  try {
    const tars = await writeTars(work, changed);
    process.stdout.write(
      `gc benchmark (${kind}): two versions of a layer of /usr/share, ${tars.changedFiles} files changed in the second ` +
        `(--changed ${changed}); the first version removed, then collected. Load average ${loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')} on this machine.\n`,
    );
    for (const share of shares) {
      const location = await benchBackend(kind);
      try {
        const store = await openStore({ backend: location.config });
        await commitImage(store, 'bench.local/app:1', tars.v1);
        await commitImage(store, 'bench.local/app:2', tars.v2);
        const before = await storeBytes(store);
        await store.deleteReference(parseReference('bench.local/app:1'));
        await store.close();
        const run = await inChild(location.config, share);
        const check = await openStore({ backend: location.config });
        const after = await storeBytes(check);
        const verified = await verifyStore(check);
        await check.close();
        report(share, before, after, run, verified.layers, verified.problems.length);
      } finally {
        await location.cleanup();
      }
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function report(
  share: number,
  before: number,
  after: number,
  run: CollectRun,
  layers: { count: number; bytes: number },
  problems: number,
): void {
  const r = run.result;
  process.stdout.write(
    [
      `--repack-below ${share}:`,
      `  store    ${(before / MB).toFixed(1)} MB before, ${(after / MB).toFixed(1)} MB after (${((1 - after / before) * 100).toFixed(1)}% reclaimed)`,
      `  deleted  ${r.deleted.images.count} image, ${r.deleted.layers.count} layer, ${r.deleted.splitstreams.count} splitstream (${(r.deleted.splitstreams.bytes / MB).toFixed(1)} MB), ${r.deleted.packs.count} packs with no live object (${(r.deleted.packs.bytes / MB).toFixed(1)} MB)`,
      `  repacked ${r.repacked.packs.count} packs (${(r.repacked.packs.bytes / MB).toFixed(1)} MB) into ${(r.repacked.written.bytes / MB).toFixed(1)} MB; dead bytes left in kept packs ${(r.deadBytesKept / MB).toFixed(1)} MB`,
      `  live     ${r.live.objects.count} objects (${(r.live.objects.bytes / MB).toFixed(1)} MB stored); index ${r.indexFiles.before} files replaced by ${r.indexFiles.written}`,
      `  time     ${run.seconds.toFixed(2)} s, CPU ${run.cpuSeconds.toFixed(2)} s, peak RSS ${run.peakRssMiB.toFixed(0)} MiB; requests ${Object.entries(
        run.requests,
      )
        .filter(([, n]) => n > 0)
        .map(([k, n]) => `${k} ${n}`)
        .join(', ')}`,
      `  verify   ${layers.count} layer(s) rebuilt (${(layers.bytes / MB).toFixed(1)} MB of tar): ${problems === 0 ? 'no problems' : `${problems} PROBLEMS`}`,
    ].join('\n') + '\n',
  );
  if (problems > 0) process.exitCode = 1;
}

await main();
