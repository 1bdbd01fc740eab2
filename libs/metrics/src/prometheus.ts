/**
 * Prometheus exposition (prom-client) of what is in Redis, read at scrape time:
 *
 * - `stevedore_queue_jobs{queue,state}`: BullMQ job counts per queue and state. Autoscaling (KEDA,
 *   HPA) keys on `stevedore_queue_jobs{queue="fetch",state=~"waiting|active"}`: keep the name.
 * - the pipeline's counters (`stevedore_*_total`) and histograms (`stevedore_*_seconds`) that the
 *   workers add up in Redis (redis-metrics.ts), for the whole fleet.
 *
 * Every API replica exposes the same fleet-wide values: aggregate them with max(), not sum().
 */
import { Gauge, type Metric, type Registry } from 'prom-client';
import type { Queue } from 'bullmq';
import type { MetricName, TimingName } from '@stevedore/pipeline';
import { COUNTER_NAMES, COUNTERS, HISTOGRAM_NAMES, HISTOGRAMS } from './catalogue.ts';
import type { LabelPairs } from './fields.ts';
import type { PipelineSnapshot } from './reader.ts';

/** The BullMQ states counted, in exposition order. */
export const QUEUE_STATES = [
  'waiting',
  'active',
  'delayed',
  'waiting-children',
  'prioritized',
  'completed',
  'failed',
] as const;
export type QueueState = (typeof QUEUE_STATES)[number];

export const QUEUE_JOBS_METRIC = 'stevedore_queue_jobs';

/** Registers `stevedore_queue_jobs{queue,state}`, counted from `queues` at every scrape. */
export function registerQueueMetrics(registry: Registry, queues: readonly Queue[]): void {
  new Gauge({
    name: QUEUE_JOBS_METRIC,
    help: 'Jobs per stevedore queue and BullMQ state, read from Redis at scrape time.',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect() {
      const counts = await Promise.all(
        queues.map(async (queue) => {
          try {
            return await queue.getJobCounts(...QUEUE_STATES);
          } catch (err) {
            throw new Error(`counting the jobs of queue ${queue.name} failed`, { cause: err });
          }
        }),
      );
      this.reset();
      queues.forEach((queue, i) => {
        for (const state of QUEUE_STATES) this.set({ queue: queue.name, state }, counts[i]?.[state] ?? 0);
      });
    },
  });
}

/** One exported sample, as prom-client's registry formats it. */
interface Sample {
  readonly metricName: string;
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
}

/**
 * A metric whose samples are computed at scrape time from a snapshot: the shape prom-client's
 * `Registry` asks of a metric (`name`, `help`, `type`, `aggregator`, `get()`, `reset()`), which is
 * also what its own Counter and Histogram implement. prom-client has no public way to set a
 * histogram's buckets from outside data, hence this small collector instead of `Histogram`.
 */
interface SnapshotCollector {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'max';
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }>;
  reset(): void;
}

function labelObject(pairs: LabelPairs): Record<string, string> {
  return Object.fromEntries(pairs);
}

export function counterSamples(name: MetricName, snapshot: PipelineSnapshot): Sample[] {
  const spec = COUNTERS[name];
  const series = snapshot.counters.get(name) ?? [];
  // A counter without labels exists from the start (0), so rate() works from the first scrape.
  if (series.length === 0 && spec.labelNames.length === 0)
    return [{ metricName: spec.metric, labels: {}, value: 0 }];
  return series.map((s) => ({ metricName: spec.metric, labels: labelObject(s.labels), value: s.value }));
}

export function histogramSamples(name: TimingName, snapshot: PipelineSnapshot): Sample[] {
  const spec = HISTOGRAMS[name];
  let series = snapshot.histograms.get(name) ?? [];
  if (series.length === 0 && spec.labelNames.length === 0) {
    series = [{ labels: [], buckets: new Array<number>(spec.buckets.length + 1).fill(0), sum: 0, count: 0 }];
  }
  return series.flatMap((s) => {
    const labels = labelObject(s.labels);
    let cumulative = 0;
    const buckets = [...spec.buckets, '+Inf' as const].map((le, i) => {
      cumulative += s.buckets[i] ?? 0;
      return { metricName: `${spec.metric}_bucket`, labels: { ...labels, le }, value: cumulative };
    });
    return [
      ...buckets,
      { metricName: `${spec.metric}_sum`, labels, value: s.sum },
      { metricName: `${spec.metric}_count`, labels, value: s.count },
    ];
  });
}

/**
 * Coalesces concurrent calls: the registry asks every metric at once, and they all share the one
 * Redis read in flight. The next scrape reads again.
 */
function singleFlight<T>(read: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  return () => {
    inFlight ??= read().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
}

/** Registers every pipeline counter and histogram of the catalogue, computed from `read()` at scrape time. */
export function registerPipelineMetrics(registry: Registry, read: () => Promise<PipelineSnapshot>): void {
  const snapshot = singleFlight(read);
  const collector = (
    metric: string,
    help: string,
    type: SnapshotCollector['type'],
    samples: (s: PipelineSnapshot) => Sample[],
  ): SnapshotCollector => ({
    name: metric,
    help,
    type,
    aggregator: 'max',
    async get() {
      return { name: metric, help, type, aggregator: 'max', values: samples(await snapshot()) };
    },
    // The values live in Redis; there is nothing to reset here.
    reset() {},
  });
  const collectors = [
    ...COUNTER_NAMES.map((n) =>
      collector(COUNTERS[n].metric, COUNTERS[n].help, 'counter', (s) => counterSamples(n, s)),
    ),
    ...HISTOGRAM_NAMES.map((n) =>
      collector(HISTOGRAMS[n].metric, HISTOGRAMS[n].help, 'histogram', (s) => histogramSamples(n, s)),
    ),
  ];
  // See SnapshotCollector: structurally what the registry uses, not one of prom-client's classes.
  for (const c of collectors) registry.registerMetric(c as unknown as Metric);
}
