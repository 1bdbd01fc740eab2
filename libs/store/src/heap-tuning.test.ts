import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const HEAP_TUNING = fileURLToPath(new URL('./heap-tuning.ts', import.meta.url));

/**
 * Runs, in a fresh Node process (the flags are global to a process), an allocation pattern whose
 * objects survive a few scavenges (what makes V8 grow its young generation), and reports the
 * new space's committed size in MiB. With `tune`, the flags are set after start, as openStore does.
 */
function newSpaceAfterChurn(tune: boolean): number {
  const script = `
    import { getHeapSpaceStatistics } from 'node:v8';
    ${tune ? `const { tuneHeapForStreaming } = await import(${JSON.stringify(HEAP_TUNING)}); tuneHeapForStreaming();` : ''}
    const keep = [];
    for (let i = 0; i < 400000; i++) {
      keep.push({ i, s: 'x' + i, a: [i, i + 1] });
      if (keep.length > 50000) keep.splice(0, 25000);
    }
    const space = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    process.stdout.write(String(space.space_size / 1048576));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  return Number(out);
}

describe('tuneHeapForStreaming', () => {
  it('keeps the young generation at its initial size where V8 would grow it', () => {
    const untuned = newSpaceAfterChurn(false);
    const tuned = newSpaceAfterChurn(true);
    // Without the flags the same churn grows new space (so the check below can fail).
    expect(untuned).toBeGreaterThan(tuned);
    expect(tuned).toBeLessThanOrEqual(16);
  });
});

/**
 * Runs, in a fresh Node process, noteBufferChurn with the given threshold and churn steps; reports
 * the numbers of full GCs and scavenges observed after each step (and whether a global `gc` leaked
 * out).
 */
function gcsAfter(
  aboveBytes: number,
  steps: readonly number[],
): { majors: number[]; minors: number[]; globalGc: boolean } {
  const script = `
    import { PerformanceObserver, constants } from 'node:perf_hooks';
    import { setTimeout as sleep } from 'node:timers/promises';
    const { noteBufferChurn, setGcPaceAbove } = await import(${JSON.stringify(HEAP_TUNING)});
    let major = 0;
    let minor = 0;
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++;
        if (e.detail.kind === constants.NODE_PERFORMANCE_GC_MINOR) minor++;
      }
    }).observe({ entryTypes: ['gc'] });
    setGcPaceAbove(${aboveBytes});
    const majors = [];
    const minors = [];
    for (const bytes of ${JSON.stringify(steps)}) {
      noteBufferChurn(bytes);
      await sleep(50);
      majors.push(major);
      minors.push(minor);
    }
    process.stdout.write(JSON.stringify({ majors, minors, globalGc: typeof globalThis.gc === 'function' }));
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  return JSON.parse(out) as { majors: number[]; minors: number[]; globalGc: boolean };
}

describe('noteBufferChurn', () => {
  const MiB = 1024 * 1024;
  const PACE = 8 * MiB; // GC_PACE_BYTES; a full GC every 4th paced GC (MAJOR_GC_EVERY)

  it('asks for a scavenge per pace of churn, and every 4th time a full GC, while the RSS is above the threshold', () => {
    // Any process is above 1 byte of RSS.
    const r = gcsAfter(1, [PACE - 1, 1, PACE, PACE / 2, PACE / 2, PACE, 3 * PACE, PACE]);
    expect(r.majors).toEqual([0, 0, 0, 0, 0, 1, 1, 1]);
    // Paced scavenges after steps 2, 3, 5, 7 and 8 (V8 may add its own, never fewer).
    const paced = [0, 1, 2, 2, 3, 3, 4, 5];
    r.minors.forEach((n, i) => expect(n).toBeGreaterThanOrEqual(paced[i]!));
    expect(r.minors[0]).toBeLessThan(r.minors[1]!);
    expect(r.globalGc).toBe(false);
  });

  it('does nothing below the threshold, or when turned off', () => {
    for (const above of [1024 * 1024 * MiB, 0]) {
      const r = gcsAfter(above, [PACE, PACE, PACE, PACE, 4 * PACE]);
      expect(r.majors).toEqual([0, 0, 0, 0, 0]);
      expect(r.minors).toEqual([0, 0, 0, 0, 0]);
    }
  });
});
