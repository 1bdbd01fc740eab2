/**
 * The workers' side of pipeline metrics: a {@link PipelineMetrics} that adds up increments in
 * memory and flushes them to the Redis hash {@link METRICS_KEY} (fields.ts) every second and on
 * close, in one MULTI of HINCRBYFLOATs. Every worker process adds into the same hash, so the API
 * exposes totals for the whole fleet without scraping workers (which come and go with autoscaling).
 */
import type { Redis } from 'ioredis';
import type { MetricName, PipelineMetrics, TimingName } from '@stevedore/pipeline';
import { HISTOGRAMS } from './catalogue.ts';
import {
  bucketFor,
  counterLabels,
  encodeField,
  histogramLabels,
  METRICS_KEY,
  type Labels,
} from './fields.ts';

/**
 * One Redis transaction per second per worker process keeps the write load flat however many
 * jobs run, and Prometheus scrapes far less often than that.
 */
export const DEFAULT_FLUSH_INTERVAL_MS = 1_000;

export interface RedisPipelineMetricsOptions {
  /** Called with the error of a background flush that failed; its increments are kept for the next one. */
  readonly onError: (err: Error) => void;
  readonly flushIntervalMs?: number;
  /** The hash to add to (tests use their own). */
  readonly key?: string;
}

export class RedisPipelineMetrics implements PipelineMetrics {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #onError: (err: Error) => void;
  readonly #timer: NodeJS.Timeout;
  /** Increments not yet in Redis, by encoded field. */
  #pending = new Map<string, number>();
  /** The flush in progress, if any: flushes never overlap, so increments are sent once. */
  #flushing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(redis: Redis, options: RedisPipelineMetricsOptions) {
    this.#redis = redis;
    this.#key = options.key ?? METRICS_KEY;
    this.#onError = options.onError;
    this.#timer = setInterval(() => {
      this.flush().catch((err: unknown) =>
        this.#onError(err instanceof Error ? err : new Error(String(err))),
      );
    }, options.flushIntervalMs ?? DEFAULT_FLUSH_INTERVAL_MS);
    // Metrics never keep a process alive on their own; close() flushes the last increments.
    this.#timer.unref();
  }

  count(name: MetricName, value = 1, labels?: Readonly<Record<string, string>>): void {
    if (!Number.isFinite(value) || value < 0) {
      throw new Error(`metric ${name}: a counter only grows, got ${value}`);
    }
    this.#add(encodeField({ kind: 'counter', name, labels: counterLabels(name, labels) }), value);
  }

  observe(name: TimingName, seconds: number, labels?: Labels): void {
    if (!Number.isFinite(seconds) || seconds < 0) {
      throw new Error(`metric ${name}: a duration must be a non-negative number of seconds, got ${seconds}`);
    }
    const pairs = histogramLabels(name, labels);
    const buckets = HISTOGRAMS[name].buckets;
    const le = buckets[bucketFor(buckets, seconds)] ?? Number.POSITIVE_INFINITY;
    this.#add(encodeField({ kind: 'histogram', name, labels: pairs, part: 'le', le }), 1);
    this.#add(encodeField({ kind: 'histogram', name, labels: pairs, part: 'sum' }), seconds);
    this.#add(encodeField({ kind: 'histogram', name, labels: pairs, part: 'count' }), 1);
  }

  /**
   * Sends the pending increments. A histogram's bucket, sum and count go in one transaction, so a
   * scrape never sees a count without its bucket. On failure the increments are put back (merged
   * with newer ones) and the error is thrown.
   */
  flush(): Promise<void> {
    const next = this.#flushing.then(() => this.#send());
    // The chain continues after a failure; the caller of this flush gets the error.
    this.#flushing = next.catch(() => undefined);
    return next;
  }

  /** Stops the timer and flushes what is left; throws if that last flush fails. */
  async close(): Promise<void> {
    if (this.#closed) return this.#flushing;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.flush();
  }

  #add(field: string, value: number): void {
    this.#pending.set(field, (this.#pending.get(field) ?? 0) + value);
  }

  async #send(): Promise<void> {
    if (this.#pending.size === 0) return;
    const batch = this.#pending;
    this.#pending = new Map();
    const entries = [...batch];
    const multi = this.#redis.multi();
    for (const [field, value] of entries) multi.hincrbyfloat(this.#key, field, value);
    let results: [Error | null, unknown][] | null;
    try {
      results = await multi.exec();
    } catch (err) {
      // Not applied (a lost EXEC reply could double-count one batch: rare, and only ever upwards).
      for (const [field, value] of entries) this.#add(field, value);
      throw new Error(`flushing ${entries.length} pipeline metric values to Redis hash ${this.#key} failed`, {
        cause: err,
      });
    }
    if (results === null) {
      for (const [field, value] of entries) this.#add(field, value);
      throw new Error(`flushing pipeline metrics to Redis hash ${this.#key}: transaction aborted`);
    }
    // A command fails alone (a field that is not a number): keep only its increment for later.
    const failures = entries.flatMap(([field, value], i) => {
      const err = results[i]?.[0];
      return err === null || err === undefined ? [] : [{ field, value, err }];
    });
    for (const { field, value } of failures) this.#add(field, value);
    const first = failures[0];
    if (first !== undefined) {
      throw new Error(`adding to field ${first.field} of Redis hash ${this.#key} failed`, {
        cause: first.err,
      });
    }
  }
}
