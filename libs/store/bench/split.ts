/**
 * Split and rebuild benchmark of the store (not a test): `npx node libs/store/bench/split.ts`.
 *
 * Datasets:
 *   (a) synthetic: a 2 GB tar of 10,000 x 200 KiB files of incompressible bytes, generated while
 *       it is read (no temporary file); then the same tar with 1% of the files changed, imported
 *       into the store with the `drop` policy, to measure what a small change adds.
 *   (b) usr-share: `tar -C /usr -cf - share` (a real size distribution), after a warm-up read.
 * Backends: a directory in a temp dir, and S3 (a local fauxqs child process by default, or the
 * server in STEVEDORE_BENCH_S3_ENDPOINT / _BUCKET / _REGION with AWS_* credentials).
 *
 * Each measurement runs in its own child process so its peak RSS is its own.
 *
 * Options: --backend directory|s3|both   --dataset a|b|both   --files N (dataset a, default 10000)
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  diffStats,
  listAll,
  openStore,
  snapshotStats,
  type BackendConfig,
  type Store,
} from '../src/index.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GB = 1e9;
const FILE_SIZE = 200 * KiB;
/** Incompressible content comes from this pool, each file from its own offset with a unique prefix. */
const POOL_BYTES = 64 * MiB;
const BLOCK = 512;
/** Every 100th file changes in the second synthetic layer (1%). */
const CHANGE_EVERY = 100;

// ---- synthetic tar --------------------------------------------------------------------------

function tarHeader(name: string, size: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  b.write('0000644\0', 100, 'latin1');
  b.write('0000000\0', 108, 'latin1');
  b.write('0000000\0', 116, 'latin1');
  b.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  b.write('00000000000\0', 136, 'latin1');
  b.write('0', 156, 'latin1');
  b.write('ustar\0', 257, 'latin1');
  b.write('00', 263, 'latin1');
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const x of b) sum += x;
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return b;
}

let pool: Buffer | undefined;

/** The synthetic tar, generated as it is read. `variant` changes every 100th file's content. */
function syntheticTar(files: number, variant: number): Readable {
  // One pool per process: both variants share the unchanged 99%.
  pool ??= randomBytes(POOL_BYTES);
  const bytes = pool;
  const padding = Buffer.alloc((BLOCK - (FILE_SIZE % BLOCK)) % BLOCK);
  return Readable.from(
    (function* () {
      for (let i = 0; i < files; i++) {
        yield tarHeader(
          `data/${String(Math.floor(i / 100)).padStart(3, '0')}/file-${String(i).padStart(5, '0')}.bin`,
          FILE_SIZE,
        );
        const content = Buffer.allocUnsafe(FILE_SIZE);
        const at = (i * 7919 * 4096) % (POOL_BYTES - FILE_SIZE);
        bytes.copy(content, 0, at, at + FILE_SIZE);
        // A unique prefix per file (and per variant for changed files) so every file is distinct.
        content.writeUInt32BE(i, 0);
        content.writeUInt32BE(i % CHANGE_EVERY === 0 ? variant : 0, 4);
        yield content;
        if (padding.length > 0) yield padding;
      }
      yield Buffer.alloc(2 * BLOCK);
    })(),
    { objectMode: false },
  );
}

function usrShareTar(): { stream: Readable; done: Promise<void> } {
  const child = spawn('tar', ['-C', '/usr', '-cf', '-', 'share'], { stdio: ['ignore', 'pipe', 'ignore'] });
  return { stream: child.stdout, done: exited(child, 'tar') };
}

function exited(child: ChildProcess, name: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.on('close', (code) => {
      // tar exits 1 when files changed while read; the bytes it wrote are still a valid tar.
      if (code === 0 || code === 1) resolve();
      else reject(new Error(`${name} exited with ${code}`));
    });
  });
}

// ---- one measurement, in a child process -------------------------------------------------------

interface ChildTask {
  readonly backend: BackendConfig;
  readonly dataset: 'a' | 'b';
  readonly files: number;
}

interface ChildResult {
  readonly splitSeconds: number;
  /** CPU time of all the process's threads during the split. */
  readonly splitCpuSeconds: number;
  readonly tarBytes: number;
  readonly objects: number;
  readonly files: number;
  readonly puts: number;
  readonly posts: number;
  readonly bytesWrittenToBackend: number;
  readonly storedBytes: number;
  readonly uniqueBytes: number;
  readonly rebuildSeconds: number;
  readonly changedAddedBytes: number | undefined;
  readonly changedTarBytes: number | undefined;
  readonly peakRssMiB: number;
}

async function storedBytes(store: Store): Promise<number> {
  let n = 0;
  for await (const o of listAll(store.backend, '')) n += o.size;
  return n;
}

async function runChild(task: ChildTask): Promise<ChildResult> {
  const store = await openStore({ backend: task.backend });
  const before = snapshotStats(store.stats);
  const cpuBefore = process.cpuUsage();
  let t = performance.now();
  let result;
  if (task.dataset === 'a') {
    result = await store.importLayer(syntheticTar(task.files, 0));
  } else {
    const tar = usrShareTar();
    result = await store.importLayer(tar.stream);
    await tar.done;
  }
  const splitSeconds = (performance.now() - t) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const d = diffStats(store.stats, before);
  const stored = await storedBytes(store);

  t = performance.now();
  await pipeline(
    await store.openLayer(result.diffID),
    new Writable({
      write(_chunk, _encoding, callback) {
        callback();
      },
    }),
  );
  const rebuildSeconds = (performance.now() - t) / 1000;

  let changedAddedBytes: number | undefined;
  let changedTarBytes: number | undefined;
  if (task.dataset === 'a') {
    const drop = await openStore({ backend: task.backend, blobPolicy: 'drop' });
    const changed = await drop.importLayer(syntheticTar(task.files, 1));
    changedAddedBytes = (await storedBytes(drop)) - stored;
    changedTarBytes = changed.size;
  }
  return {
    splitSeconds,
    splitCpuSeconds: (cpu.user + cpu.system) / 1e6,
    tarBytes: result.size,
    objects: result.stats.objects,
    files: result.stats.files,
    puts: d.requests.PUT,
    posts: d.requests.POST,
    bytesWrittenToBackend: d.bytesWritten,
    storedBytes: stored,
    uniqueBytes: result.stats.bytesWritten + result.stats.inlineBytes,
    rebuildSeconds,
    changedAddedBytes,
    changedTarBytes,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

// ---- orchestration ---------------------------------------------------------------------------

const SELF = fileURLToPath(import.meta.url);

async function inChild(task: ChildTask): Promise<ChildResult> {
  const child = spawn(process.execPath, [SELF, '--child', JSON.stringify(task)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  await new Promise<void>((resolve, reject) =>
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`benchmark child exited with ${code}`)),
    ),
  );
  return JSON.parse(out.trim().split('\n').at(-1)!) as ChildResult;
}

async function startS3(bucket: string): Promise<{ endpoint: string; stop: () => void }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./s3-server.ts', import.meta.url)), bucket], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      const m = /\{"port":(\d+)\}/.exec(s);
      if (m !== null) resolve(Number(m[1]));
    });
    child.on('close', (code) => reject(new Error(`S3 server exited with ${code}`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => child.stdin.end() };
}

function format(name: string, dataset: string, r: ChildResult): string {
  const mb = r.tarBytes / 1e6;
  const lines = [
    `${name} / ${dataset}: ${mb.toFixed(0)} MB tar, ${r.files} files as objects, ${r.objects} object refs`,
    `  split    ${(mb / r.splitSeconds).toFixed(0)} MB/s, ${(r.objects / r.splitSeconds).toFixed(0)} objects/s (${r.splitSeconds.toFixed(2)} s; CPU ${(r.splitCpuSeconds / (r.tarBytes / GB)).toFixed(2)} s per GB, all threads)`,
    `  requests ${(r.puts / (r.bytesWrittenToBackend / GB)).toFixed(1)} PUT per GB written (${r.puts} PUT, ${r.posts} POST for ${(r.bytesWrittenToBackend / 1e6).toFixed(0)} MB)`,
    `  stored   ${(r.storedBytes / r.uniqueBytes).toFixed(3)} x unique content (${(r.storedBytes / 1e6).toFixed(0)} MB stored / ${(r.uniqueBytes / 1e6).toFixed(0)} MB unique)`,
    `  rebuild  ${(mb / r.rebuildSeconds).toFixed(0)} MB/s (${r.rebuildSeconds.toFixed(2)} s, verified)`,
  ];
  if (r.changedAddedBytes !== undefined && r.changedTarBytes !== undefined) {
    lines.push(
      `  1% files changed, drop policy: +${(r.changedAddedBytes / 1e6).toFixed(1)} MB = ${((100 * r.changedAddedBytes) / r.changedTarBytes).toFixed(2)}% of the tar`,
    );
  }
  lines.push(`  peak RSS ${r.peakRssMiB.toFixed(0)} MiB`);
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      backend: { type: 'string', default: 'both' },
      dataset: { type: 'string', default: 'both' },
      files: { type: 'string', default: '10000' },
    },
  });
  if (values.child !== undefined) {
    process.stdout.write(`${JSON.stringify(await runChild(JSON.parse(values.child) as ChildTask))}\n`);
    process.exit(0);
  }
  const files = Number(values.files);
  const datasets = values.dataset === 'both' ? (['a', 'b'] as const) : ([values.dataset] as ('a' | 'b')[]);
  const backends = values.backend === 'both' ? ['directory', 's3'] : [values.backend];

  // Warm the page cache so (b) measures the store, not the disk.
  if (datasets.includes('b')) {
    const warm = usrShareTar();
    await pipeline(warm.stream, new Writable({ write: (_c, _e, cb) => cb() }));
    await warm.done;
  }
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')} on ${availableParallelism()} cores`,
  );
  for (const name of backends) {
    for (const dataset of datasets) {
      let backend: BackendConfig;
      let cleanup: () => Promise<void>;
      if (name === 'directory') {
        const path = await mkdtemp(join(tmpdir(), 'stevedore-bench-'));
        backend = { kind: 'directory', path };
        cleanup = () => rm(path, { recursive: true, force: true });
      } else {
        const bucket = process.env.STEVEDORE_BENCH_S3_BUCKET ?? 'bench';
        const external = process.env.STEVEDORE_BENCH_S3_ENDPOINT;
        const server = external === undefined ? await startS3(bucket) : undefined;
        backend = {
          kind: 's3',
          bucket,
          prefix: `bench-${randomUUID()}`,
          endpoint: external ?? server!.endpoint,
          region: process.env.STEVEDORE_BENCH_S3_REGION ?? 'us-east-1',
          forcePathStyle: true,
          ...(external === undefined
            ? { credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } }
            : {}),
        };
        cleanup = () => Promise.resolve(server?.stop());
      }
      try {
        const label = dataset === 'a' ? `synthetic ${files} x 200 KiB` : 'tar of /usr/share';
        console.log(format(name, label, await inChild({ backend, dataset, files })));
      } finally {
        await cleanup();
      }
    }
  }
}

await main();
