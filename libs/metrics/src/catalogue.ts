/**
 * Every pipeline metric: its Prometheus name, help text, label names and, for timings, the fixed
 * histogram buckets. Workers and the API both read this table, so what a worker records is what
 * the API knows how to expose. Typed by the pipeline's `MetricName`/`TimingName`: a new name there
 * does not compile until it is described here.
 */
import type { MetricName, TimingName } from '@stevedore/pipeline';

export interface CounterSpec {
  /** Prometheus name (counters end in `_total`). */
  readonly metric: string;
  readonly help: string;
  /** The only label names a worker may pass. */
  readonly labelNames: readonly string[];
}

export interface HistogramSpec {
  readonly metric: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  /** Upper bounds in seconds, ascending; `+Inf` is implied. */
  readonly buckets: readonly number[];
}

/**
 * A stage runs from milliseconds (a blob already stored) to minutes (a large layer over a slow
 * link); these bounds cover 5 ms to 10 min with roughly 2.5x steps.
 */
const STAGE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
] as const;
/**
 * A lock wait lasts until the holder finishes the blob, or until its lock expires (30 s by
 * default, renewable); the bounds stop at 10 min.
 */
const LOCK_WAIT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600] as const;

export const COUNTERS: { readonly [N in MetricName]: CounterSpec } = {
  bytes_fetched: {
    metric: 'stevedore_bytes_fetched_total',
    help: 'Compressed blob bytes transferred from registries into the store.',
    labelNames: [],
  },
  bytes_skipped: {
    metric: 'stevedore_bytes_skipped_total',
    help: 'Compressed blob bytes not transferred because the blob or its layer was already stored.',
    labelNames: [],
  },
  blobs_committed: {
    metric: 'stevedore_blobs_committed_total',
    help: 'Blobs fetched, verified and published in the store.',
    labelNames: [],
  },
  layers_committed: {
    metric: 'stevedore_layers_committed_total',
    help: 'Layer records committed.',
    labelNames: [],
  },
  objects_written: {
    metric: 'stevedore_objects_written_total',
    help: 'File objects written to the store when splitting layers.',
    labelNames: [],
  },
  objects_reused: {
    metric: 'stevedore_objects_reused_total',
    help: 'File objects found already stored when splitting layers (dedup hits).',
    labelNames: [],
  },
  lock_waits: {
    metric: 'stevedore_lock_waits_total',
    help: 'Jobs that found the blob or layer lock held by another worker and parked until its release.',
    labelNames: [],
  },
};

export const HISTOGRAMS: { readonly [N in TimingName]: HistogramSpec } = {
  stage_seconds: {
    metric: 'stevedore_stage_seconds',
    help: 'Time a pipeline stage took for one job, by stage (fetch, split, ...).',
    labelNames: ['stage'],
    buckets: STAGE_BUCKETS,
  },
  lock_wait_seconds: {
    metric: 'stevedore_lock_wait_seconds',
    help: 'Time a job waited for a blob or layer lock held by another worker.',
    labelNames: [],
    buckets: LOCK_WAIT_BUCKETS,
  },
};

export const COUNTER_NAMES = Object.keys(COUNTERS) as MetricName[];
export const HISTOGRAM_NAMES = Object.keys(HISTOGRAMS) as TimingName[];

export function isCounterName(name: string): name is MetricName {
  return Object.hasOwn(COUNTERS, name);
}

export function isHistogramName(name: string): name is TimingName {
  return Object.hasOwn(HISTOGRAMS, name);
}
