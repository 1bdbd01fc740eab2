/**
 * Scoped cleanups for benchmark runs that start servers and processes: every deferred cleanup
 * runs, last deferred first, whether the body succeeds or fails. A cleanup failure after a
 * success fails the run; after a failure it is reported on stderr next to the original error,
 * which is the one thrown.
 */
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Defer = (cleanup: () => Promise<void>) => void;

async function unwind(stack: readonly (() => Promise<void>)[]): Promise<unknown[]> {
  const errors: unknown[] = [];
  for (const cleanup of stack) {
    try {
      await cleanup();
    } catch (err) {
      errors.push(err);
    }
  }
  return errors;
}

function describe(err: unknown): string {
  return err instanceof Error ? (err.stack ?? err.message) : String(err);
}

export async function withCleanups<T>(body: (defer: Defer) => Promise<T>): Promise<T> {
  const stack: (() => Promise<void>)[] = [];
  const defer: Defer = (cleanup) => {
    stack.unshift(cleanup);
  };
  let result: T;
  try {
    result = await body(defer);
  } catch (err) {
    for (const e of await unwind(stack)) {
      process.stderr.write(`a cleanup after the failure below also failed: ${describe(e)}\n`);
    }
    throw err;
  }
  const errors = await unwind(stack);
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanups failed`);
  return result;
}

const liveTempDirs = new Set<string>();
const liveGroups = new Set<number>();
let exitHookInstalled = false;

/** At exit: SIGKILL the daemons first (one still starting would recreate files), then remove dirs. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const pgid of liveGroups) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    for (const dir of liveTempDirs) rmSync(dir, { recursive: true, force: true });
  });
}

/** Tracks a daemon's process group so that it is killed when this process exits; returns the untrack. */
export function trackProcessGroup(pgid: number): () => void {
  installExitHook();
  liveGroups.add(pgid);
  return () => liveGroups.delete(pgid);
}

/**
 * A new directory `<os tmpdir>/<prefix>XXXXXX`, removed by `defer`red cleanup, or at the latest when
 * this process exits (an interrupted benchmark leaves no store or containerd root behind; servers
 * from @stevedore/testing clean up after themselves the same way).
 */
export async function tempDir(prefix: string, defer: Defer): Promise<string> {
  installExitHook();
  const dir = await mkdtemp(join(tmpdir(), prefix));
  liveTempDirs.add(dir);
  defer(async () => {
    await rm(dir, { recursive: true, force: true });
    liveTempDirs.delete(dir);
  });
  return dir;
}
