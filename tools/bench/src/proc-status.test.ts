import { describe, expect, it } from 'vitest';
import { parseVmHWM, peakRssMiB } from './proc-status.ts';

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
