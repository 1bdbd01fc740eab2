/**
 * Retry policy: bounded attempts, exponential backoff with full jitter, and `Retry-After`.
 *
 * Full jitter (a uniform delay in `[0, min(max, base * 2^n))`) spreads the retries of many workers
 * hitting the same registry, which fixed or "equal" jitter does not.
 */
export interface RetryPolicy {
  /** Total tries, the first one included. 1 means no retry. */
  attempts: number;
  /** Backoff ceiling of the first retry. */
  baseDelayMs: number;
  /** Ceiling of any backoff delay. */
  maxDelayMs: number;
  /**
   * Longest `Retry-After` honoured. A server asking for a longer wait fails the operation with a
   * temporary error instead, so the job queue reschedules it rather than holding a worker.
   */
  maxRetryAfterMs?: number;
}

export const DEFAULT_RETRY_POLICY: Readonly<Required<RetryPolicy>> = Object.freeze({
  attempts: 5,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 60_000,
});

/** Full-jitter delay before retry number `retry` (0 for the first retry). `random` is in [0, 1). */
export function backoffDelay(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.floor(random() * ceiling);
}

/**
 * Parses `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. Returns milliseconds to
 * wait (0 for a date in the past), or undefined when absent or malformed.
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  // An HTTP-date always names the weekday: this keeps Date.parse's lenient guesses out.
  if (!/^[A-Za-z]{3},/.test(trimmed)) return undefined;
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * The wait before the next try: the server's `Retry-After` when it sent one, else full-jitter
 * backoff. Undefined when `Retry-After` exceeds the policy's `maxRetryAfterMs`.
 */
export function retryDelay(
  retry: number,
  policy: RetryPolicy,
  retryAfterMs: number | undefined,
  random: () => number = Math.random,
): number | undefined {
  if (retryAfterMs === undefined) return backoffDelay(retry, policy, random);
  const limit = policy.maxRetryAfterMs ?? DEFAULT_RETRY_POLICY.maxRetryAfterMs;
  return retryAfterMs > limit ? undefined : retryAfterMs;
}

/** Waits `ms`, rejecting with the signal's reason when it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    if (ms <= 0) {
      resolve();
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
