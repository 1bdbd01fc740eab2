/**
 * Read leases: how readers of the store that are not jobs (the API's archive downloads, the CLI's
 * `export` and `verify`) keep a garbage collection from deleting what they read.
 *
 * A reader registers a key `stevedore:gc:reader:<id>` (its description as the value) with an
 * expiry, renews it while it reads, and deletes it when done; a crashed reader's key expires.
 * After registering, the reader checks the `gc` gate: held means a collection is running, and the
 * reader withdraws and is refused ({@link CollectionRunningError}). A collection closes the gate,
 * then waits until no reader key is left (libs/pipeline gc.ts). Redis runs commands one at a time,
 * so either the reader's gate check came before the gate closed (then its key, set before that
 * check, is there when the collection looks), or after (then it sees the gate and withdraws):
 * no reader reads while a collection deletes.
 *
 * Only ioredis and the lock library here, so that the CLI's export can use it without loading
 * BullMQ (`@stevedore/pipeline/store-readers`).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { LockManager } from '@stevedore/lock';

/** The gate jobs and readers wait behind while a collection runs. */
export const GC_GATE = 'gc';
/** Where read leases live: one key per reader. */
export const READER_KEY_PREFIX = 'stevedore:gc:reader:';
/** A lease not renewed for this long expires (the reader crashed). */
export const READ_LEASE_TTL_MS = 30_000;
const RENEWALS_PER_TTL = 3;
const SCAN_COUNT = 500;
/** Descriptions are for people reading a collection's progress: kept short. */
const MAX_DESCRIPTION = 200;

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
  const key = `${READER_KEY_PREFIX}${randomBytes(8).toString('hex')}`;
  const value = `${hostname()} pid ${process.pid}: ${what}`.slice(0, MAX_DESCRIPTION);
  await redis.set(key, value, 'PX', ttlMs);
  let gateHeld: boolean;
  try {
    gateHeld = (await new LockManager(redis).currentFence(GC_GATE)) !== undefined;
  } catch (err) {
    await redis.del(key).catch(() => undefined);
    throw err;
  }
  if (gateHeld) {
    await redis.del(key).catch(() => undefined);
    throw new CollectionRunningError('a garbage collection of the store is running: try again when it ends');
  }

  const controller = new AbortController();
  let heldUntil = Date.now() + ttlMs;
  let renewing: Promise<void> = Promise.resolve();
  const timer = setInterval(
    () => {
      const startedAt = Date.now();
      // XX: only an existing key; an expired lease is not silently taken again.
      renewing = redis.set(key, value, 'PX', ttlMs, 'XX').then(
        (reply) => {
          if (reply === 'OK') heldUntil = startedAt + ttlMs;
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
        await redis.del(key).catch(() => undefined);
      })();
      return ended;
    },
  };
}

/** The descriptions of the readers holding a lease now. */
export async function listStoreReaders(redis: Redis): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${READER_KEY_PREFIX}*`, 'COUNT', SCAN_COUNT);
    keys.push(...found);
    cursor = next;
  } while (cursor !== '0');
  if (keys.length === 0) return [];
  // A key may expire between SCAN and MGET: it is no reader any more.
  return (await redis.mget(...new Set(keys))).filter((v): v is string => v !== null);
}
