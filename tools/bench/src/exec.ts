/**
 * Running the peer tools (skopeo, ctr, containerd): finding them on PATH, running a command to
 * completion with a time limit, and a long-running daemon in its own process group that dies with
 * this process.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { trackProcessGroup } from './cleanup.ts';

/** Output kept per command for error messages. */
const TAIL_BYTES = 64 * 1024;
const TAIL_LINES = 20;
/** How long a daemon gets to exit after SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 10_000;

/** The absolute path of `program` on PATH, or undefined when it is not installed. */
export async function findProgram(
  program: string,
  path = process.env.PATH ?? '',
): Promise<string | undefined> {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, program);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this PATH entry: keep looking; the caller reports a program that is nowhere.
    }
  }
  return undefined;
}

class Tail {
  #text = '';
  add(chunk: Buffer): void {
    this.#text = (this.#text + chunk.toString('utf8')).slice(-TAIL_BYTES);
  }
  get text(): string {
    return this.#text;
  }
  lines(n = TAIL_LINES): string {
    return this.#text.trimEnd().split('\n').slice(-n).join('\n');
  }
}

export interface CommandResult {
  readonly seconds: number;
  /** The last 64 KiB of stdout and stderr, interleaved. */
  readonly output: string;
}

/**
 * Runs `program args…` to completion. Throws, naming the command and with the output's tail,
 * when it exits non-zero, is killed, or runs longer than `timeoutMs` (then it gets SIGKILL).
 */
export async function runCommand(
  program: string,
  args: readonly string[],
  options: { readonly timeoutMs: number; readonly env?: NodeJS.ProcessEnv },
): Promise<CommandResult> {
  const started = performance.now();
  const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
  const tail = new Tail();
  child.stdout.on('data', (c: Buffer) => tail.add(c));
  child.stderr.on('data', (c: Buffer) => tail.add(c));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, options.timeoutMs);
  const name = `${program.split('/').at(-1)} ${args.join(' ')}`;
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', (err) => reject(new Error(`cannot run ${name}`, { cause: err })));
      child.once('close', (c, s) => resolve([c, s]));
    });
    if (timedOut) throw new Error(`${name} did not finish within ${options.timeoutMs} ms:\n${tail.lines()}`);
    if (code !== 0) {
      throw new Error(`${name} failed (exit code ${code}, signal ${signal}):\n${tail.lines()}`);
    }
  } finally {
    clearTimeout(timer);
  }
  return { seconds: (performance.now() - started) / 1000, output: tail.text };
}

export interface Daemon {
  readonly pid: number;
  /** Resolves with the first match of `pattern` in the output; rejects if the daemon exits first. */
  waitForOutput(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  output(): string;
  /** SIGTERM to its process group, SIGKILL after a grace period. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * The watchdog of libs/testing's process.ts: a `cat` holding the read end of the daemon's stdin
 * pipe; when this process dies, even by SIGKILL, the pipe closes and the whole group gets SIGTERM.
 */
const WATCHDOG = 'exec 3<&0; { cat <&3 >/dev/null; kill -TERM 0; } & exec "$@" 3<&-';

/** Starts `program args…` as the leader of its own process group, tied to this process's life. */
export function startDaemon(name: string, program: string, args: readonly string[]): Daemon {
  const child = spawn('sh', ['-c', WATCHDOG, 'sh', program, ...args], {
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name}: cannot spawn ${program}`);
  const untrack = trackProcessGroup(pid);
  const tail = new Tail();
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    tail.add(chunk);
    for (const l of listeners) l();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  // The watchdog never reads what we write; an EPIPE only means the group is gone.
  child.stdin.on('error', () => undefined);
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      for (const l of listeners) l();
      resolve();
    }),
  );
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  const killGroup = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') {
        throw new Error(`cannot send ${signal} to ${name} (process group ${pid})`, { cause: err });
      }
    }
  };
  return {
    pid,
    output: () => tail.text,
    waitForOutput(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const done = (): void => {
          listeners.delete(check);
          clearTimeout(timer);
        };
        const check = (): void => {
          const match = tail.text.match(pattern);
          if (match !== null) {
            done();
            resolve(match);
          } else if (!running()) {
            done();
            reject(new Error(`${name} exited before printing ${pattern}:\n${tail.lines()}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${name} did not print ${pattern} within ${timeoutMs} ms:\n${tail.lines()}`));
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
    async stop() {
      if (running()) {
        killGroup('SIGTERM');
        const timer = setTimeout(() => killGroup('SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      // The watchdog is in the group too and may have outlived the daemon.
      killGroup('SIGKILL');
      untrack();
      child.stdin.destroy();
    },
  };
}
