/**
 * Peak resident memory of a running process, from Linux's /proc/PID/status: `VmHWM` is the
 * high-water mark of the resident set over the process's life (all its threads, so a worker's
 * hashing threads count). It must be read before the process exits.
 */
import { readFile } from 'node:fs/promises';
import { KiB, MiB } from './figures.ts';

/** `VmHWM:   123456 kB` in a /proc/PID/status text, in bytes; undefined when absent. */
export function parseVmHWM(status: string): number | undefined {
  const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status);
  return match === null ? undefined : Number(match[1]) * KiB;
}

/** Peak RSS of `pid` in MiB. Throws, naming the pid, when it cannot be read (not Linux, or gone). */
export async function peakRssMiB(pid: number): Promise<number> {
  let status: string;
  try {
    status = await readFile(`/proc/${pid}/status`, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the peak RSS of pid ${pid}`, { cause: err });
  }
  const bytes = parseVmHWM(status);
  if (bytes === undefined) throw new Error(`/proc/${pid}/status has no VmHWM line`);
  return bytes / MiB;
}
