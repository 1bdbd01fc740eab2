import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isAlive, spawnManaged } from './process.ts';
import { makeTempDir, removeTempDir } from './temp-dir.ts';

/** How often and how long to look for a process that should disappear (no event exists for another process's death). */
const GONE_POLL_MS = 20;
const GONE_TIMEOUT_MS = 5_000;

async function waitUntilGone(pid: number): Promise<boolean> {
  const deadline = performance.now() + GONE_TIMEOUT_MS;
  while (isAlive(pid)) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, GONE_POLL_MS));
  }
  return true;
}

const REDIS_MODULE = fileURLToPath(new URL('./redis.ts', import.meta.url));

/**
 * A separate Node process that starts a Redis with its temp dir under `tmp`, prints its pid,
 * then `then` (exit, or wait to be killed).
 */
async function parentWithRedis(
  then: 'exit' | 'wait',
  tmp: string,
): Promise<{ parentPid: number; redisPid: number; parentExited: Promise<unknown> }> {
  const script = `
    const { startRedis } = await import(${JSON.stringify(REDIS_MODULE)});
    const redis = await startRedis();
    console.log(JSON.stringify({ pid: redis.pid }));
    ${then === 'exit' ? 'process.exit(0);' : 'setInterval(() => {}, 1000);'}
  `;
  const parent = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, TMPDIR: tmp },
  });
  const parentExited = once(parent, 'exit');
  const [line] = (await once(parent.stdout, 'data')) as [Buffer];
  const { pid } = JSON.parse(line.toString()) as { pid: number };
  return { parentPid: parent.pid!, redisPid: pid, parentExited };
}

describe('spawnManaged', () => {
  it('captures output, waits for a line, and stop() kills the process group', async () => {
    const proc = spawnManaged('sh', ['-c', 'echo ready; echo oops >&2; sleep 60 & wait'], {
      name: 'sleeper',
    });
    expect((await proc.waitForOutput(/ready\n/))[0]).toBe('ready\n');
    await proc.waitForOutput(/oops/);
    expect(proc.output()).toBe('ready\noops\n');
    await proc.stop();
    expect(await proc.exited).toEqual({ code: null, signal: 'SIGTERM' });
    expect(isAlive(proc.pid)).toBe(false);
  });

  it('rejects waitForOutput when the process exits first, quoting its output', async () => {
    const proc = spawnManaged('sh', ['-c', 'echo bye; exit 3'], { name: 'quitter' });
    await expect(proc.waitForOutput(/never/)).rejects.toThrow(
      'quitter exited (code 3, signal null) before printing /never/:\nbye',
    );
    await proc.stop();
  });

  it('rejects waitForOutput after its timeout', async () => {
    const proc = spawnManaged('sh', ['-c', 'exec sleep 60'], { name: 'silent' });
    await expect(proc.waitForOutput(/x/, 50)).rejects.toThrow('silent did not print /x/ within 50 ms');
    await proc.stop();
  });

  it('kills the server when its parent is SIGKILLed (stdin watchdog)', async () => {
    const tmp = await makeTempDir('process-test');
    try {
      const { parentPid, redisPid } = await parentWithRedis('wait', tmp);
      expect(isAlive(redisPid)).toBe(true);
      process.kill(parentPid, 'SIGKILL');
      expect(await waitUntilGone(redisPid)).toBe(true);
    } finally {
      // A SIGKILLed parent cannot remove its temp dirs: this one holds them.
      await removeTempDir(tmp);
    }
  });

  it('kills the server and removes its temp dir when its parent exits without stopping it', async () => {
    const tmp = await makeTempDir('process-test');
    try {
      const { redisPid, parentExited } = await parentWithRedis('exit', tmp);
      expect(await waitUntilGone(redisPid)).toBe(true);
      // The parent's exit handler kills the server, then removes the dir: both before it is gone
      // (the server can be gone while the handler is still removing).
      await parentExited;
      expect(await readdir(tmp)).toEqual([]);
    } finally {
      await removeTempDir(tmp);
    }
  });
});
