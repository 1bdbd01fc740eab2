/**
 * `npm run bench -- pull`: issue 4. Two images sharing a base layer, pushed to a local registry
 * behind the counting proxy, pulled at once by stevedore with 1, 2 and 4 worker processes (each
 * a fresh Redis and store), by `skopeo copy` and by containerd's `ctr images pull`, repeated, and
 * reported as medians with the ratios between tools and issue 4's targets.
 */
import { cpus, totalmem } from 'node:os';
import { parseReference, RegistryClient } from '@stevedore/oci';
import { pushImage, startFaultProxy, startRegistry } from '@stevedore/testing';
import type { PullArgs } from './args.ts';
import { withCleanups } from './cleanup.ts';
import { MB, MiB } from './figures.ts';
import { prepareImageSet, QUICK_SET, USR_SET, USR_SHARE_SET, type ImageSet } from './image-set.ts';
import { findContainerd, runContainerd, runSkopeo, toolVersion, type PeerContext } from './peers.ts';
import { findProgram } from './exec.ts';
import {
  checkTargets,
  compare,
  renderReport,
  summarize,
  TARGETS,
  type Comparison,
  type ConfigSummary,
  type Run,
  type TargetResult,
} from './pull-report.ts';
import { runStevedore, type StoreKind } from './stevedore-run.ts';

export interface PullResults {
  readonly benchmark: 'pull';
  readonly quick: boolean;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly machine: {
    readonly cpus: number;
    readonly cpuModel: string;
    readonly memoryGiB: number;
    readonly node: string;
    readonly platform: string;
  };
  readonly options: { readonly workers: readonly number[]; readonly repeat: number; readonly s3: boolean };
  readonly tools: { readonly skopeo: string | null; readonly containerd: string | null };
  readonly imageSet: {
    readonly name: string;
    readonly cacheDir: string;
    readonly fromCache: boolean;
    readonly images: readonly { readonly ref: string; readonly layers: readonly string[] }[];
    readonly layers: readonly {
      readonly name: string;
      readonly digest: string;
      readonly size: number;
      readonly uncompressedSize: number;
      readonly files: number;
    }[];
    readonly uniqueBlobBytes: number;
    readonly uniqueLayerBytes: number;
    readonly uniqueTarBytes: number;
    readonly uniqueFileContentBytes: number;
    readonly uniqueContentBytes: number;
    readonly files: number;
    readonly skippedEntries: number;
  };
  readonly targets: typeof TARGETS;
  readonly summary: readonly ConfigSummary[];
  readonly comparisons: readonly Comparison[];
  readonly targetResults: readonly TargetResult[];
  readonly runs: readonly (Run & { readonly repetition: number })[];
  /** Peer runs that failed: the benchmark reports the rest and exits non-zero. */
  readonly failures: readonly string[];
  readonly notes: readonly string[];
}

export interface PullOutcome {
  readonly results: PullResults;
  readonly report: string;
}

function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause === undefined ? '' : `: ${describe(err.cause)}`;
  return `${err.message}${cause}`;
}

function setTitle(set: ImageSet, repeat: number): string[] {
  const byName = new Map(set.layers.map((l) => [l.name, l]));
  return [
    set.images.length === 1
      ? `pull benchmark (${set.spec.name} set): one image, ${set.spec.compression}`
      : `pull benchmark (${set.spec.name} set): ${set.images.length} images sharing a base layer, ${set.spec.compression}, pulled at once`,
    ...set.spec.images.map(
      (i) =>
        `  ${i.ref} = ${i.layers
          .map((n) => {
            const l = byName.get(n)!;
            return `${n} (${(l.layer.descriptor.size / MB).toFixed(1)} MB, ${l.files} files)`;
          })
          .join(' + ')}`,
    ),
    `  unique: ${(set.uniqueLayerBytes / MB).toFixed(1)} MB of layer blobs, ${(set.uniqueTarBytes / MB).toFixed(1)} MB of tar, ` +
      `${set.files} files, ${(set.uniqueFileContentBytes / MB).toFixed(1)} MB of distinct file content`,
    `  median of ${repeat} run${repeat === 1 ? '' : 's'} per row; wall time from submit to ${set.images.length === 1 ? 'the image' : 'every image'} done`,
  ];
}

export async function runPullBench(
  args: PullArgs & { readonly quick: boolean },
  log: (line: string) => void,
): Promise<PullOutcome> {
  const startedAt = new Date().toISOString();
  const notes: string[] = [];
  const failures: string[] = [];
  const spec = args.quick ? QUICK_SET : args.set === 'usr-share' ? USR_SHARE_SET : USR_SET;
  const set = await prepareImageSet(spec, {
    onBuild: (dir) =>
      log(`building the ${args.quick ? 'quick' : '/usr'} image set in ${dir} (cached for reruns) ...`),
  });
  log(
    `image set ${set.spec.name}: ${(set.uniqueLayerBytes / MB).toFixed(1)} MB of layers${set.cached ? ', from the cache' : ''} (${set.dir})`,
  );
  if (set.skipped.length > 0)
    notes.push(`${set.skipped.length} unreadable entries were left out of the layers`);

  const skopeo = args.peers ? await findProgram('skopeo') : undefined;
  const containerd = args.peers ? await findContainerd() : undefined;
  if (!args.peers) notes.push('--no-peers: skopeo and containerd were not run');
  else if (skopeo === undefined)
    notes.push('skopeo is not installed (Debian package skopeo): its runs are skipped');
  if (args.peers && containerd === undefined) {
    notes.push(
      'containerd is not installed (Debian package containerd: apt-get install -y containerd): its runs are skipped',
    );
  }
  const tools = {
    skopeo: skopeo === undefined ? null : await toolVersion(skopeo, ['--version']),
    containerd: containerd === undefined ? null : await toolVersion(containerd.containerd, ['--version']),
  };

  const runs = await withCleanups(async (defer) => {
    const registry = await startRegistry({ auth: 'none' });
    defer(() => registry.stop());
    const proxy = await startFaultProxy({ upstream: registry.url });
    defer(() => proxy.stop());
    log(`pushing ${set.images.length} images to ${registry.url} ...`);
    const client = new RegistryClient();
    for (const { ref, image } of set.images)
      await pushImage(client, parseReference(`${registry.host}/${ref}`), image);

    const peerContext: PeerContext = { proxy, refs: set.images.map((i) => i.ref), timeoutMs: args.timeoutMs };
    const backends: StoreKind[] = args.s3 ? ['directory', 's3'] : ['directory'];
    const all: (Run & { repetition: number })[] = [];
    // Repetitions are interleaved (every tool once, then again) so that load from others on a
    // shared machine spreads over all tools instead of hitting one.
    for (let repetition = 1; repetition <= args.repeat; repetition++) {
      const prefix = `[${repetition}/${args.repeat}]`;
      for (const backend of backends) {
        for (const workers of args.workers) {
          const run = await runStevedore({ set, proxy, workers, backend, timeoutMs: args.timeoutMs });
          log(
            `${prefix} stevedore ${backend}, ${workers} worker process${workers === 1 ? '' : 'es'}: ${run.wallSeconds.toFixed(2)} s, ` +
              `registry ${(run.registryBytes / MB).toFixed(1)} MB, peak RSS ${Math.max(...run.peakRssMiB).toFixed(0)} MiB`,
          );
          all.push({ ...run, repetition });
        }
      }
      if (skopeo !== undefined) {
        try {
          const run = await runSkopeo(skopeo, peerContext);
          log(
            `${prefix} skopeo copy x${set.images.length}: ${run.wallSeconds.toFixed(2)} s, registry ${(run.registryBytes / MB).toFixed(1)} MB`,
          );
          all.push({ ...run, repetition });
        } catch (err) {
          failures.push(`skopeo run ${repetition}: ${describe(err)}`);
          log(`${prefix} skopeo failed: ${describe(err)}`);
        }
      }
      if (containerd !== undefined) {
        try {
          const run = await runContainerd(containerd, peerContext);
          log(
            `${prefix} containerd (${run.mode}) ctr images pull x${set.images.length}: ${run.wallSeconds.toFixed(2)} s, ` +
              `registry ${(run.registryBytes / MB).toFixed(1)} MB`,
          );
          all.push({ ...run, repetition });
        } catch (err) {
          failures.push(`containerd run ${repetition}: ${describe(err)}`);
          log(`${prefix} containerd failed: ${describe(err)}`);
        }
      }
    }
    return all;
  });

  const uniqueContentBytes = set.uniqueBlobBytes + set.uniqueFileContentBytes;
  const summary = summarize(runs, { ...set, uniqueContentBytes });
  const comparisons = compare(summary);
  const targetResults = checkTargets(summary, comparisons);
  notes.push(
    'each stevedore worker process is one `stevedore worker all` (fetcher, hasher and committer in one process); starting them is not timed',
    'MB/s: unique compressed layer bytes (gz) and unique uncompressed tar bytes (tar) over the wall time',
    'store/unique: every object in the store (blobs kept, packs, splitstreams, records) over unique blob bytes plus distinct file content (files over 64 bytes, by sha256); packs zstd-compress objects, so it can be below 1',
    "redis cmds/layer: total_commands_processed from the first submit to the last completion, over the layers of every image pulled (a shared layer counts once per image); it includes the workers' idle polling and metric flushes",
    `load 1m: the machine's 1-minute load average as each run started (${cpus().length} cores, shared); runs under load are slower`,
    "skopeo copies every image at once into one OCI layout (fetch only); containerd pulls them all at once and unpacks them (fetch and unpack); peak RSS of containerd is the daemon's",
    ...failures.map((f) => `FAILED: ${f}`),
  );
  const results: PullResults = {
    benchmark: 'pull',
    quick: args.quick,
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryGiB: Math.round(totalmem() / (1024 * MiB)),
      node: process.version,
      platform: `${process.platform}/${process.arch}`,
    },
    options: { workers: args.workers, repeat: args.repeat, s3: args.s3 },
    tools,
    imageSet: {
      name: set.spec.name,
      cacheDir: set.dir,
      fromCache: set.cached,
      images: set.spec.images.map((i) => ({ ref: i.ref, layers: i.layers })),
      layers: set.layers.map((l) => ({
        name: l.name,
        digest: l.layer.descriptor.digest,
        size: l.layer.descriptor.size,
        uncompressedSize: l.layer.uncompressedSize,
        files: l.files,
      })),
      uniqueBlobBytes: set.uniqueBlobBytes,
      uniqueLayerBytes: set.uniqueLayerBytes,
      uniqueTarBytes: set.uniqueTarBytes,
      uniqueFileContentBytes: set.uniqueFileContentBytes,
      uniqueContentBytes,
      files: set.files,
      skippedEntries: set.skipped.length,
    },
    targets: TARGETS,
    summary,
    comparisons,
    targetResults,
    runs,
    failures,
    notes,
  };
  const report = renderReport({
    title: setTitle(set, args.repeat),
    summary,
    comparisons,
    targets: targetResults,
    notes,
  });
  return { results, report };
}
