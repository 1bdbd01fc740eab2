/**
 * Redis connections, as BullMQ's "going to production" guide asks: workers retry forever
 * (`maxRetriesPerRequest: null`) so a Redis restart pauses them instead of failing jobs;
 * producers (API, CLI) fail fast so a user sees "Redis is down" at once.
 */
import { Redis } from 'ioredis';

/** A producer gives up on a command after this long when Redis is unreachable. */
const PRODUCER_CONNECT_TIMEOUT_MS = 5_000;

export function workerConnection(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true });
}

export function producerConnection(url: string): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: PRODUCER_CONNECT_TIMEOUT_MS,
    lazyConnect: false,
  });
}

/** Redis URL with any password masked, for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable Redis URL)';
  }
}

/**
 * A connection for maintenance commands (`stevedore gc`, `stevedore compact`): connected before it
 * is returned (rejects at once when Redis is unreachable), and never reconnecting: a collection
 * that loses Redis loses its locks, and must stop rather than carry on unguarded.
 */
export async function maintenanceConnection(url: string): Promise<Redis> {
  const redis = new Redis(url, {
    maxRetriesPerRequest: 1,
    connectTimeout: PRODUCER_CONNECT_TIMEOUT_MS,
    lazyConnect: true,
    retryStrategy: () => null,
  });
  // Errors surface through the commands; without a listener ioredis would also print them. The
  // socket's error ("connect ECONNREFUSED …") says more than connect()'s "Connection is closed".
  let socketError: Error | undefined;
  redis.on('error', (err: Error) => (socketError ??= err));
  try {
    await redis.connect();
  } catch (err) {
    // A connection that never opened has ended already: disconnect() would only leave a 2 s timer
    // (ioredis's disconnectTimeout) keeping the process alive.
    if (redis.status !== 'end') redis.disconnect();
    const reason = socketError ?? err;
    throw new Error(
      `cannot reach Redis at ${redactUrl(url)}: ${reason instanceof Error ? reason.message : String(reason)}`,
      { cause: reason },
    );
  }
  return redis;
}
