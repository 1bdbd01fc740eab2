import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onProcessExit } from './process.ts';

/** Retries of the exit-time removal: a just-killed server may still be closing files in it. */
const EXIT_RM_RETRIES = 3;

const forgetAtExit = new Map<string, () => void>();

/**
 * A fresh directory under the OS temp dir, named after what it holds. Removed by
 * {@link removeTempDir}, or when this process exits if nobody did (not after SIGKILL).
 */
export async function makeTempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `stevedore-${label}-`));
  const forget = onProcessExit(() => {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: EXIT_RM_RETRIES });
    } catch (err) {
      process.stderr.write(`stevedore stack: could not remove ${dir} at exit: ${String(err)}\n`);
    }
  });
  forgetAtExit.set(dir, forget);
  return dir;
}

export async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  forgetAtExit.get(dir)?.();
  forgetAtExit.delete(dir);
}
