import { describe, expect, it } from 'vitest';
import { checkTargets, compare, renderReport, summarize, type Run, type SetFigures } from './pull-report.ts';

const SET: SetFigures = {
  uniqueBlobBytes: 400e6,
  uniqueLayerBytes: 400e6,
  uniqueTarBytes: 1000e6,
  uniqueContentBytes: 1200e6,
};

function stevedore(workers: number, wallSeconds: number, peak: number[], registryBytes = 400e6): Run {
  return {
    tool: 'stevedore',
    backend: 'directory',
    workers,
    wallSeconds,
    registryBytes,
    storeBytes: 600e6,
    redisCommands: 4000,
    layerPulls: 4,
    topCommands: [['evalsha', 1000]],
    peakRssMiB: peak,
    cpuSeconds: wallSeconds * 1.5,
    storeServerCpuSeconds: null,
    loadAverage1m: 1.5,
  };
}

const RUNS: Run[] = [
  stevedore(1, 12, [300]),
  stevedore(1, 10, [320]),
  stevedore(1, 11, [310]),
  stevedore(2, 8, [200, 600]),
  {
    tool: 'skopeo',
    mode: 'oci layout',
    wallSeconds: 5,
    registryBytes: 652e6,
    peakRssMiB: undefined,
    loadAverage1m: 2,
  },
  {
    tool: 'containerd',
    mode: 'overlayfs',
    wallSeconds: 40,
    registryBytes: 400e6,
    peakRssMiB: 90,
    loadAverage1m: 3.25,
  },
];

describe('summarize', () => {
  const summary = summarize(RUNS, SET);

  it('takes medians per tool, store and worker count', () => {
    expect(summary.map((s) => [s.tool, s.mode, s.workers, s.runs, s.wallSeconds])).toEqual([
      ['stevedore', 'directory', 1, 3, 11],
      ['stevedore', 'directory', 2, 1, 8],
      ['skopeo', 'oci layout', null, 1, 5],
      ['containerd', 'overlayfs', null, 1, 40],
    ]);
    expect(summary[0]!.wallSecondsAll).toEqual([12, 10, 11]);
  });

  it('computes throughput, byte ratios and per-layer commands', () => {
    expect(summary[0]).toMatchObject({
      compressedMBps: 400 / 11,
      tarMBps: 1000 / 11,
      registryRatio: 1,
      storeRatio: 0.5,
      redisCommandsPerLayer: 1000,
      peakRssMiB: 310,
      cpuSeconds: 16.5,
      loadAverage1m: 1.5,
    });
    expect(summary[2]).toMatchObject({
      registryRatio: 1.63,
      tarMBps: null,
      storeRatio: null,
      peakRssMiB: null,
      cpuSeconds: null,
    });
    expect(summary[3]).toMatchObject({ tarMBps: 25, peakRssMiB: 90, loadAverage1m: 3.25 });
  });

  it('takes the largest worker of a run as its peak RSS', () => {
    expect(summary[1]!.peakRssMiB).toBe(600);
  });

  it("takes the S3 server's CPU on S3 only", () => {
    const onS3 = (wallSeconds: number, server: number): Run => ({
      ...(stevedore(1, wallSeconds, [300]) as Extract<Run, { tool: 'stevedore' }>),
      backend: 's3',
      storeServerCpuSeconds: server,
    });
    const both = summarize([onS3(12, 3), onS3(10, 5), onS3(11, 4), stevedore(1, 9, [300])], SET);
    expect(both.map((s) => [s.mode, s.storeServerCpuSeconds])).toEqual([
      ['s3', 4],
      ['directory', null],
    ]);
    expect(summary[2]!.storeServerCpuSeconds).toBeNull();
  });
});

describe('compare and checkTargets', () => {
  const summary = summarize(RUNS, SET);
  const comparisons = compare(summary);

  it('relates each stevedore configuration to skopeo and containerd', () => {
    expect(comparisons).toEqual([
      { mode: 'directory', workers: 1, stevedoreOverSkopeo: 2.2, containerdOverStevedore: 40 / 11 },
      { mode: 'directory', workers: 2, stevedoreOverSkopeo: 1.6, containerdOverStevedore: 5 },
    ]);
  });

  it('has no ratio for a peer that did not run', () => {
    expect(compare(summarize(RUNS.slice(0, 3), SET))).toEqual([
      { mode: 'directory', workers: 1, stevedoreOverSkopeo: null, containerdOverStevedore: null },
    ]);
  });

  it('checks every target of issue 4', () => {
    expect(checkTargets(summary, comparisons).map((t) => [t.figure, t.met])).toEqual([
      ['stevedore directory 1 worker: registry bytes / unique', true],
      ['stevedore directory 1 worker: peak RSS per worker process (MiB)', true],
      ['stevedore directory 2 workers: registry bytes / unique', true],
      ['stevedore directory 2 workers: peak RSS per worker process (MiB)', false],
      ['stevedore directory 1 worker: stevedore time / skopeo time', true],
      ['stevedore directory 1 worker: containerd time / stevedore time', true],
      ['stevedore directory 2 workers: stevedore time / skopeo time', true],
      ['stevedore directory 2 workers: containerd time / stevedore time', true],
    ]);
  });

  it('fails the dedup target when a blob is fetched twice', () => {
    const twice = summarize([stevedore(4, 9, [300], 650e6)], SET);
    expect(checkTargets(twice, compare(twice))[0]).toEqual({
      figure: 'stevedore directory 4 workers: registry bytes / unique',
      value: 1.625,
      target: '<= 1',
      met: false,
    });
  });
});

describe('renderReport', () => {
  it('prints every figure of every configuration, the ratios and the target tally', () => {
    const summary = summarize(RUNS, SET);
    const comparisons = compare(summary);
    const report = renderReport({
      title: ['pull benchmark'],
      summary,
      comparisons,
      targets: checkTargets(summary, comparisons),
      notes: ['a note'],
    });
    expect(report.split('\n').slice(0, 7)).toEqual([
      'pull benchmark',
      '',
      'tool        store/mode  workers  runs  wall s  CPU s  S3 server CPU s  MB/s gz  MB/s tar  registry/unique  store/unique  redis cmds/layer  peak RSS MiB  load 1m',
      '----------  ----------  -------  ----  ------  -----  ---------------  -------  --------  ---------------  ------------  ----------------  ------------  -------',
      'stevedore    directory        1     3   11.00   16.5                -     36.4      90.9             1.00          0.50              1000           310      1.5',
      'stevedore    directory        2     1    8.00   12.0                -     50.0     125.0             1.00          0.50              1000           600      1.5',
      'skopeo      oci layout        -     1    5.00      -                -     80.0         -             1.63             -                 -             -      2.0',
    ]);
    expect(report).toContain(
      '  stevedore directory 1w       stevedore/skopeo 2.20 (target <= 2.5: met);  containerd/stevedore 3.64 (target >= 3: met)',
    );
    expect(report).toContain('  skopeo oci layout            1.63  652.0 MB  (issue 4: 1.63)');
    expect(report).toContain('  stevedore directory 2w       600 (target <= 512: NOT met) MiB');
    expect(report).toContain('targets: 7 met, 1 not met, 0 not measured');
    expect(report.endsWith('notes:\n  - a note\n')).toBe(true);
  });
});
