/**
 * Child servers (redis-server, docker-registry, the S3 server) run in their own process group, so
 * that stopping one kills everything it started, and each is tied to this process two ways:
 *
 *  - a watchdog started by the `sh` wrapper below holds the read end of the child's stdin pipe;
 *    when this process dies, even by SIGKILL, the pipe closes and the watchdog kills the group;
 *  - an `exit` handler here kills every group still running when this process exits normally.
 *
 * `kill -TERM 0` signals the caller's process group, which `detached: true` made the server's own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';

/** Output kept per process for `logs()`: the tail, so a chatty registry cannot grow without end. */
const LOG_TAIL_BYTES = 4 * 1024 * 1024;
/** How long a server gets to exit after SIGTERM before its group gets SIGKILL. */
const STOP_GRACE_MS = 5_000;
/** How long a server gets to print its readiness line. */
export const READY_TIMEOUT_MS = 15_000;

// The watchdog reads a copy of stdin made before `&`: POSIX gives asynchronous lists /dev/null as
// stdin before their own redirections are applied.
const WATCHDOG = 'exec 3<&0; { cat <&3 >/dev/null; kill -TERM 0; } & exec "$@" 3<&-';

const liveGroups = new Set<number>();
const exitCleanups = new Set<() => void>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pgid of liveGroups) killGroup(pgid, 'SIGKILL');
    for (const cleanup of exitCleanups) cleanup();
  });
}

/**
 * Runs `cleanup` (synchronous: the event loop is gone) when this process exits, after every
 * process group still running got SIGKILL. Returns a function that unregisters it.
 */
export function onProcessExit(cleanup: () => void): () => void {
  installExitHook();
  exitCleanups.add(cleanup);
  return () => exitCleanups.delete(cleanup);
}

/** Signals a whole process group; false when the group no longer exists. */
export function killGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw new Error(`cannot send ${signal} to process group ${pgid}`, { cause: err });
  }
}

/**
 * True while a process with this pid runs. A zombie (exited, not yet reaped) counts as gone:
 * a server orphaned by its parent's death is reaped by pid 1 whenever that gets to it.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw new Error(`cannot probe pid ${pid}`, { cause: err });
  }
  const state = processState(pid);
  return state !== 'Z' && state !== 'X';
}

/** The state letter from /proc/PID/stat on Linux (`X` once gone); undefined elsewhere. */
function processState(pid: number): string | undefined {
  if (process.platform !== 'linux') return undefined;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    // Gone between kill(0) and this read.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'X';
    throw new Error(`cannot read /proc/${pid}/stat`, { cause: err });
  }
  // "PID (COMM) STATE …": COMM may contain spaces and parentheses, so look after the last ')'.
  const end = stat.lastIndexOf(')');
  return stat.slice(end + 2, end + 3);
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface ManagedProcess {
  /** The server's pid, also its process group id. */
  readonly pid: number;
  /** What the process printed on stdout and stderr, interleaved (the last 4 MiB). */
  readonly output: () => string;
  /** Resolves with the first match of `pattern` in the output; rejects if the process exits first. */
  readonly waitForOutput: (pattern: RegExp, timeoutMs?: number) => Promise<RegExpMatchArray>;
  /** Settles when the process has exited. */
  readonly exited: Promise<ExitStatus>;
  /** SIGTERM to the group, SIGKILL after a grace period, then SIGKILL to anything left in it. */
  readonly stop: () => Promise<void>;
}

export interface SpawnOptions {
  readonly name: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Spawns `command args…` as a process group leader tied to this process (see module doc). */
export function spawnManaged(command: string, args: readonly string[], opts: SpawnOptions): ManagedProcess {
  installExitHook();
  const child: ChildProcess = spawn('sh', ['-c', WATCHDOG, 'sh', command, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${opts.name}: spawn of ${command} failed`);
  liveGroups.add(pid);

  const chunks: Buffer[] = [];
  let kept = 0;
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    kept += chunk.length;
    while (kept > LOG_TAIL_BYTES && chunks.length > 1) kept -= chunks.shift()!.length;
    for (const listener of listeners) listener();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  // The watchdog never reads what we write; an EPIPE here only means the group is gone.
  child.stdin!.on('error', () => undefined);

  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      liveGroups.delete(pid);
      for (const listener of listeners) listener();
      resolve({ code, signal });
    });
  });
  let exitStatus: ExitStatus | undefined;
  void exited.then((status) => (exitStatus = status));
  const spawnFailed = once(child, 'error').then(([err]) => err as Error);

  const output = (): string => Buffer.concat(chunks).toString('utf8');

  return {
    pid,
    output,
    exited,
    waitForOutput(pattern: RegExp, timeoutMs = READY_TIMEOUT_MS): Promise<RegExpMatchArray> {
      return new Promise((resolve, reject) => {
        const done = (): void => {
          listeners.delete(check);
          clearTimeout(timer);
        };
        const check = (): void => {
          const match = output().match(pattern);
          if (match) {
            done();
            resolve(match);
          } else if (exitStatus !== undefined || child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(
              new Error(
                `${opts.name} exited (code ${child.exitCode}, signal ${child.signalCode}) before printing ${pattern}:\n${tail(output())}`,
              ),
            );
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(
            new Error(`${opts.name} did not print ${pattern} within ${timeoutMs} ms:\n${tail(output())}`),
          );
        }, timeoutMs);
        listeners.add(check);
        void spawnFailed.then((err) => {
          done();
          reject(new Error(`${opts.name}: cannot spawn ${command}`, { cause: err }));
        });
        check();
      });
    },
    async stop(): Promise<void> {
      if (child.exitCode === null && child.signalCode === null) {
        killGroup(pid, 'SIGTERM');
        const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      // The watchdog is in the group too; it may have outlived the server.
      killGroup(pid, 'SIGKILL');
      liveGroups.delete(pid);
      child.stdin!.destroy();
    },
  };
}

/** The last lines of a log, for error messages. */
export function tail(log: string, lines = 20): string {
  return log.trimEnd().split('\n').slice(-lines).join('\n');
}
