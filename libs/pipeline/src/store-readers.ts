/**
 * Read leases: how readers of the store that are not jobs (the API's archive downloads, the CLI's
 * `export` and `verify`) keep a garbage collection from deleting what they read.
 *
 * A reader adds itself to the sorted set `stevedore:gc:readers` (member `<id> <description>`,
 * score: when its lease expires, in Redis's own clock), renews that expiry while it reads, and
 * removes itself when done; a crashed reader's entry expires. After adding itself, the reader
 * checks the `gc` gate: held means a collection is running, and the reader withdraws and is refused
 * ({@link CollectionRunningError}). A collection closes the gate, then waits until the set holds no
 * live entry (libs/pipeline gc.ts; expired entries are removed as it looks). Redis runs commands
 * one at a time, so either the reader's gate check came before the gate closed (then its entry,
 * added before that check, is there when the collection looks), or after (then it sees the gate
 * and withdraws): no reader reads while a collection deletes. A renewal that finds its entry gone
 * or expired does not bring it back: the lease is lost, and the reader stops.
 *
 * One key, whatever the keyspace holds (no SCAN over BullMQ's keys). Only ioredis and the lock
 * library here, so that the CLI's export can use it without loading BullMQ
 * (`@stevedore/pipeline/store-readers`).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { LockManager } from '@stevedore/lock';

/** The gate jobs and readers wait behind while a collection runs. */
export const GC_GATE = 'gc';
/** Where read leases live: a sorted set, one member per reader, scored by its expiry. */
export const READERS_KEY = 'stevedore:gc:readers';
/** A lease not renewed for this long expires (the reader crashed). */
export const READ_LEASE_TTL_MS = 30_000;
const RENEWALS_PER_TTL = 3;
/** Descriptions are for people reading a collection's progress: kept short. */
const MAX_DESCRIPTION = 200;

/** Now in Redis's clock, in ms: every reader's expiry is read and written in the same clock. */
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS[1] readers; ARGV[1] member, ARGV[2] ttl in ms. Adds the member, expiring in ttl. */
const ENTER = `${NOW}
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1`;

/**
 * KEYS[1] readers; ARGV[1] member, ARGV[2] ttl in ms. 1: the member was live and now expires in
 * ttl; 0: it was gone or expired (and is removed): the lease is lost.
 */
const RENEW = `${NOW}
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1`;

/** KEYS[1] readers. Removes the expired members and returns the live ones. */
const LIVE = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)`;

interface ReaderCommands {
  storeReaderEnter(key: string, member: string, ttlMs: number): Promise<number>;
  storeReaderRenew(key: string, member: string, ttlMs: number): Promise<number>;
  storeReadersLive(key: string): Promise<string[]>;
}

function withReaderCommands(redis: Redis): Redis & ReaderCommands {
  const r = redis as Redis & Partial<ReaderCommands>;
  if (r.storeReaderEnter === undefined) {
    redis.defineCommand('storeReaderEnter', { numberOfKeys: 1, lua: ENTER });
    redis.defineCommand('storeReaderRenew', { numberOfKeys: 1, lua: RENEW });
    redis.defineCommand('storeReadersLive', { numberOfKeys: 1, lua: LIVE });
  }
  return redis as Redis & ReaderCommands;
}

const lockManagers = new WeakMap<Redis, LockManager>();

/** One LockManager per connection: its constructor defines the lock scripts on the connection. */
function gateLocks(redis: Redis): LockManager {
  let locks = lockManagers.get(redis);
  if (locks === undefined) {
    locks = new LockManager(redis);
    lockManagers.set(redis, locks);
  }
  return locks;
}

/** A garbage collection is running: a read that does not wait behind the gate is refused. */
export class CollectionRunningError extends Error {
  override readonly name = 'CollectionRunningError';
}

/** The lease expired before it could be renewed: a collection may be deleting what is read. */
export class ReadLeaseLostError extends Error {
  override readonly name = 'ReadLeaseLostError';
}

export interface StoreReadLease {
  /** Aborted (reason {@link ReadLeaseLostError}) when the lease is lost: stop reading. */
  readonly signal: AbortSignal;
  /** Stops renewing and deletes the lease. Never throws (a lease left behind expires). */
  end(): Promise<void>;
}

export interface ReadLeaseOptions {
  readonly ttlMs?: number;
}

/**
 * Registers a read lease described by `what` (for example `api: download of 2 image(s)`; it names
 * no credential). Throws {@link CollectionRunningError}, holding nothing, while a collection runs.
 */
export async function beginStoreRead(
  redis: Redis,
  what: string,
  options: ReadLeaseOptions = {},
): Promise<StoreReadLease> {
  const ttlMs = options.ttlMs ?? READ_LEASE_TTL_MS;
  const commands = withReaderCommands(redis);
  const member = `${randomBytes(8).toString('hex')} ${hostname()} pid ${process.pid}: ${what}`.slice(
    0,
    MAX_DESCRIPTION,
  );
  const withdraw = (): Promise<unknown> => redis.zrem(READERS_KEY, member).catch(() => undefined);
  await commands.storeReaderEnter(READERS_KEY, member, ttlMs);
  let gateHeld: boolean;
  try {
    gateHeld = (await gateLocks(redis).currentFence(GC_GATE)) !== undefined;
  } catch (err) {
    await withdraw();
    throw err;
  }
  if (gateHeld) {
    await withdraw();
    throw new CollectionRunningError('a garbage collection of the store is running: try again when it ends');
  }

  const controller = new AbortController();
  let heldUntil = Date.now() + ttlMs;
  let renewing: Promise<void> = Promise.resolve();
  const timer = setInterval(
    () => {
      const startedAt = Date.now();
      renewing = commands.storeReaderRenew(READERS_KEY, member, ttlMs).then(
        (renewed) => {
          if (renewed === 1) heldUntil = startedAt + ttlMs;
          else lost(`the read lease of ${what} expired`);
        },
        (err: unknown) => {
          // One failed renewal is not yet a lost lease: the next may succeed before the expiry.
          if (Date.now() >= heldUntil)
            lost(`the read lease of ${what} could not be renewed before it expired`, err);
        },
      );
    },
    Math.max(1, Math.floor(ttlMs / RENEWALS_PER_TTL)),
  );
  timer.unref();
  function lost(message: string, cause?: unknown): void {
    if (controller.signal.aborted) return;
    clearInterval(timer);
    controller.abort(
      new ReadLeaseLostError(`${message}: a garbage collection may have deleted what it reads`, { cause }),
    );
  }
  let ended: Promise<void> | undefined;
  return {
    signal: controller.signal,
    end(): Promise<void> {
      ended ??= (async () => {
        clearInterval(timer);
        await renewing;
        await withdraw();
      })();
      return ended;
    },
  };
}

/** The readers holding a live lease now (`<id> <host> pid <pid>: <what>`); drops expired ones. */
export async function listStoreReaders(redis: Redis): Promise<string[]> {
  return withReaderCommands(redis).storeReadersLive(READERS_KEY);
}
