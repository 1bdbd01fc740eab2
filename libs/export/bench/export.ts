/**
 * Export benchmark: the benchmark image (about 600 MB uncompressed, 50,000 files, three layers)
 * exported from a directory store in each format and layer compression, side by side with
 * `podman save` (docker-archive, uncompressed: what it writes) and containerd's `ctr images export`
 * (the compressed blobs as stored) when they are installed. Prints wall time, MB/s (of uncompressed
 * layer input and of archive output), peak RSS and bytes written to temporary files.
 *
 *     npx node libs/export/bench/export.ts [--quick] [--repeat N] [--json]
 *
 * Each stevedore export runs in its own process (a fresh CLI-like process: peak RSS is its own)
 * and writes a file on the same disk as the peers; its time is the export's, from plan to renamed
 * file (what the API and the export job pay). The `stevedore CLI` row times the whole
 * `stevedore export` command, process start included, the way the peers' commands are timed: the
 * ratios against podman save are given both ways. gzip and zstd run twice: `cold` without variant
 * records (the counting pass first, docs/export.md), `warm` with them (one pass). Bytes written to
 * temporary files are the process's write(2) bytes (`/proc/<pid>/io` wchar) minus the archive's
 * size: stevedore writes its archive once, under a temporary name renamed at the end.
 *
 * The benchmark image is built once and cached in `<tmpdir>/stevedore-export-bench/<key>/`
 * (layer blobs and a directory store), keyed by its spec and zlib's version.
 *
 * `runExportBench()` is what tools/bench calls; this file runs it when executed directly.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileCacheEnv, openStore, SERVICE_GC_PACE_ABOVE_BYTES } from '@stevedore/store';
import {
  buildImage,
  containerdConfig,
  generateTree,
  treeStats,
  storeFixtureImage,
  writeLayerFile,
  treeTarEntries,
  type GenerateTreeOptions,
  type Layer,
} from '@stevedore/testing';
import {
  planExport,
  writeArchiveFile,
  type ExportFormat,
  type LayerCompressionChoice,
} from '../src/index.ts';

const MB = 1000 * 1000;
const MiB = 1024 * 1024;
const REF = 'bench.local/export/image:1';
const CACHE_ROOT = join(tmpdir(), 'stevedore-export-bench');
/** Bump when the image spec or how it is stored changes. */
const CACHE_FORMAT = 1;
const THIS_FILE = fileURLToPath(import.meta.url);
/** The stevedore command, run as a user runs it (the `stevedore CLI` row). */
const CLI = fileURLToPath(new URL('../../../apps/cli/bin/stevedore.mjs', import.meta.url));
/** Peers' peak RSS and write counters are sampled this often from /proc. */
const SAMPLE_MS = 20;
const PEER_TIMEOUT_MS = 10 * 60 * 1000;

/** Three layers like a real image: a big base, a runtime, an application. */
function imageSpec(quick: boolean): GenerateTreeOptions[] {
  const scale = quick ? 10 : 1;
  return [
    {
      seed: 101,
      files: 30_000 / scale,
      largeFiles: 24 / scale,
      largeSize: { min: 6 * MiB, max: 14 * MiB },
      root: 'usr',
    },
    {
      seed: 102,
      files: 15_000 / scale,
      largeFiles: 9 / scale,
      largeSize: { min: 6 * MiB, max: 14 * MiB },
      root: 'opt/runtime',
    },
    {
      seed: 103,
      files: 5_000 / scale,
      largeFiles: 4 / scale,
      largeSize: { min: 2 * MiB, max: 8 * MiB },
      root: 'app',
    },
  ].map((s) => ({ ...s, files: Math.round(s.files), largeFiles: Math.max(1, Math.round(s.largeFiles)) }));
}

interface BenchImage {
  readonly storeDir: string;
  readonly layers: number;
  readonly files: number;
  /** Sum of the layer tars. */
  readonly uncompressedBytes: number;
  /** Sum of the gzip blobs as pulled. */
  readonly compressedBytes: number;
}

async function buildBenchImage(quick: boolean, progress: (line: string) => void): Promise<BenchImage> {
  const spec = imageSpec(quick);
  const key = createHash('sha256')
    .update(JSON.stringify({ CACHE_FORMAT, spec, zlib: process.versions.zlib }))
    .digest('hex')
    .slice(0, 16);
  const dir = join(CACHE_ROOT, key);
  const done = join(dir, 'image.json');
  if (existsSync(done)) return JSON.parse(await readFile(done, 'utf8')) as BenchImage;
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'layers'), { recursive: true });
  const layers: Layer[] = [];
  let files = 0;
  for (const [i, options] of spec.entries()) {
    const tree = generateTree(options);
    files += treeStats(tree).files;
    progress(
      `building layer ${i + 1}/${spec.length} (${options.files} small, ${options.largeFiles} large files)…`,
    );
    layers.push(await writeLayerFile(treeTarEntries(tree), join(dir, 'layers'), { compression: 'gzip' }));
  }
  const image = buildImage({ layers });
  const storeDir = join(dir, 'store');
  const store = await openStore({ backend: { kind: 'directory', path: storeDir } });
  try {
    progress(`importing ${layers.length} layers into the store…`);
    await storeFixtureImage(store, image, REF);
  } finally {
    await store.close();
  }
  const result: BenchImage = {
    storeDir,
    layers: layers.length,
    files,
    uncompressedBytes: layers.reduce((n, l) => n + l.uncompressedSize, 0),
    compressedBytes: layers.reduce((n, l) => n + l.descriptor.size, 0),
  };
  await writeFile(`${done}.tmp`, JSON.stringify(result));
  await rename(`${done}.tmp`, done);
  return result;
}

// ---- one stevedore export, in a child process -------------------------------------------------

interface ChildRequest {
  readonly storeDir: string;
  readonly format: ExportFormat;
  readonly compression: LayerCompressionChoice;
  readonly out: string;
}

interface ChildResult {
  readonly seconds: number;
  readonly bytes: number;
  readonly digest: string;
  readonly variantsComputed: number;
  readonly maxRssKiB: number;
  readonly writeBytes: number;
  /** User plus system CPU time of the export. */
  readonly cpuSeconds: number;
}

async function procIo(pid: number | 'self'): Promise<{ wchar: number }> {
  const text = await readFile(`/proc/${pid}/io`, 'utf8');
  return { wchar: Number(/wchar: (\d+)/.exec(text)?.[1] ?? 0) };
}

/**
 * Peak RSS of a process (VmHWM), KiB. Not `process.resourceUsage().maxRSS`: Linux carries the
 * parent's RSS at the fork over the exec into a child's maxrss (a child of this 300 MiB bench
 * process would report at least that much).
 */
async function vmHwmKiB(pid: number | 'self'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
}

async function runChild(request: ChildRequest): Promise<void> {
  const store = await openStore({
    backend: { kind: 'directory', path: request.storeDir },
    // As the services run exports (STEVEDORE_GC_PACE_ABOVE_MIB's default), not the library's.
    gcPaceAboveBytes: SERVICE_GC_PACE_ABOVE_BYTES,
  });
  const before = await procIo('self');
  const cpu = process.cpuUsage();
  const started = performance.now();
  const plan = await planExport(store, {
    targets: [{ input: REF }],
    format: request.format,
    compression: request.compression,
  });
  const written = await writeArchiveFile(store, plan, request.out);
  const seconds = (performance.now() - started) / 1000;
  const after = await procIo('self');
  await store.close();
  const result: ChildResult = {
    seconds,
    bytes: written.size,
    digest: written.digest,
    variantsComputed: plan.variantsComputed,
    maxRssKiB: await vmHwmKiB('self'),
    writeBytes: after.wchar - before.wchar,
    cpuSeconds: (() => {
      const used = process.cpuUsage(cpu);
      return (used.user + used.system) / 1e6;
    })(),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

async function spawnChild(request: ChildRequest): Promise<ChildResult> {
  // Started as stevedore's processes are (with Node's compile cache: see compileCacheEnv).
  const child = spawn(process.execPath, [THIS_FILE, '--child', JSON.stringify(request)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: compileCacheEnv(),
  });
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  const [code] = (await once(child, 'close')) as [number | null];
  if (code !== 0) throw new Error(`export child (${request.format}, ${request.compression}) exited ${code}`);
  return JSON.parse(out) as ChildResult;
}

// ---- peers ------------------------------------------------------------------------------------

interface Sampled {
  readonly seconds: number;
  readonly maxRssKiB: number;
  readonly writeBytes: number;
}

/** Runs a command, sampling the peak RSS and write(2) bytes of `watch` (default: the command). */
async function runSampled(
  program: string,
  args: readonly string[],
  options: { watchPid?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<Sampled> {
  const started = performance.now();
  const child = spawn(program, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: options.env ?? process.env,
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString('utf8')).slice(-4096)));
  const pid = options.watchPid ?? child.pid!;
  const base = options.watchPid === undefined ? 0 : (await procIo(pid)).wchar;
  let maxRssKiB = 0;
  let wchar = base;
  const sample = async (): Promise<void> => {
    try {
      maxRssKiB = Math.max(maxRssKiB, await vmHwmKiB(pid));
      wchar = (await procIo(pid)).wchar;
    } catch {
      // The process exited between two samples: keep the last values.
    }
  };
  const timer = setInterval(() => void sample(), SAMPLE_MS);
  const killer = setTimeout(() => child.kill('SIGKILL'), PEER_TIMEOUT_MS);
  const [code] = (await once(child, 'close')) as [number | null];
  clearInterval(timer);
  clearTimeout(killer);
  if (options.watchPid !== undefined) await sample();
  if (code !== 0) throw new Error(`${program} ${args.join(' ')} exited ${code}: ${stderr.trim()}`);
  return { seconds: (performance.now() - started) / 1000, maxRssKiB, writeBytes: wchar - base };
}

function which(program: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, program))) return join(dir, program);
  }
  return undefined;
}

interface Row {
  readonly tool: string;
  readonly format: string;
  readonly layers: string;
  readonly seconds: number;
  readonly bytes: number;
  readonly maxRssMiB: number;
  /** Bytes written beyond the archive itself (temporary files and the like). */
  readonly tempBytes: number;
  readonly note?: string;
}

/**
 * Runs a command that writes `out` `repeat` times (at least once) and gives the figures of its
 * fastest run: the size of what it wrote, and what it wrote besides. `out` is removed before each
 * run and after the last.
 */
async function fastestWriting(
  repeat: number,
  out: string,
  run: (attempt: number) => Promise<Sampled>,
): Promise<Pick<Row, 'seconds' | 'bytes' | 'maxRssMiB' | 'tempBytes'>> {
  let best: Sampled | undefined;
  for (let i = 0; i < Math.max(1, repeat); i++) {
    await rm(out, { force: true });
    const attempt = await run(i);
    if (best === undefined || attempt.seconds < best.seconds) best = attempt;
  }
  const bytes = (await stat(out)).size;
  await rm(out, { force: true });
  return {
    seconds: best!.seconds,
    bytes,
    maxRssMiB: best!.maxRssKiB / 1024,
    tempBytes: Math.max(0, best!.writeBytes - bytes),
  };
}

/**
 * `stevedore export` as a user runs it, timed like the peers: the whole command, process start
 * and module loading included (the in-process rows time the export alone, as the API and the
 * export job, long-running processes, pay it).
 */
async function cliExport(
  storeDir: string,
  work: string,
  repeat: number,
  progress: (l: string) => void,
): Promise<Row> {
  const out = join(work, 'cli-docker-none.tar');
  const figures = await fastestWriting(repeat, out, (i) => {
    progress(`stevedore export (the CLI) --format docker --compression none (${i + 1})…`);
    return runSampled(
      process.execPath,
      [CLI, 'export', REF, '-o', out, '--format', 'docker', '--compression', 'none'],
      {
        env: compileCacheEnv({ ...process.env, STEVEDORE_STORE: storeDir }),
      },
    );
  });
  return {
    tool: 'stevedore CLI',
    format: 'docker',
    layers: 'none',
    ...figures,
    note: 'the whole command, as podman save is timed',
  };
}

async function podmanSave(
  work: string,
  archive: string,
  repeat: number,
  progress: (l: string) => void,
): Promise<{ rows: Row[]; notes: string[] }> {
  const podman = which('podman');
  if (podman === undefined) return { rows: [], notes: ['podman is not installed: no podman save figures'] };
  const rows: Row[] = [];
  const notes: string[] = [];
  // Both drivers: overlay is podman's default here, vfs is the one that works everywhere as root
  // (issue 5 names it); podman save reads the layers differently from each.
  for (const driver of ['overlay', 'vfs']) {
    // Short: podman refuses a runroot longer than 50 characters.
    const root = await mkdtemp(join('/tmp', `sx-pd-`));
    const base = [
      '--root',
      join(root, 'root'),
      '--runroot',
      join(root, 'run'),
      '--tmpdir',
      join(root, 'tmp'),
      '--storage-driver',
      driver,
      '--cgroup-manager',
      'cgroupfs',
      '--events-backend',
      'none',
    ];
    try {
      progress(`podman (${driver}): loading the image…`);
      await runSampled(podman, [...base, 'load', '-q', '-i', archive]);
      const out = join(work, 'podman-save.tar');
      progress(`podman (${driver}): podman save…`);
      const figures = await fastestWriting(repeat, out, () =>
        runSampled(podman, [...base, 'save', '-q', '--format', 'docker-archive', '-o', out, REF], {
          env: { ...process.env, TMPDIR: join(root, 'tmp') },
        }),
      );
      rows.push({
        tool: `podman save (${driver})`,
        format: 'docker',
        layers: 'none',
        ...figures,
      });
    } catch (err) {
      notes.push(
        `podman with ${driver} failed: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`,
      );
    } finally {
      await runSampled(podman, [...base, 'system', 'reset', '--force']).catch(() => undefined);
      await rm(root, { recursive: true, force: true });
    }
  }
  return { rows, notes };
}

async function ctrExport(
  work: string,
  archive: string,
  repeat: number,
  progress: (l: string) => void,
): Promise<Row | string> {
  const [containerd, ctr] = [which('containerd'), which('ctr')];
  if (containerd === undefined || ctr === undefined)
    return 'containerd is not installed: no ctr images export figures';
  // Short: socket paths must fit in sockaddr_un.
  const dir = await mkdtemp(join(tmpdir(), 'sx-ctrd-'));
  await writeFile(join(dir, 'config.toml'), containerdConfig(dir));
  const daemon = spawn(containerd, ['--config', join(dir, 'config.toml')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  const booted = new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer): void => {
      log = (log + c.toString('utf8')).slice(-8192);
      if (log.includes('containerd successfully booted')) resolve();
    };
    daemon.stdout.on('data', onData);
    daemon.stderr.on('data', onData);
    daemon.once('exit', (code) => reject(new Error(`containerd exited ${code}: ${log.slice(-500)}`)));
  });
  try {
    await Promise.race([
      booted,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('containerd did not boot in 30 s')), 30_000),
      ),
    ]);
    const args = ['--address', join(dir, 'c.sock'), '--namespace', 'stevedore-bench'];
    progress('containerd: importing the image…');
    await runSampled(ctr, [...args, 'images', 'import', '--no-unpack', '--all-platforms', archive]);
    const out = join(work, 'ctr-export.tar');
    progress('containerd: ctr images export…');
    // The daemon reads the blobs; the client writes the file.
    const figures = await fastestWriting(repeat, out, () =>
      runSampled(ctr, [...args, 'images', 'export', out, REF]),
    );
    return {
      tool: 'ctr images export',
      format: 'oci+docker',
      layers: 'original',
      ...figures,
      note: 'RSS of the ctr client (the daemon serves the blobs)',
    };
  } catch (err) {
    return `containerd run failed: ${err instanceof Error ? err.message : String(err)}`;
  } finally {
    if (daemon.pid !== undefined && daemon.exitCode === null) {
      process.kill(-daemon.pid, 'SIGTERM');
      await once(daemon, 'exit');
    }
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- the run ----------------------------------------------------------------------------------

export interface ExportBenchOptions {
  readonly quick?: boolean;
  /** Runs of each case; the fastest is reported (the machine may be shared). Default 1. */
  readonly repeat?: number;
}

export interface ExportBenchResults {
  readonly image: Omit<BenchImage, 'storeDir'>;
  readonly rows: readonly (Row & { readonly mbPerSecondIn: number; readonly mbPerSecondOut: number })[];
  readonly notes: readonly string[];
  /** 1-minute load average before and after the run: other work on the machine skews the times. */
  readonly loadAverage: readonly [number, number];
  readonly repeat: number;
  readonly ratios: Readonly<Record<string, number | undefined>>;
}

const CASES: readonly { format: ExportFormat; compression: LayerCompressionChoice }[] = [
  { format: 'docker', compression: 'none' },
  { format: 'docker', compression: 'original' },
  { format: 'oci', compression: 'original' },
  { format: 'oci', compression: 'none' },
  { format: 'docker', compression: 'zstd' },
  { format: 'oci', compression: 'zstd' },
  { format: 'docker', compression: 'gzip' },
  { format: 'oci', compression: 'gzip' },
];

export async function runExportBench(
  options: ExportBenchOptions = {},
  progress: (line: string) => void = (l) => process.stderr.write(`${l}\n`),
): Promise<ExportBenchResults> {
  const image = await buildBenchImage(options.quick === true, progress);
  const repeat = Math.max(1, options.repeat ?? 1);
  const loadBefore = loadavg()[0]!;
  const work = await mkdtemp(join(tmpdir(), 'stevedore-export-bench-run-'));
  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    let dockerNone = '';
    let dockerOriginal = '';
    const seenCold = new Set<LayerCompressionChoice>();
    for (const { format, compression } of CASES) {
      const temperatures: ('cold' | 'warm' | '')[] =
        compression === 'gzip' || compression === 'zstd'
          ? seenCold.has(compression)
            ? ['warm']
            : ['cold', 'warm']
          : [''];
      for (const temperature of temperatures) {
        // Cold: no variant records, the export compresses each layer once to size it, then streams.
        if (temperature === 'cold') seenCold.add(compression);
        const out = join(work, `${format}-${compression}${temperature === '' ? '' : `-${temperature}`}.tar`);
        let best: ChildResult | undefined;
        let maxRssKiB = 0;
        for (let run = 0; run < repeat; run++) {
          if (temperature === 'cold') {
            await rm(join(image.storeDir, 'layer-variants'), { recursive: true, force: true });
          }
          progress(
            `stevedore export --format ${format} --compression ${compression} ${temperature} (${run + 1})…`,
          );
          const attempt = await spawnChild({ storeDir: image.storeDir, format, compression, out });
          maxRssKiB = Math.max(maxRssKiB, attempt.maxRssKiB);
          if (best === undefined || attempt.seconds < best.seconds) best = attempt;
        }
        const r = { ...best!, maxRssKiB };
        rows.push({
          tool: `stevedore${temperature === '' ? '' : ` (${temperature})`}`,
          format,
          layers: compression,
          seconds: r.seconds,
          bytes: r.bytes,
          maxRssMiB: r.maxRssKiB / 1024,
          tempBytes: Math.max(0, r.writeBytes - r.bytes),
          ...(r.variantsComputed > 0
            ? { note: `${r.variantsComputed} layers compressed first to size them` }
            : {}),
        });
        if (format === 'docker' && compression === 'none') dockerNone = out;
        else if (format === 'docker' && compression === 'original') dockerOriginal = out;
        else await rm(out, { force: true });
      }
    }
    rows.push(await cliExport(image.storeDir, work, repeat, progress));
    const podman = await podmanSave(work, dockerNone, repeat, progress);
    rows.push(...podman.rows);
    notes.push(...podman.notes);
    const ctr = await ctrExport(work, dockerOriginal, repeat, progress);
    if (typeof ctr === 'string') notes.push(ctr);
    else rows.push(ctr);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const withRates = rows.map((r) => ({
    ...r,
    mbPerSecondIn: image.uncompressedBytes / MB / r.seconds,
    mbPerSecondOut: r.bytes / MB / r.seconds,
  }));
  const find = (tool: string, format: string, layers: string): number | undefined =>
    withRates.find((r) => r.tool.startsWith(tool) && r.format === format && r.layers === layers)?.seconds;
  const podmanSeconds = (driver: string): number | undefined =>
    withRates.find((r) => r.tool === `podman save (${driver})`)?.seconds;
  const ctrSeconds = withRates.find((r) => r.tool === 'ctr images export')?.seconds;
  const dockerNoneSeconds = withRates.find(
    (r) => r.tool === 'stevedore' && r.format === 'docker' && r.layers === 'none',
  )?.seconds;
  const cliSeconds = withRates.find((r) => r.tool === 'stevedore CLI')?.seconds;
  const originalSeconds = find('stevedore', 'oci', 'original');
  const zstdWarm = find('stevedore (warm)', 'docker', 'zstd');
  const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined ? undefined : a / b;
  const { storeDir: _storeDir, ...imageInfo } = image;
  return {
    image: imageInfo,
    rows: withRates,
    notes,
    loadAverage: [loadBefore, loadavg()[0]!],
    repeat,
    ratios: {
      'podman save (overlay) / stevedore docker none (target >= 3)': ratio(
        podmanSeconds('overlay'),
        dockerNoneSeconds,
      ),
      'podman save (vfs) / stevedore docker none (target >= 3)': ratio(
        podmanSeconds('vfs'),
        dockerNoneSeconds,
      ),
      'podman save (overlay) / stevedore CLI docker none, both whole commands (target >= 3)': ratio(
        podmanSeconds('overlay'),
        cliSeconds,
      ),
      'podman save (vfs) / stevedore CLI docker none, both whole commands (target >= 3)': ratio(
        podmanSeconds('vfs'),
        cliSeconds,
      ),
      'ctr export / stevedore oci original (target >= 1)': ratio(ctrSeconds, originalSeconds),
      'stevedore docker zstd warm, MB/s of uncompressed input (target >= 200)':
        zstdWarm === undefined ? undefined : image.uncompressedBytes / MB / zstdWarm,
      'peak RSS MiB, largest stevedore export (target <= 512)': Math.max(
        ...withRates.filter((r) => r.tool.startsWith('stevedore')).map((r) => r.maxRssMiB),
      ),
    },
  };
}

export function formatReport(results: ExportBenchResults): string {
  const { image } = results;
  const lines = [
    `benchmark image: ${image.layers} layers, ${image.files} files, ${(image.uncompressedBytes / MB).toFixed(1)} MB uncompressed, ${(image.compressedBytes / MB).toFixed(1)} MB gzip`,
    '',
    `${'tool'.padEnd(22)} ${'format'.padEnd(10)} ${'layers'.padEnd(8)} ${'archive MB'.padStart(10)} ${'wall s'.padStart(7)} ${'MB/s in'.padStart(8)} ${'MB/s out'.padStart(8)} ${'peak RSS'.padStart(9)} ${'temp bytes'.padStart(10)}`,
  ];
  for (const r of results.rows) {
    lines.push(
      `${r.tool.padEnd(22)} ${r.format.padEnd(10)} ${r.layers.padEnd(8)} ${(r.bytes / MB).toFixed(1).padStart(10)} ${r.seconds.toFixed(2).padStart(7)} ${r.mbPerSecondIn.toFixed(0).padStart(8)} ${r.mbPerSecondOut.toFixed(0).padStart(8)} ${`${r.maxRssMiB.toFixed(0)} MiB`.padStart(9)} ${String(r.tempBytes).padStart(10)}${r.note === undefined ? '' : `  ${r.note}`}`,
    );
  }
  lines.push('');
  lines.push(
    `fastest of ${results.repeat} run(s) per case; load average ${results.loadAverage[0].toFixed(2)} before, ${results.loadAverage[1].toFixed(2)} after (2 cores here: other work skews the times)`,
  );
  for (const note of results.notes) lines.push(`note: ${note}`);
  for (const [name, value] of Object.entries(results.ratios)) {
    lines.push(`${name}: ${value === undefined ? 'n/a' : value.toFixed(2)}`);
  }
  return `${lines.join('\n')}\n`;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  if (args[0] === '--child') {
    await runChild(JSON.parse(args[1] ?? '{}') as ChildRequest);
  } else {
    const repeatAt = args.indexOf('--repeat');
    const results = await runExportBench({
      quick: args.includes('--quick'),
      repeat: repeatAt < 0 ? 1 : Number(args[repeatAt + 1]),
    });
    process.stdout.write(
      args.includes('--json') ? `${JSON.stringify(results, null, 2)}\n` : formatReport(results),
    );
  }
}
