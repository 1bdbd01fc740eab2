/**
 * Figures of the pull benchmark from its raw runs: medians per configuration, the ratios between
 * tools, the targets of issue 4, and the plain-text report. Pure (no I/O).
 */
import { atLeast, atMost, fixed, MB, median, ratio, renderTable, type TargetCheck } from './figures.ts';
import type { PeerRun } from './peers.ts';
import type { StevedoreRun } from './stevedore-run.ts';

/** issue 4's targets. */
export const TARGETS = {
  /** Every blob fetched once, whatever the number of workers. */
  registryRatio: 1.0,
  /** skopeo's ratio reported in issue 4 for two concurrent pulls sharing a base. */
  skopeoRegistryRatio: 1.63,
  /** stevedore's pull and split time over skopeo's copy time, at most. */
  stevedoreOverSkopeo: 2.5,
  /** containerd's pull and unpack time over stevedore's, at least. */
  containerdOverStevedore: 3,
  /** Peak RSS of one worker process, MiB. */
  peakRssMiB: 512,
} as const;

/** What the benchmark knows about the images, for ratios. */
export interface SetFigures {
  readonly uniqueBlobBytes: number;
  readonly uniqueLayerBytes: number;
  readonly uniqueTarBytes: number;
  /** Unique blobs plus unique file content: what a deduplicating store must hold, uncompressed. */
  readonly uniqueContentBytes: number;
}

export type Run = StevedoreRun | PeerRun;

/** Medians of one configuration (a tool, its store or mode, and a worker count). */
export interface ConfigSummary {
  readonly tool: Run['tool'];
  readonly mode: string;
  readonly workers: number | null;
  readonly runs: number;
  readonly wallSeconds: number;
  readonly wallSecondsAll: readonly number[];
  /** Unique compressed layer bytes per second of wall time. */
  readonly compressedMBps: number;
  /** Unique uncompressed tar bytes per second (null: the tool does not unpack or split). */
  readonly tarMBps: number | null;
  readonly registryBytes: number;
  readonly registryRatio: number;
  readonly storeBytes: number | null;
  readonly storeRatio: number | null;
  readonly redisCommandsPerLayer: number | null;
  /** The largest worker (or daemon) of a run, median over runs; null when not measured. */
  readonly peakRssMiB: number | null;
  /** CPU seconds of all stevedore worker processes during the pull, median; null for peers. */
  readonly cpuSeconds: number | null;
  /** CPU seconds of the local S3 server during the pull, median; null off S3 and for peers. */
  readonly storeServerCpuSeconds: number | null;
  /** Median 1-minute load average of the machine when the runs started. */
  readonly loadAverage1m: number;
}

export interface Comparison {
  readonly mode: string;
  readonly workers: number;
  readonly stevedoreOverSkopeo: number | null;
  readonly containerdOverStevedore: number | null;
}

export interface TargetResult {
  readonly figure: string;
  readonly value: number | null;
  readonly target: string;
  readonly met: boolean | null;
}

function key(run: Run): string {
  return run.tool === 'stevedore' ? `stevedore/${run.backend}/${run.workers}` : `${run.tool}/${run.mode}`;
}

/** NaN (a figure that could not be computed) becomes null, as JSON would make it anyway. */
function orNull(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

export function summarize(runs: readonly Run[], set: SetFigures): ConfigSummary[] {
  const groups = new Map<string, Run[]>();
  for (const run of runs) groups.set(key(run), [...(groups.get(key(run)) ?? []), run]);
  return [...groups.values()].map((group): ConfigSummary => {
    const first = group[0]!;
    const wall = median(group.map((r) => r.wallSeconds));
    const registryBytes = median(group.map((r) => r.registryBytes));
    const common = {
      runs: group.length,
      wallSeconds: wall,
      wallSecondsAll: group.map((r) => r.wallSeconds),
      compressedMBps: set.uniqueLayerBytes / MB / wall,
      registryBytes,
      registryRatio: ratio(registryBytes, set.uniqueBlobBytes),
      loadAverage1m: median(group.map((r) => r.loadAverage1m)),
    };
    if (first.tool === 'stevedore') {
      const own = group as StevedoreRun[];
      const storeBytes = median(own.map((r) => r.storeBytes));
      return {
        tool: 'stevedore',
        mode: first.backend,
        workers: first.workers,
        ...common,
        tarMBps: set.uniqueTarBytes / MB / wall,
        storeBytes,
        storeRatio: ratio(storeBytes, set.uniqueContentBytes),
        redisCommandsPerLayer: median(own.map((r) => r.redisCommands / r.layerPulls)),
        peakRssMiB: median(own.map((r) => Math.max(...r.peakRssMiB))),
        cpuSeconds: median(own.map((r) => r.cpuSeconds)),
        storeServerCpuSeconds:
          first.storeServerCpuSeconds === null ? null : median(own.map((r) => r.storeServerCpuSeconds ?? 0)),
      };
    }
    const peers = group as PeerRun[];
    const peaks = peers.flatMap((r) => (r.peakRssMiB === undefined ? [] : [r.peakRssMiB]));
    return {
      tool: first.tool,
      mode: first.mode,
      workers: null,
      ...common,
      tarMBps: first.tool === 'containerd' ? set.uniqueTarBytes / MB / wall : null,
      storeBytes: null,
      storeRatio: null,
      redisCommandsPerLayer: null,
      peakRssMiB: peaks.length === 0 ? null : median(peaks),
      cpuSeconds: null,
      storeServerCpuSeconds: null,
    };
  });
}

export function compare(summary: readonly ConfigSummary[]): Comparison[] {
  const skopeo = summary.find((s) => s.tool === 'skopeo');
  const containerd = summary.find((s) => s.tool === 'containerd');
  return summary
    .filter((s) => s.tool === 'stevedore')
    .map((s) => ({
      mode: s.mode,
      workers: s.workers ?? 0,
      stevedoreOverSkopeo: skopeo === undefined ? null : orNull(ratio(s.wallSeconds, skopeo.wallSeconds)),
      containerdOverStevedore:
        containerd === undefined ? null : orNull(ratio(containerd.wallSeconds, s.wallSeconds)),
    }));
}

function result(figure: string, value: number | null, check: TargetCheck, target: string): TargetResult {
  return { figure, value, target, met: check.met ?? null };
}

export function checkTargets(
  summary: readonly ConfigSummary[],
  comparisons: readonly Comparison[],
): TargetResult[] {
  const out: TargetResult[] = [];
  for (const s of summary.filter((x) => x.tool === 'stevedore')) {
    const label = `stevedore ${s.mode} ${s.workers} worker${s.workers === 1 ? '' : 's'}`;
    out.push(
      result(
        `${label}: registry bytes / unique`,
        orNull(s.registryRatio),
        atMost(s.registryRatio, TARGETS.registryRatio),
        `<= ${TARGETS.registryRatio}`,
      ),
      result(
        `${label}: peak RSS per worker process (MiB)`,
        s.peakRssMiB,
        atMost(s.peakRssMiB ?? Number.NaN, TARGETS.peakRssMiB),
        `<= ${TARGETS.peakRssMiB}`,
      ),
    );
  }
  for (const c of comparisons) {
    const label = `stevedore ${c.mode} ${c.workers} worker${c.workers === 1 ? '' : 's'}`;
    out.push(
      result(
        `${label}: stevedore time / skopeo time`,
        c.stevedoreOverSkopeo,
        atMost(c.stevedoreOverSkopeo ?? Number.NaN, TARGETS.stevedoreOverSkopeo),
        `<= ${TARGETS.stevedoreOverSkopeo}`,
      ),
      result(
        `${label}: containerd time / stevedore time`,
        c.containerdOverStevedore,
        atLeast(c.containerdOverStevedore ?? Number.NaN, TARGETS.containerdOverStevedore),
        `>= ${TARGETS.containerdOverStevedore}`,
      ),
    );
  }
  return out;
}

function mb(bytes: number): string {
  return `${fixed(bytes / MB, 1)} MB`;
}

function opt(value: number | null, decimals: number): string {
  return value === null ? '-' : fixed(value, decimals);
}

export interface ReportInput {
  readonly title: readonly string[];
  readonly summary: readonly ConfigSummary[];
  readonly comparisons: readonly Comparison[];
  readonly targets: readonly TargetResult[];
  readonly notes: readonly string[];
}

export function renderReport(input: ReportInput): string {
  const table = renderTable(
    [
      'tool',
      'store/mode',
      'workers',
      'runs',
      'wall s',
      'CPU s',
      'S3 server CPU s',
      'MB/s gz',
      'MB/s tar',
      'registry/unique',
      'store/unique',
      'redis cmds/layer',
      'peak RSS MiB',
      'load 1m',
    ],
    input.summary.map((s) => [
      s.tool,
      s.mode,
      s.workers === null ? '-' : String(s.workers),
      String(s.runs),
      fixed(s.wallSeconds, 2),
      opt(s.cpuSeconds, 1),
      opt(s.storeServerCpuSeconds, 1),
      fixed(s.compressedMBps, 1),
      opt(s.tarMBps, 1),
      fixed(s.registryRatio, 2),
      opt(s.storeRatio, 2),
      opt(s.redisCommandsPerLayer, 0),
      opt(s.peakRssMiB, 0),
      fixed(s.loadAverage1m, 1),
    ]),
  );
  const skopeo = input.summary.find((s) => s.tool === 'skopeo');
  const containerd = input.summary.find((s) => s.tool === 'containerd');
  const lines = [...input.title, '', table, '', 'registry bytes / unique blob bytes, per tool:'];
  for (const s of input.summary) {
    const label = s.tool === 'stevedore' ? `stevedore ${s.mode} ${s.workers}w` : `${s.tool} ${s.mode}`;
    const target =
      s.tool === 'stevedore'
        ? `(target ${TARGETS.registryRatio.toFixed(2)})`
        : s.tool === 'skopeo'
          ? `(issue 4: ${TARGETS.skopeoRegistryRatio.toFixed(2)})`
          : '';
    lines.push(
      `  ${label.padEnd(28)} ${fixed(s.registryRatio, 2)}  ${mb(s.registryBytes)}  ${target}`.trimEnd(),
    );
  }
  lines.push('', 'time ratios (median wall times):');
  for (const c of input.comparisons) {
    const label = `stevedore ${c.mode} ${c.workers}w`;
    const vsSkopeo =
      skopeo === undefined
        ? 'skopeo not run'
        : `stevedore/skopeo ${atMost(c.stevedoreOverSkopeo ?? Number.NaN, TARGETS.stevedoreOverSkopeo).text}`;
    const vsContainerd =
      containerd === undefined
        ? 'containerd not run'
        : `containerd/stevedore ${atLeast(c.containerdOverStevedore ?? Number.NaN, TARGETS.containerdOverStevedore).text}`;
    lines.push(`  ${label.padEnd(28)} ${vsSkopeo};  ${vsContainerd}`);
  }
  lines.push('', 'peak RSS per worker process:');
  for (const s of input.summary.filter((x) => x.tool === 'stevedore')) {
    lines.push(
      `  ${`stevedore ${s.mode} ${s.workers}w`.padEnd(28)} ${atMost(s.peakRssMiB ?? Number.NaN, TARGETS.peakRssMiB, 0).text} MiB`,
    );
  }
  const missed = input.targets.filter((t) => t.met === false).length;
  const unknown = input.targets.filter((t) => t.met === null).length;
  lines.push(
    '',
    `targets: ${input.targets.length - missed - unknown} met, ${missed} not met, ${unknown} not measured`,
  );
  if (input.notes.length > 0) lines.push('', 'notes:', ...input.notes.map((n) => `  - ${n}`));
  return `${lines.join('\n')}\n`;
}
