/**
 * The read lease of a CLI command that reads what a garbage collection may delete (`export`,
 * `verify`): taken in the Redis that the workers and `stevedore gc` use, so that a collection waits
 * for the command, and the command waits while a collection runs (libs/pipeline
 * store-readers.ts), as `docker save` waits for a prune. Without Redis no collection can be
 * coordinated: the command reads without a lease and says so on stderr, as `stevedore compact`
 * does without its lock.
 */
import type { Redis } from 'ioredis';
import { maintenanceConnection } from '@stevedore/pipeline/redis';
import {
  beginStoreRead,
  CollectionRunningError,
  type StoreReadLease,
} from '@stevedore/pipeline/store-readers';

/** How often a command waiting for a collection to end tries again (one GET and one SET each). */
const RETRY_MS = 1_000;

export interface CliReadLease {
  /** Aborted when the lease is lost; undefined when reading without one. */
  readonly signal: AbortSignal | undefined;
  /** Ends the lease and closes the connection. */
  end(): Promise<void>;
}

/**
 * Takes the lease for `what`, waiting (with a note on `err`) while a collection runs; a collection
 * that died lets its gate expire within 30 s. Writes a note to `err` and returns a lease-less handle
 * when Redis cannot be reached.
 */
export async function cliReadLease(
  command: string,
  what: string,
  redisUrl: string,
  err: NodeJS.WritableStream,
): Promise<CliReadLease> {
  let connection: Redis;
  try {
    connection = await maintenanceConnection(redisUrl);
  } catch (e) {
    err.write(
      `stevedore ${command}: ${e instanceof Error ? e.message : String(e)}; reading the store without a read lease\n`,
    );
    return { signal: undefined, end: () => Promise.resolve() };
  }
  let lease: StoreReadLease;
  try {
    for (let said = false; ; said = true) {
      try {
        lease = await beginStoreRead(connection, what);
        break;
      } catch (e) {
        if (!(e instanceof CollectionRunningError)) throw e;
        if (!said)
          err.write(
            `stevedore ${command}: a garbage collection of the store is running; waiting for it to end\n`,
          );
      }
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  } catch (e) {
    connection.disconnect();
    throw e;
  }
  return {
    signal: lease.signal,
    async end(): Promise<void> {
      await lease.end();
      connection.disconnect();
    },
  };
}
