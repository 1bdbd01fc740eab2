/**
 * Smoke tests: the benchmarks run end to end in --quick mode and print every figure. No timing is
 * asserted (a benchmark is not a timed test); byte counts that do not depend on timing are.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PullResults } from './pull.ts';
import type { SplitResults } from './split.ts';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

interface Exit {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function bench(args: readonly string[]): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let resultsDir: string;
beforeAll(async () => {
  resultsDir = await mkdtemp(join(tmpdir(), 'stevedore-bench-test-'));
});
afterAll(async () => {
  await rm(resultsDir, { recursive: true, force: true });
});

describe('npm run bench', () => {
  it('prints usage with --help and refuses a bad command line with exit code 2', async () => {
    const help = await bench(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: npm run bench -- <name> \[options\]/);
    const bad = await bench(['pull', '--workers', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^bench: --workers takes an integer from 1 to 32, not "0"\n\nusage:/);
  });

  it('pull --quick --s3 --json: every tool and configuration with every figure', async () => {
    const run = await bench(['pull', '--quick', '--s3', '--json', '--results-dir', resultsDir]);
    expect(run.stderr).toContain('results written to');
    expect(run.code, run.stderr).toBe(0);
    const results = JSON.parse(run.stdout) as PullResults;
    expect(JSON.parse(await readFile(join(resultsDir, 'pull-quick.json'), 'utf8'))).toEqual(results);

    expect(results.quick).toBe(true);
    expect(results.failures).toEqual([]);
    expect(results.imageSet.files).toBe(1020);
    expect(results.imageSet.uniqueTarBytes).toBe(11_118_080);

    const stevedore = results.summary.filter((s) => s.tool === 'stevedore');
    expect(stevedore.map((s) => `${s.mode}/${s.workers}`)).toEqual([
      'directory/1',
      'directory/2',
      'directory/4',
      's3/1',
      's3/2',
      's3/4',
    ]);
    for (const s of stevedore) {
      // issue 4: every blob fetched once, whatever the number of workers.
      expect(s.registryBytes, `${s.mode}/${s.workers}`).toBe(results.imageSet.uniqueBlobBytes);
      expect(s.registryRatio).toBe(1);
      for (const figure of [
        s.wallSeconds,
        s.compressedMBps,
        s.tarMBps,
        s.storeRatio,
        s.redisCommandsPerLayer,
      ]) {
        expect(figure).toBeGreaterThan(0);
      }
      expect(s.peakRssMiB).toBeGreaterThan(0);
    }
    const workerRuns = results.runs.filter((r) => r.tool === 'stevedore');
    expect(workerRuns.map((r) => r.peakRssMiB.length)).toEqual([1, 2, 4, 1, 2, 4]);

    const peers = results.summary.filter((s) => s.tool !== 'stevedore').map((s) => s.tool);
    const expectedPeers = [
      ...(results.tools.skopeo === null ? [] : ['skopeo']),
      ...(results.tools.containerd === null ? [] : ['containerd']),
    ];
    expect(peers).toEqual(expectedPeers);
    if (results.tools.skopeo === null) expect(results.notes.join('\n')).toContain('skopeo is not installed');
    if (results.tools.containerd === null)
      expect(results.notes.join('\n')).toContain('containerd is not installed');
    for (const s of results.summary.filter((x) => x.tool !== 'stevedore')) {
      expect(s.wallSeconds).toBeGreaterThan(0);
      // skopeo may fetch the shared base twice (the duplicate fetch), never less than everything.
      expect(s.registryBytes).toBeGreaterThanOrEqual(results.imageSet.uniqueBlobBytes);
    }
    for (const c of results.comparisons) {
      if (results.tools.skopeo !== null) expect(c.stevedoreOverSkopeo).toBeGreaterThan(0);
      if (results.tools.containerd !== null) expect(c.containerdOverStevedore).toBeGreaterThan(0);
    }
    expect(results.targetResults.length).toBe(stevedore.length * 4);
  });

  it('split --quick: runs the store benchmark and keeps its figures', async () => {
    const run = await bench(['split', '--quick', '--results-dir', resultsDir]);
    expect(run.code, run.stderr).toBe(0);
    const results = JSON.parse(await readFile(join(resultsDir, 'split-quick.json'), 'utf8')) as SplitResults;
    expect(results.command).toEqual([
      'node',
      'libs/store/bench/split.ts',
      '--dataset',
      'a',
      '--files',
      '100',
      '--backend',
      'directory',
    ]);
    expect(results.sections.map((s) => s.title.split(':')[0])).toEqual([
      'directory / synthetic 100 x 200 KiB',
    ]);
    expect(results.sections[0]!.figures.length).toBeGreaterThan(0);
    // The table is the store benchmark's own lines, printed as they come.
    for (const figure of results.sections[0]!.figures) expect(run.stdout).toContain(figure);
  });
});
