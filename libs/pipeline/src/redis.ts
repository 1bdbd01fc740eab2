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
export function maintenanceConnection(url: string): Promise<Redis> {
  return connectedOrError(url, 0);
}

/** How long a CLI command's connection tries to get Redis back once it was lost. */
const COMMAND_RECONNECT_MS = 30_000;
const RECONNECT_DELAY_MS = 500;

/**
 * A connection for a CLI command that talks to the queues (`stevedore pull`): connected before it
 * is returned (rejects at once, naming the cause, when Redis is unreachable: BullMQ would otherwise
 * wait for it forever), and reconnecting for at most 30 s after it is lost (a Redis restart while
 * `--wait` follows a pull; commands meanwhile wait for it), then ended, which fails the command's
 * pending calls ({@link connectionLoss} says why). `reconnectForMs` is for tests.
 */
export function commandConnection(
  url: string,
  options: { readonly reconnectForMs?: number } = {},
): Promise<Redis> {
  return connectedOrError(url, options.reconnectForMs ?? COMMAND_RECONNECT_MS);
}

/** What a connection of {@link connectedOrError} knows of its loss. */
interface LossState {
  readonly url: string;
  readonly reconnectForMs: number;
  /** The socket's latest error since the connection was last ready. */
  error: Error | undefined;
  /** True once it stopped reconnecting (after having been ready). */
  gaveUp: boolean;
}

const losses = new WeakMap<Redis, LossState>();

/**
 * For a connection of {@link commandConnection} or {@link maintenanceConnection} that was lost and
 * gave up reconnecting: an error that says so, naming Redis (password masked), the socket's last
 * error and how long it tried. Undefined while the connection is up or still reconnecting. Commands
 * that fail after such a loss get ioredis's bare "Connection is closed"; this says why.
 */
export function connectionLoss(redis: Redis): Error | undefined {
  const state = losses.get(redis);
  if (state === undefined || !state.gaveUp) return undefined;
  const tried =
    state.reconnectForMs > 0 ? ` (no connection again for ${Math.round(state.reconnectForMs / 1000)} s)` : '';
  const cause = state.error === undefined ? 'the connection closed' : state.error.message;
  return new Error(`lost Redis at ${redactUrl(state.url)}: ${cause}${tried}`, { cause: state.error });
}

async function connectedOrError(url: string, reconnectForMs: number): Promise<Redis> {
  let wasReady = false;
  let lostAt: number | undefined;
  const redis = new Redis(url, {
    // While it reconnects, a command waits for the connection instead of failing after one retry
    // ("Reached the max retries per request limit" a second into a Redis restart); when it gives
    // up, waiting commands fail ("Connection is closed") and connectionLoss says why.
    maxRetriesPerRequest: reconnectForMs > 0 ? null : 1,
    connectTimeout: PRODUCER_CONNECT_TIMEOUT_MS,
    lazyConnect: true,
    // Never before the first connection was ready; after it, for reconnectForMs from the loss.
    retryStrategy: () => {
      if (!wasReady) return null;
      lostAt ??= Date.now();
      return Date.now() - lostAt < reconnectForMs ? RECONNECT_DELAY_MS : null;
    },
  });
  const loss: LossState = { url, reconnectForMs, error: undefined, gaveUp: false };
  losses.set(redis, loss);
  redis.on('ready', () => {
    wasReady = true;
    lostAt = undefined;
    loss.error = undefined;
  });
  redis.on('end', () => {
    if (wasReady) loss.gaveUp = true;
  });
  // Errors surface through the commands; without a listener ioredis would also print them. The
  // socket's error ("connect ECONNREFUSED …") says more than connect()'s "Connection is closed".
  let socketError: Error | undefined;
  redis.on('error', (err: Error) => {
    socketError ??= err;
    if (wasReady) loss.error = err;
  });
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
