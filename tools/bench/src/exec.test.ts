import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { findProgram, runCommand, startDaemon } from './exec.ts';

describe('findProgram', () => {
  it.each([
    { program: 'sh', path: '/nonexistent:/bin', found: '/bin/sh' },
    { program: 'sh', path: '::/bin', found: '/bin/sh' },
    { program: 'no-such-program-here', path: '/bin:/usr/bin', found: undefined },
    { program: 'sh', path: '', found: undefined },
  ])('$program on "$path" -> $found', async ({ program, path, found }) => {
    expect(await findProgram(program, path)).toBe(found);
  });
});

describe('runCommand', () => {
  it('returns the output of a command that succeeds', async () => {
    const result = await runCommand('/bin/sh', ['-c', 'echo out; echo err >&2'], { timeoutMs: 10_000 });
    expect(result.output.split('\n').sort()).toEqual(['', 'err', 'out']);
    expect(result.seconds).toBeGreaterThan(0);
  });

  it('names the command and shows its output when it fails', async () => {
    await expect(
      runCommand('/bin/sh', ['-c', 'echo no such image; exit 3'], { timeoutMs: 10_000 }),
    ).rejects.toThrow('sh -c echo no such image; exit 3 failed (exit code 3, signal null):\nno such image');
  });

  it('kills a command that runs past its time limit', async () => {
    await expect(
      runCommand('/bin/sh', ['-c', 'echo started; exec sleep 30'], { timeoutMs: 200 }),
    ).rejects.toThrow('sh -c echo started; exec sleep 30 did not finish within 200 ms:\nstarted');
  });

  it('reports a program that cannot be started', async () => {
    await expect(runCommand('/nonexistent/tool', [], { timeoutMs: 1000 })).rejects.toThrow(
      'cannot run tool ',
    );
  });
});

/** Exited: no /proc entry, or a zombie waiting to be reaped. */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw err;
  }
}

describe('startDaemon', () => {
  it('waits for its readiness line and stops its whole process group', async () => {
    const daemon = startDaemon('test daemon', '/bin/sh', ['-c', 'sleep 30 & echo ready $!; wait']);
    const [, child] = await daemon.waitForOutput(/ready (\d+)/, 10_000);
    expect(processGone(Number(child))).toBe(false);
    await daemon.stop();
    // The shell's child is in the group: it got the signal too. No event says when the kernel has
    // finished it, so check its state for a while.
    const deadline = Date.now() + 5_000;
    while (!processGone(Number(child)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(processGone(Number(child))).toBe(true);
    await daemon.stop();
  });

  it('fails the wait when the daemon exits first, with its output', async () => {
    const daemon = startDaemon('test daemon', '/bin/sh', ['-c', 'echo bad config; exit 1']);
    await expect(daemon.waitForOutput(/ready/, 10_000)).rejects.toThrow(
      'test daemon exited before printing /ready/:\nbad config',
    );
    await daemon.stop();
  });
});
