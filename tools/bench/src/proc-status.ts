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

/**
 * /proc/PID/`file` parsed by `parse`. Throws, naming the pid and `what`, when it cannot be read
 * (not Linux, or the process is gone) or parsed.
 */
async function readProc<T>(
  pid: number,
  file: 'status' | 'stat',
  what: string,
  parse: (text: string) => T | undefined,
): Promise<T> {
  let text: string;
  try {
    text = await readFile(`/proc/${pid}/${file}`, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the ${what} of pid ${pid}`, { cause: err });
  }
  const value = parse(text);
  if (value === undefined) throw new Error(`/proc/${pid}/${file} has no ${what}`);
  return value;
}

/** Peak RSS of `pid` in MiB. Throws, naming the pid, when it cannot be read (not Linux, or gone). */
export async function peakRssMiB(pid: number): Promise<number> {
  return (await readProc(pid, 'status', 'peak RSS', parseVmHWM)) / MiB;
}

/** Clock ticks per second of /proc/PID/stat times (USER_HZ: 100 on every Linux architecture). */
const USER_HZ = 100;

/**
 * utime + stime of a /proc/PID/stat text (fields 14 and 15: every thread of the process), in clock
 * ticks; undefined when the text is not a stat line. The command name (field 2) may hold spaces
 * and parentheses, so fields are counted after its last ')'.
 */
export function parseCpuTicks(stat: string): number | undefined {
  const end = stat.lastIndexOf(')');
  if (end < 0) return undefined;
  // After ") ": field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
  const fields = stat
    .slice(end + 2)
    .trim()
    .split(' ');
  const [utime, stime] = [fields[11], fields[12]];
  if (utime === undefined || stime === undefined || !/^\d+$/.test(utime) || !/^\d+$/.test(stime))
    return undefined;
  return Number(utime) + Number(stime);
}

/** CPU seconds `pid` has used so far (all its threads). Throws, naming the pid, when unreadable. */
export async function cpuSeconds(pid: number): Promise<number> {
  return (await readProc(pid, 'stat', 'CPU time', parseCpuTicks)) / USER_HZ;
}
