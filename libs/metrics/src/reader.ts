/** The API's side of pipeline metrics: one HGETALL of the metrics hash, parsed into series. */
import type { Redis } from 'ioredis';
import type { MetricName, TimingName } from '@stevedore/pipeline';
import { HISTOGRAMS } from './catalogue.ts';
import { bucketFor, decodeField, METRICS_KEY, seriesKey, type LabelPairs } from './fields.ts';

export interface CounterSeries {
  readonly labels: LabelPairs;
  readonly value: number;
}

export interface HistogramSeries {
  readonly labels: LabelPairs;
  /** Observations per bucket of the catalogue's bounds, then `+Inf` (not cumulative). */
  readonly buckets: readonly number[];
  readonly sum: number;
  readonly count: number;
}

/** Everything the workers recorded, by metric; series in a stable (sorted) order. */
export interface PipelineSnapshot {
  readonly counters: ReadonlyMap<MetricName, readonly CounterSeries[]>;
  readonly histograms: ReadonlyMap<TimingName, readonly HistogramSeries[]>;
}

interface MutableHistogram {
  labels: LabelPairs;
  buckets: number[];
  sum: number;
  count: number;
}

/** Parses the hash's fields and values (as HGETALL returns them). Throws naming a bad field. */
export function parseSnapshot(hash: Readonly<Record<string, string>>, key = METRICS_KEY): PipelineSnapshot {
  const counters = new Map<string, { name: MetricName; series: CounterSeries }>();
  const histograms = new Map<string, { name: TimingName; series: MutableHistogram }>();
  for (const [raw, text] of Object.entries(hash)) {
    const field = decodeField(raw);
    if (field === undefined) continue;
    const value = Number(text);
    if (text.trim() === '' || !Number.isFinite(value)) {
      throw new Error(`Redis hash ${key}, field ${raw}: value ${JSON.stringify(text)} is not a number`);
    }
    const id = seriesKey(field.name, field.labels);
    switch (field.kind) {
      case 'counter':
        counters.set(id, { name: field.name, series: { labels: field.labels, value } });
        break;
      case 'histogram': {
        const bounds = HISTOGRAMS[field.name].buckets;
        let entry = histograms.get(id);
        if (entry === undefined) {
          entry = {
            name: field.name,
            series: {
              labels: field.labels,
              buckets: new Array<number>(bounds.length + 1).fill(0),
              sum: 0,
              count: 0,
            },
          };
          histograms.set(id, entry);
        }
        const h = entry.series;
        if (field.part === 'le') h.buckets[bucketFor(bounds, field.le)]! += value;
        else if (field.part === 'sum') h.sum = value;
        else h.count = value;
        break;
      }
    }
  }
  const byName = <N, S>(entries: Iterable<[string, { name: N; series: S }]>): Map<N, S[]> => {
    const out = new Map<N, S[]>();
    for (const [, { name, series }] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const list = out.get(name) ?? [];
      list.push(series);
      out.set(name, list);
    }
    return out;
  };
  return { counters: byName(counters), histograms: byName(histograms) };
}

/** Reads the metrics hash. */
export async function readPipelineMetrics(redis: Redis, key = METRICS_KEY): Promise<PipelineSnapshot> {
  let hash: Record<string, string>;
  try {
    hash = await redis.hgetall(key);
  } catch (err) {
    throw new Error(`reading pipeline metrics from Redis hash ${key} failed`, { cause: err });
  }
  return parseSnapshot(hash, key);
}
