import { makeTempDir, removeTempDir } from './temp-dir.ts';
import { spawnManaged } from './process.ts';
import { AddressInUseError, LOOPBACK, retryOnAddressInUse } from './ports.ts';
import { requireProgram } from './programs.ts';

export interface RedisOptions {
  /** Passed as `--maxmemory` (for example `'256mb'`); unlimited when absent. */
  readonly maxmemory?: string;
}

export interface RedisServer {
  /** `redis://127.0.0.1:PORT` */
  readonly url: string;
  readonly port: number;
  /** The redis-server pid (also its process group id). */
  readonly pid: number;
  /** What redis-server printed. */
  logs(): string;
  /** Kills the server and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** redis-server 7 prints this once it accepts connections (its log, at the default level). */
const READY = /Ready to accept connections/;
const ADDRESS_IN_USE = /Address already in use/i;

/**
 * A private redis-server on a free loopback port: no persistence (`--save ''`,
 * `--appendonly no`), `maxmemory-policy noeviction` (BullMQ requires it), its own temp dir.
 * Ready when it printed that it accepts connections.
 */
export async function startRedis(opts: RedisOptions = {}): Promise<RedisServer> {
  const program = await requireProgram('redis-server');
  return retryOnAddressInUse('redis-server', (port) => launchRedis(program, port, opts));
}

/**
 * redis-server on `port`; {@link AddressInUseError} when that port is taken. Exported for tests,
 * not from the package.
 */
export async function launchRedis(
  program: string,
  port: number,
  opts: RedisOptions = {},
): Promise<RedisServer> {
  const dir = await makeTempDir('redis');
  // prettier-ignore
  const args = [
    '--bind', LOOPBACK,
    '--port', String(port),
    '--save', '',
    '--appendonly', 'no',
    '--maxmemory-policy', 'noeviction',
    '--dir', dir,
    '--daemonize', 'no',
    '--logfile', '',
    ...(opts.maxmemory === undefined ? [] : ['--maxmemory', opts.maxmemory]),
  ];
  const proc = spawnManaged(program, args, { name: `redis-server on port ${port}`, cwd: dir });
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await proc.stop();
      await removeTempDir(dir);
    })());
  try {
    await proc.waitForOutput(READY);
  } catch (err) {
    await stop();
    if (ADDRESS_IN_USE.test(proc.output()))
      throw new AddressInUseError(`redis port ${port} taken`, { cause: err });
    throw err;
  }
  return { url: `redis://${LOOPBACK}:${port}`, port, pid: proc.pid, logs: proc.output, stop };
}
