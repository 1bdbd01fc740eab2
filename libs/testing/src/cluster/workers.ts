/**
 * stevedore worker processes for tests, the demo and benchmarks: real OS processes running
 * `stevedore worker ROLE` (apps/cli), each its own process group, killable with SIGKILL at any
 * moment. They are started by path, not imported: the testing library does not depend on apps.
 */
import { fileURLToPath } from 'node:url';
import { killGroup, spawnManaged, type ManagedProcess } from '../stack/process.ts';

/** The repository root, from this file's place in libs/testing/src/cluster. */
const REPO_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const CLI = `${REPO_ROOT}apps/cli/bin/stevedore.mjs`;
/** A worker process is up once it logs this (libs/pipeline host.ts). */
const STARTED = /"msg":"workers started"/;
/** Type stripping needs no transpile step, but Node 24 still loads a few hundred modules. */
const START_TIMEOUT_MS = 30_000;

export type WorkerRole = 'fetcher' | 'hasher' | 'committer' | 'all';

export interface WorkerProcess extends ManagedProcess {
  readonly role: WorkerRole;
  /** SIGKILL to the whole process group: a crash, with no chance to clean up. */
  kill9(): void;
}

export interface WorkerProcessOptions {
  readonly role: WorkerRole;
  /** Service configuration (WORKER_ENV variables); PATH and HOME are passed through. */
  readonly env: Readonly<Record<string, string>>;
  readonly name?: string;
}

export async function startWorkerProcess(options: WorkerProcessOptions): Promise<WorkerProcess> {
  const name = options.name ?? `worker-${options.role}`;
  const proc = spawnManaged(process.execPath, [CLI, 'worker', options.role], {
    name,
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      STEVEDORE_HEALTH_PORT: '0',
      ...options.env,
    },
  });
  try {
    await proc.waitForOutput(STARTED, START_TIMEOUT_MS);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return {
    ...proc,
    role: options.role,
    kill9() {
      killGroup(proc.pid, 'SIGKILL');
    },
  };
}

const API = `${REPO_ROOT}apps/api/src/main.ts`;
const API_STARTED = /"msg":"api started"/;

export interface ApiProcessOptions {
  /** API configuration (API_ENV variables: STEVEDORE_API_TOKEN is required). */
  readonly env: Readonly<Record<string, string>>;
}

/** The API service as a real process (apps/api), up once it logs "api started". */
export async function startApiProcess(options: ApiProcessOptions): Promise<ManagedProcess> {
  const proc = spawnManaged(process.execPath, [API], {
    name: 'api',
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      STEVEDORE_LOG_LEVEL: 'info',
      ...options.env,
    },
  });
  try {
    await proc.waitForOutput(API_STARTED, START_TIMEOUT_MS);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}
