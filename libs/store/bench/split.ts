/**
 * Split and rebuild benchmark of the store (not a test): `npx node libs/store/bench/split.ts`.
 *
 * Datasets:
 *   (a) synthetic: a 2 GB tar of 10,000 x 200 KiB files of incompressible bytes; then the same tar
 *       with 1% of the files changed, imported into the store with the `drop` policy, to measure
 *       what a small change adds.
 *   (b) usr-share: `tar -C /usr -cf FILE share` (a real size distribution).
 * Backends: a directory in a temp dir, and S3 (a local fauxqs child process by default, or the
 * server in STEVEDORE_BENCH_S3_ENDPOINT / _BUCKET / _REGION with AWS_* credentials).
 *
 * The datasets' tars are written to files before any measurement and read from the page cache
 * (composefs-rs's benchmark reads its tar the same way) in 256 KiB chunks. A producer process (a
 * generator, or tar walking /usr/share) would take the same two cores as the split: measured, tar
 * took 4.5 CPU-s per GB of /usr/share. By default (`--input reused`) the chunks are read into two
 * alternating buffers and handed to the store as an iterable, which it reads in place
 * (import.ts LayerInput): the input leaves no garbage, and the peak RSS is the store's own.
 * `--input fresh` reads with a ReadStream, a new Buffer per chunk, as Node's decoders hand out
 * their output (the pipeline's gunzip): V8 frees those only in steps of 64 MB of new memory.
 *
 * Each measurement runs in its own child process so its peak RSS is its own. CPU is
 * `process.cpuUsage()` (every thread of the process: main, store workers, V8's GC helpers, libuv's
 * pool), split by thread from /proc/self/task on Linux. An `input` line measures reading the same
 * file with no store (the floor of both figures: reads and the garbage they leave cost CPU and
 * memory too).
 *
 * Options: --backend directory|s3|both   --dataset a|b|both   --files N (dataset a, default 10000)
 *          --workers N   --memory MiB (the store's Limiter; default one worker per core, 16 MiB)
 *          --input reused|fresh (how the tar is read, above; default reused)
 */
import { createCipheriv } from 'node:crypto';
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import {
  diffStats,
  Limiter,
  listAll,
  openStore,
  snapshotStats,
  type BackendConfig,
  type LayerInput,
  type LimiterOptions,
  type Store,
} from '../src/index.ts';
import { compileCacheEnv, DEFAULT_MEMORY_BYTES, STREAM_CHUNK_BYTES } from '../src/limiter.ts';
import { benchBackend } from './bench-backend.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GB = 1e9;
const FILE_SIZE = 200 * KiB;
/** Incompressible content comes from this pool, each file from its own offset with a unique prefix. */
const POOL_BYTES = 64 * MiB;
const BLOCK = 512;
/** AES-128 key and IV length (both all zeros: the pool only has to look random). */
const POOL_KEY_BYTES = 16;
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
  // The same pool in every generator process (an AES-CTR keystream under a fixed key: fast,
  // incompressible, deterministic), so both variants share the unchanged 99%.
  pool ??= createCipheriv('aes-128-ctr', Buffer.alloc(POOL_KEY_BYTES), Buffer.alloc(POOL_KEY_BYTES)).update(
    Buffer.alloc(POOL_BYTES),
  );
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

/** Writes the synthetic tar to `path` (before any measurement). */
async function writeSyntheticTar(files: number, variant: number, path: string): Promise<void> {
  await pipeline(syntheticTar(files, variant), createWriteStream(path));
}

/** Writes the tar of /usr/share to `path`: a real size distribution. */
async function writeUsrShareTar(path: string): Promise<void> {
  const child = spawn('tar', ['-C', '/usr', '-cf', path, 'share'], { stdio: ['ignore', 'ignore', 'ignore'] });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  // tar exits 1 when files changed while read; the bytes it wrote are still a valid tar.
  if (code !== 0 && code !== 1) throw new Error(`tar exited with ${code}`);
}

/** How the tar is read (see the module comment). */
type InputMode = 'reused' | 'fresh';

/** The tar in STREAM_CHUNK_BYTES chunks read into two alternating buffers (read in place by the store). */
async function* readInPlace(path: string): AsyncGenerator<Uint8Array> {
  const fh = await open(path, 'r');
  const buffers = [Buffer.allocUnsafeSlow(STREAM_CHUNK_BYTES), Buffer.allocUnsafeSlow(STREAM_CHUNK_BYTES)];
  let position = 0;
  try {
    for (let i = 0; ; i++) {
      const buffer = buffers[i % buffers.length]!;
      const { bytesRead } = await fh.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) return;
      position += bytesRead;
      yield buffer.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/** A dataset's tar, read from its file (in the page cache: it was just written) in 256 KiB chunks. */
function readTar(path: string, mode: InputMode): LayerInput {
  return mode === 'reused'
    ? readInPlace(path)
    : createReadStream(path, { highWaterMark: STREAM_CHUNK_BYTES });
}

// ---- one measurement, in a child process -------------------------------------------------------

/**
 * This process's peak RSS (VmHWM), MiB. Not `process.resourceUsage().maxRSS`: Linux carries the
 * parent's RSS at the fork over the exec into a child's maxrss, so every child of a bench parent
 * that had streamed the 2 GB tar reported at least the parent's 153 MiB.
 */
function peakRssMiB(): number {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kib = /VmHWM:\s+(\d+)/.exec(status)?.[1];
  return kib === undefined ? process.resourceUsage().maxRSS / 1024 : Number(kib) / 1024;
}

interface ChildTask {
  /** `input`: read the dataset with no store (the floor of CPU and memory). */
  readonly mode: 'store' | 'input';
  readonly backend: BackendConfig;
  readonly dataset: 'a' | 'b';
  /** The dataset's tar file. */
  readonly input: string;
  /** Dataset a: the same tar with 1% of its files changed. */
  readonly changedInput?: string;
  readonly limiter: LimiterOptions;
  readonly inputMode: InputMode;
}

/** CPU seconds of this process's threads by kind (Linux /proc; empty elsewhere). */
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  let tids: string[];
  try {
    tids = readdirSync('/proc/self/task');
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const comm = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim();
      // Fields after "(comm) ": state is [0]; utime and stime are [11] and [12], in clock ticks.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const seconds = (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
      const kind = tid === String(process.pid) ? 'main' : (THREAD_KINDS[comm] ?? 'other');
      out.set(kind, (out.get(kind) ?? 0) + seconds);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/** Linux USER_HZ: /proc times are in 1/100 s on every Linux architecture Node runs on. */
const CLOCK_TICKS = 100;
/** Thread names Node gives its threads. */
const THREAD_KINDS: Readonly<Record<string, string>> = {
  WorkerThread: 'workers',
  V8Worker: 'gc',
  'libuv-worker': 'libuv',
};

function cpuSplit(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) out[k] = v - (before.get(k) ?? 0);
  return out;
}

interface ChildResult {
  readonly splitSeconds: number;
  /** CPU time of all the process's threads during the split. */
  readonly splitCpuSeconds: number;
  /** The same by thread kind (main, workers, gc, libuv, other). */
  readonly splitCpuByThread: Record<string, number>;
  readonly rebuildCpuSeconds: number;
  /** Peak RSS when the split ends (before the rebuild). */
  readonly splitPeakRssMiB: number;
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
  const limiter = new Limiter(task.limiter);
  const store = await openStore({ backend: task.backend, limiter });
  const before = snapshotStats(store.stats);
  const threadsBefore = threadCpu();
  const cpuBefore = process.cpuUsage();
  let t = performance.now();
  const result = await store.importLayer(readTar(task.input, task.inputMode));
  const splitSeconds = (performance.now() - t) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const splitCpuByThread = cpuSplit(threadsBefore, threadCpu());
  const splitPeakRssMiB = peakRssMiB();
  const d = diffStats(store.stats, before);
  const stored = await storedBytes(store);

  t = performance.now();
  const rebuildCpuBefore = process.cpuUsage();
  await pipeline(
    await store.openLayer(result.diffID),
    new Writable({
      write(_chunk, _encoding, callback) {
        callback();
      },
    }),
  );
  const rebuildSeconds = (performance.now() - t) / 1000;
  const rebuildCpu = process.cpuUsage(rebuildCpuBefore);

  let changedAddedBytes: number | undefined;
  let changedTarBytes: number | undefined;
  if (task.changedInput !== undefined) {
    const drop = await openStore({ backend: task.backend, blobPolicy: 'drop', limiter });
    const changed = await drop.importLayer(readTar(task.changedInput, task.inputMode));
    changedAddedBytes = (await storedBytes(drop)) - stored;
    changedTarBytes = changed.size;
  }
  return {
    splitSeconds,
    splitCpuSeconds: (cpu.user + cpu.system) / 1e6,
    splitCpuByThread,
    rebuildCpuSeconds: (rebuildCpu.user + rebuildCpu.system) / 1e6,
    splitPeakRssMiB,
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
    peakRssMiB: peakRssMiB(),
  };
}

interface InputResult {
  readonly bytes: number;
  readonly cpuSeconds: number;
  readonly peakRssMiB: number;
}

/** Reads the dataset and drops it: what the input alone costs this process. */
async function runInputChild(task: ChildTask): Promise<InputResult> {
  const cpuBefore = process.cpuUsage();
  let bytes = 0;
  for await (const chunk of readTar(task.input, task.inputMode) as AsyncIterable<Uint8Array>)
    bytes += chunk.length;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    bytes,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    peakRssMiB: peakRssMiB(),
  };
}

// ---- orchestration ---------------------------------------------------------------------------

const SELF = fileURLToPath(import.meta.url);

async function inChild<R>(task: ChildTask): Promise<R> {
  // Started as stevedore's processes are (with Node's compile cache: limiter.ts compileCacheEnv).
  const child = spawn(process.execPath, [SELF, '--child', JSON.stringify(task)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: compileCacheEnv(),
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  await new Promise<void>((resolve, reject) =>
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`benchmark child exited with ${code}`)),
    ),
  );
  return JSON.parse(out.trim().split('\n').at(-1)!) as R;
}

function format(name: string, dataset: string, r: ChildResult, input: InputResult): string {
  const mb = r.tarBytes / 1e6;
  const gb = r.tarBytes / GB;
  const perGB = (seconds: number): string => (seconds / gb).toFixed(2);
  const threads = Object.entries(r.splitCpuByThread)
    .filter(([, v]) => v > 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${perGB(v)}`)
    .join(', ');
  const lines = [
    `${name} / ${dataset}: ${mb.toFixed(0)} MB tar, ${r.files} files as objects, ${r.objects} object refs`,
    `  split    ${(mb / r.splitSeconds).toFixed(0)} MB/s, ${(r.objects / r.splitSeconds).toFixed(0)} objects/s (${r.splitSeconds.toFixed(2)} s; CPU ${perGB(r.splitCpuSeconds)} s per GB, all threads)`,
    `  threads  CPU s per GB: ${threads === '' ? 'n/a' : threads}`,
    `  requests ${(r.puts / (r.bytesWrittenToBackend / GB)).toFixed(1)} PUT per GB written (${r.puts} PUT, ${r.posts} POST for ${(r.bytesWrittenToBackend / 1e6).toFixed(0)} MB)`,
    `  stored   ${(r.storedBytes / r.uniqueBytes).toFixed(3)} x unique content (${(r.storedBytes / 1e6).toFixed(0)} MB stored / ${(r.uniqueBytes / 1e6).toFixed(0)} MB unique)`,
    `  rebuild  ${(mb / r.rebuildSeconds).toFixed(0)} MB/s (${r.rebuildSeconds.toFixed(2)} s, verified; CPU ${perGB(r.rebuildCpuSeconds)} s per GB)`,
  ];
  if (r.changedAddedBytes !== undefined && r.changedTarBytes !== undefined) {
    lines.push(
      `  1% files changed, drop policy: +${(r.changedAddedBytes / 1e6).toFixed(1)} MB = ${((100 * r.changedAddedBytes) / r.changedTarBytes).toFixed(2)}% of the tar`,
    );
  }
  lines.push(
    `  peak RSS ${r.splitPeakRssMiB.toFixed(0)} MiB at the end of the split, ${r.peakRssMiB.toFixed(0)} MiB overall`,
    `  input    alone (read and dropped, no store): CPU ${(input.cpuSeconds / (input.bytes / GB)).toFixed(2)} s per GB, peak RSS ${input.peakRssMiB.toFixed(0)} MiB`,
  );
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      child: { type: 'string' },
      backend: { type: 'string', default: 'both' },
      dataset: { type: 'string', default: 'both' },
      files: { type: 'string', default: '10000' },
      workers: { type: 'string' },
      memory: { type: 'string' },
      input: { type: 'string', default: 'reused' },
    },
  });
  if (values.input !== 'reused' && values.input !== 'fresh') throw new Error('--input is reused or fresh');
  const inputMode: InputMode = values.input;
  if (values.child !== undefined) {
    const task = JSON.parse(values.child) as ChildTask;
    const result = task.mode === 'input' ? await runInputChild(task) : await runChild(task);
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  }
  const files = Number(values.files);
  const limiter: LimiterOptions = {
    ...(values.workers === undefined ? {} : { workers: Number(values.workers) }),
    ...(values.memory === undefined ? {} : { memoryBytes: Number(values.memory) * MiB }),
  };
  const datasets = values.dataset === 'both' ? (['a', 'b'] as const) : ([values.dataset] as ('a' | 'b')[]);
  const backends = (values.backend === 'both' ? ['directory', 's3'] : [values.backend]).map((b) => {
    if (b !== 'directory' && b !== 's3')
      throw new Error(`--backend: expected directory, s3 or both, got ${b}`);
    return b;
  });

  // The inputs, written once before any measurement (and so in the page cache).
  const inputDir = await mkdtemp(join(tmpdir(), 'stevedore-bench-input-'));
  const inputs = {
    a: join(inputDir, 'synthetic.tar'),
    changed: join(inputDir, 'synthetic-1pc.tar'),
    b: join(inputDir, 'usr-share.tar'),
  };
  if (datasets.includes('a')) {
    await writeSyntheticTar(files, 0, inputs.a);
    await writeSyntheticTar(files, 1, inputs.changed);
  }
  if (datasets.includes('b')) await writeUsrShareTar(inputs.b);
  console.log(
    `load average ${loadavg()
      .map((l) => l.toFixed(1))
      .join(
        ' ',
      )} on ${availableParallelism()} cores; store limiter: ${limiter.workers ?? availableParallelism()} workers, ${(limiter.memoryBytes ?? DEFAULT_MEMORY_BYTES) / MiB} MiB of blocks; input read ${inputMode === 'reused' ? 'into two alternating buffers (read in place)' : 'with a ReadStream (a new Buffer per chunk)'}`,
  );
  try {
    await measureAll(backends, datasets, files, limiter, inputMode, inputs);
  } finally {
    await rm(inputDir, { recursive: true, force: true });
  }
}

async function measureAll(
  backends: readonly ('directory' | 's3')[],
  datasets: readonly ('a' | 'b')[],
  files: number,
  limiter: LimiterOptions,
  inputMode: InputMode,
  inputs: { readonly a: string; readonly changed: string; readonly b: string },
): Promise<void> {
  for (const name of backends) {
    for (const dataset of datasets) {
      const { config: backend, cleanup } = await benchBackend(name);
      try {
        const label = dataset === 'a' ? `synthetic ${files} x 200 KiB` : 'tar of /usr/share';
        const task: Omit<ChildTask, 'mode'> =
          dataset === 'a'
            ? { backend, dataset, input: inputs.a, changedInput: inputs.changed, limiter, inputMode }
            : { backend, dataset, input: inputs.b, limiter, inputMode };
        const result = await inChild<ChildResult>({ ...task, mode: 'store' });
        const input = await inChild<InputResult>({ ...task, mode: 'input' });
        console.log(format(name, label, result, input));
      } finally {
        await cleanup();
      }
    }
  }
}

await main();
