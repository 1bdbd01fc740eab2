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
