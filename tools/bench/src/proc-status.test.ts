import { describe, expect, it } from 'vitest';
import { cpuSeconds, parseCpuTicks, parseVmHWM, peakRssMiB } from './proc-status.ts';

describe('parseVmHWM', () => {
  it.each([
    { status: 'Name:\tnode\nVmPeak:\t 1000 kB\nVmHWM:\t  262144 kB\nVmRSS:\t 1 kB\n', bytes: 268_435_456 },
    { status: 'VmHWM: 1 kB', bytes: 1024 },
    { status: 'Name:\tkthreadd\nState:\tS (sleeping)\n', bytes: undefined },
    { status: 'VmHWM:\t12 MB\n', bytes: undefined },
  ])('$status -> $bytes', ({ status, bytes }) => {
    expect(parseVmHWM(status)).toBe(bytes);
  });
});

describe('peakRssMiB', () => {
  it('reads this process (a running node has tens of MiB resident)', async () => {
    const peak = await peakRssMiB(process.pid);
    expect(peak).toBeGreaterThan(10);
    expect(peak).toBeLessThan(process.memoryUsage().rss / 1024 / 1024 + 1024);
  });

  it('names the pid it cannot read', async () => {
    // Pids are below 2^22 on Linux (pid_max), so this one never exists.
    await expect(peakRssMiB(2 ** 30)).rejects.toThrow(`cannot read the peak RSS of pid ${2 ** 30}`);
  });
});

describe('parseCpuTicks', () => {
  const tail = 'S 1 2 3 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 9 0 100 1000 100';
  it.each([
    { stat: `4242 (node) ${tail}`, ticks: 1801 },
    { stat: `4242 (a b) (c)) ${tail}`, ticks: 1801 },
    { stat: 'no parenthesis here', ticks: undefined },
    { stat: '4242 (node) S 1 2', ticks: undefined },
  ])('$stat -> $ticks', ({ stat, ticks }) => {
    expect(parseCpuTicks(stat)).toBe(ticks);
  });
});

describe('cpuSeconds', () => {
  it('grows while this process computes', async () => {
    const before = await cpuSeconds(process.pid);
    const until = performance.now() + 150;
    let x = 0;
    while (performance.now() < until) x += Math.sqrt(x + 1);
    expect(x).toBeGreaterThan(0);
    expect(await cpuSeconds(process.pid)).toBeGreaterThan(before);
  });

  it('names the pid it cannot read', async () => {
    await expect(cpuSeconds(2 ** 30)).rejects.toThrow(`cannot read the CPU time of pid ${2 ** 30}`);
  });
});
