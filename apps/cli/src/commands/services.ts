/**
 * `stevedore api` and `stevedore stack`: run the services from the command line.
 *
 * - `api` runs the HTTP API service (apps/api) in a child process with this terminal.
 * - `stack` is the embedded default for one machine: Redis (a private redis-server with its data
 *   in .stevedore/redis, unless STEVEDORE_REDIS_URL names one), all workers in one process, and
 *   the API, on the directory store (.stevedore/store unless STEVEDORE_STORE says otherwise). It
 *   prints the API and Bull Board addresses and credentials and runs until Ctrl-C. It runs
 *   `stevedore compact` (store maintenance) 15 minutes after it starts and then once a day (the
 *   Kubernetes base's CronJob does the same for a cluster), one run at a time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const APPS = fileURLToPath(new URL('../../../', import.meta.url));
const API_MAIN = `${APPS}api/src/main.ts`;
const CLI_MAIN = `${APPS}cli/bin/stevedore.mjs`;
const DEFAULT_REDIS_PORT = 6379;
const DEFAULT_API_PORT = 8080;
/** 24 random bytes: a 32-character token, over the API's 16-character minimum. */
const TOKEN_BYTES = 24;
/** How often the stack runs `stevedore compact` by default, and how soon after it starts. */
export const DEFAULT_COMPACT_EVERY_MS = 24 * 60 * 60 * 1000;
const FIRST_COMPACTION_AFTER_MS = 15 * 60 * 1000;

function run(script: string, args: readonly string[], env: NodeJS.ProcessEnv, name: string): ChildProcess {
  const child = spawn(process.execPath, [script, ...args], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  child.on('error', (err) => process.stderr.write(`stevedore: ${name} failed to start: ${err.message}\n`));
  return child;
}

async function exitCode(child: ChildProcess): Promise<number> {
  // Gone already: by itself (exitCode) or by a signal (signalCode; its exitCode stays null, and
  // its 'exit' event has been emitted: waiting for it would wait forever).
  if (child.exitCode !== null) return child.exitCode;
  if (child.signalCode !== null) return 1;
  const [code] = (await once(child, 'exit')) as [number | null];
  return code ?? 1;
}

/** How long a private redis-server may take to answer. */
const REDIS_START_TIMEOUT_MS = 15_000;

/**
 * Waits until the Redis answering on `port` is `redis` itself (its INFO names its pid): a port
 * that another process took meanwhile must not hand the stack someone else's Redis. Returns why
 * not, or undefined once it is.
 */
async function ownRedisReady(
  redis: ChildProcess,
  port: number,
  log: () => string,
): Promise<string | undefined> {
  const deadline = Date.now() + REDIS_START_TIMEOUT_MS;
  for (;;) {
    if (redis.exitCode !== null || redis.signalCode !== null) {
      // Its last words: "# Failed listening on port 6379 (tcp), aborting." and the like.
      const last = log()
        .split('\n')
        .filter((line) => line.trim() !== '')
        .slice(-2)
        .join(' / ');
      return `redis-server on port ${port} exited at start (${redis.exitCode ?? redis.signalCode}): ${last || 'no output'}`;
    }
    const pid = await redisPid(port);
    if (pid === redis.pid) return undefined;
    if (pid !== undefined) return `another Redis (pid ${pid}) answers on port ${port}; start again`;
    if (Date.now() > deadline)
      return `redis-server did not answer on port ${port} within ${REDIS_START_TIMEOUT_MS / 1000} s`;
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The pid in the INFO of the Redis answering on `port`, or undefined when none answers. */
function redisPid(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    const done = (pid?: number): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(1_000, () => done());
    socket.on('error', () => done());
    socket.on('connect', () => socket.write('INFO server\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString('latin1');
      const m = /process_id:(\d+)/.exec(reply);
      if (m !== null) done(Number(m[1]));
    });
    socket.on('end', () => done());
  });
}

async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((done) => {
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

async function anyFreePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  await new Promise<void>((done) => server.close(() => done()));
  if (address === null || typeof address === 'string') throw new Error('could not find a free port');
  return address.port;
}

/** `stevedore api`: the API service, configured by the environment (see apps/api config). */
export async function apiCommand(): Promise<number> {
  const child = run(API_MAIN, [], process.env, 'api');
  const forward = (signal: NodeJS.Signals): void => {
    child.kill(signal);
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  return exitCode(child);
}

/**
 * Runs `stevedore compact` in a child process on a timer: first after `min(15m, every)`, then
 * every `every`; a run still going when the next is due makes it skip. Its output goes to this
 * process's stdout, each line marked `compact:`. `stop` ends the timer and the run in progress.
 */
export function scheduleCompaction(
  env: NodeJS.ProcessEnv,
  everyMs: number,
  out: NodeJS.WritableStream = process.stdout,
): { stop(): Promise<void> } {
  let running: ChildProcess | undefined;
  const runOnce = (): void => {
    if (running !== undefined) return;
    const child = spawn(process.execPath, [CLI_MAIN, 'compact'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    running = child;
    let pending = '';
    const mark = (chunk: Buffer): void => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines) out.write(`compact: ${line}\n`);
    };
    child.stdout?.on('data', mark);
    child.stderr?.on('data', mark);
    child.on('error', (err) => out.write(`compact: failed to start: ${err.message}\n`));
    child.on('close', (code, signal) => {
      if (pending !== '') out.write(`compact: ${pending}\n`);
      if (code !== 0 && signal === null) out.write(`compact: exited with code ${code}\n`);
      running = undefined;
    });
  };
  const first = setTimeout(
    () => {
      runOnce();
      timer = setInterval(runOnce, everyMs);
    },
    Math.min(FIRST_COMPACTION_AFTER_MS, everyMs),
  );
  let timer: NodeJS.Timeout | undefined;
  return {
    async stop() {
      clearTimeout(first);
      clearInterval(timer);
      const child = running;
      if (child === undefined) return;
      const closed = once(child, 'close');
      // A compaction stopped halfway is safe: merged files before their inputs are deleted.
      child.kill('SIGTERM');
      await closed;
    },
  };
}

export async function stackCommand(options: { compactEveryMs?: number } = {}): Promise<number> {
  const compactEveryMs = options.compactEveryMs ?? DEFAULT_COMPACT_EVERY_MS;
  const home = resolve(process.env.STEVEDORE_HOME ?? '.stevedore');
  const children: ChildProcess[] = [];
  let redisChild: ChildProcess | undefined;
  const env: NodeJS.ProcessEnv = { ...process.env };
  env.STEVEDORE_STORE ??= resolve(home, 'store');
  let redisNote = env.STEVEDORE_REDIS_URL;
  if (env.STEVEDORE_REDIS_URL === undefined) {
    const dir = resolve(home, 'redis');
    await mkdir(dir, { recursive: true });
    const port = (await portFree(DEFAULT_REDIS_PORT)) ? DEFAULT_REDIS_PORT : await anyFreePort();
    // Append-only persistence and noeviction, as BullMQ requires; loopback only.
    const redis = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--maxmemory-policy',
        'noeviction',
        '--save',
        '',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    // Its log, kept short: the reason it gives when it cannot start.
    let redisLog = '';
    redis.stdout?.on('data', (chunk: Buffer) => {
      redisLog = (redisLog + chunk.toString('utf8')).slice(-4096);
    });
    const spawned = await Promise.race([
      once(redis, 'spawn').then(() => true),
      once(redis, 'error').then(([err]) => {
        process.stderr.write(
          `stevedore stack: cannot start redis-server (Debian package redis-server; run npm run setup): ${(err as Error).message}\n`,
        );
        return false;
      }),
    ]);
    if (!spawned) return 1;
    const notReady = await ownRedisReady(redis, port, () => redisLog);
    if (notReady !== undefined) {
      redis.kill('SIGTERM');
      process.stderr.write(`stevedore stack: ${notReady}\n`);
      return 1;
    }
    redisChild = redis;
    env.STEVEDORE_REDIS_URL = `redis://127.0.0.1:${port}`;
    redisNote = `${env.STEVEDORE_REDIS_URL} (data in ${dir})`;
  }
  const generated = env.STEVEDORE_API_TOKEN === undefined;
  env.STEVEDORE_API_TOKEN ??= randomBytes(TOKEN_BYTES).toString('base64url');
  const apiPort =
    env.STEVEDORE_API_PORT ??
    String((await portFree(DEFAULT_API_PORT)) ? DEFAULT_API_PORT : await anyFreePort());
  env.STEVEDORE_API_PORT = apiPort;
  env.STEVEDORE_API_HOST ??= '127.0.0.1';
  env.STEVEDORE_HEALTH_PORT ??= '0';
  children.push(run(CLI_MAIN, ['worker', 'all'], env, 'workers'));
  children.push(run(API_MAIN, [], env, 'api'));
  const compaction = Number.isFinite(compactEveryMs) ? scheduleCompaction(env, compactEveryMs) : undefined;
  const user = env.STEVEDORE_BOARD_USER ?? 'admin';
  process.stdout.write(
    [
      'stevedore stack is running (Ctrl-C stops it)',
      `  redis       ${redisNote ?? ''}`,
      `  store       ${env.STEVEDORE_STORE}`,
      `  api         http://${env.STEVEDORE_API_HOST}:${apiPort}/v1  (Authorization: Bearer ${generated ? env.STEVEDORE_API_TOKEN : '<STEVEDORE_API_TOKEN>'})`,
      `  bull board  http://${env.STEVEDORE_API_HOST}:${apiPort}/admin/queues  (user ${user}, password ${generated && env.STEVEDORE_BOARD_PASSWORD === undefined ? env.STEVEDORE_API_TOKEN : '<STEVEDORE_BOARD_PASSWORD>'})`,
      `  compact     ${compaction === undefined ? 'never (--compact-every never)' : `every ${formatDuration(compactEveryMs)}, first after ${formatDuration(Math.min(FIRST_COMPACTION_AFTER_MS, compactEveryMs))} (stevedore compact)`}`,
      `  pull        STEVEDORE_REDIS_URL=${env.STEVEDORE_REDIS_URL} npx stevedore pull REF --wait`,
      '',
    ].join('\n'),
  );
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    for (const child of children) child.kill('SIGTERM');
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  // When one service dies, stop the others: a stack with a dead part is not running.
  const first = await Promise.race(children.map((child) => exitCode(child)));
  stop();
  await Promise.all([...children.map((child) => exitCode(child)), compaction?.stop()]);
  // Redis goes last: the workers needed it to hand back their jobs.
  if (redisChild !== undefined) {
    redisChild.kill('SIGTERM');
    await exitCode(redisChild);
  }
  return first;
}

/** `90s`, `15m`, `2h`, `1d`: the largest whole unit. */
function formatDuration(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}
