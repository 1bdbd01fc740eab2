import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type { StackInfo } from '@stevedore/testing';
import { describe, expect, it, onTestFinished } from 'vitest';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));

/** Runs main.ts and collects its stdout lines until `count` have arrived. */
async function startTool(
  args: string[],
  count: number,
): Promise<{ child: ChildProcessByStdio<null, Readable, Readable>; lines: string[] }> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  // SIGKILL if a test fails before stopping it: its servers' watchdogs then stop them.
  onTestFinished(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines: string[] = [];
  const reader = createInterface({ input: child.stdout });
  for await (const line of reader) {
    lines.push(line);
    if (lines.length === count) break;
  }
  return { child, lines };
}

async function stopTool(
  child: ChildProcessByStdio<null, Readable, Readable>,
  signal: NodeJS.Signals,
): Promise<unknown[]> {
  const exited = once(child, 'exit');
  child.kill(signal);
  return exited;
}

describe('npm run stack', () => {
  it('prints the stack as JSON with --json and stops cleanly on SIGTERM', async () => {
    const { child, lines } = await startTool(['--json', '--token-expires-in', '30'], 1);
    const info = JSON.parse(lines[0]!) as StackInfo;
    expect(Object.keys(info)).toEqual(['redis', 'registry', 'tokenRegistry', 'basicRegistry', 's3']);
    expect((await fetch(`${info.registry.url}/v2/`)).status).toBe(200);
    const token = await fetch(`${info.tokenRegistry.realm}?service=${info.tokenRegistry.service}`);
    expect(((await token.json()) as { expires_in: number }).expires_in).toBe(30);
    expect(await stopTool(child, 'SIGTERM')).toEqual([0, null]);
    await expect(fetch(`${info.registry.url}/v2/`)).rejects.toThrow();
    await expect(fetch(info.s3.endpoint)).rejects.toThrow();
  });

  it('prints endpoints and credentials as lines and stops cleanly on SIGINT', async () => {
    const { child, lines } = await startTool([], 5);
    expect(lines.map((l) => l.split(/\s{2,}/)[0])).toEqual([
      'redis',
      'registry',
      'token registry',
      'basic registry',
      's3',
    ]);
    expect(lines[2]).toMatch(
      /^token registry {2}http:\/\/127\.0\.0\.1:\d+ {2}user stevedore {2}password [0-9a-f]{24} {2}realm /,
    );
    expect(lines[3]).toMatch(
      /^basic registry {2}http:\/\/127\.0\.0\.1:\d+ {2}user stevedore {2}password [0-9a-f]{24}$/,
    );
    const registryUrl = lines[1]!.split(/\s{2,}/)[1]!;
    expect((await fetch(`${registryUrl}/v2/`)).status).toBe(200);
    expect(await stopTool(child, 'SIGINT')).toEqual([0, null]);
    await expect(fetch(`${registryUrl}/v2/`)).rejects.toThrow();
  });

  it('refuses a bad --token-expires-in with exit code 2', async () => {
    const child = spawn(process.execPath, [MAIN, '--token-expires-in', 'soon'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    expect(await once(child, 'exit')).toEqual([2, null]);
    expect(stderr).toBe('--token-expires-in must be a positive number of seconds, got "soon"\n');
  });
});
