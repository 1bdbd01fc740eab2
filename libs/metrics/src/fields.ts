/**
 * The Redis hash that carries pipeline metrics from the workers to the API, one field per value:
 *
 *     key   stevedore:metrics:pipeline            (METRICS_KEY)
 *     field ["c","bytes_fetched",[]]                           counter value
 *           ["h","stage_seconds",[["stage","fetch"]],"le","0.5"]  observations in (previous le, 0.5]
 *           ["h","stage_seconds",[["stage","fetch"]],"le","+Inf"] observations above the last bound
 *           ["h","stage_seconds",[["stage","fetch"]],"sum"]        sum of the observed seconds
 *           ["h","stage_seconds",[["stage","fetch"]],"count"]      number of observations
 *
 * Fields are JSON arrays (labels sorted by name) so any label value round-trips; values only grow,
 * by HINCRBYFLOAT. Bucket fields count their own interval (not cumulative) and are keyed by the
 * bound, not its position, so adding a bucket later folds old counts into the right place (see
 * {@link bucketFor}). The whole hash is a set of Prometheus counters: deleting it is a counter reset.
 */
import type { MetricName, TimingName } from '@stevedore/pipeline';
import { COUNTERS, HISTOGRAMS, isCounterName, isHistogramName } from './catalogue.ts';

/** The hash every worker adds to and the API reads. */
export const METRICS_KEY = 'stevedore:metrics:pipeline';

export type Labels = Readonly<Record<string, string>>;
/** Labels as sorted `[name, value]` pairs: the canonical form used in fields and series keys. */
export type LabelPairs = readonly (readonly [string, string])[];

export type HistogramPart = { readonly part: 'le'; readonly le: number } | { readonly part: 'sum' | 'count' };

export type MetricField =
  | { readonly kind: 'counter'; readonly name: MetricName; readonly labels: LabelPairs }
  | ({ readonly kind: 'histogram'; readonly name: TimingName; readonly labels: LabelPairs } & HistogramPart);

/**
 * Checks `labels` against the label names the catalogue declares for `metric` and returns them in
 * canonical order. An undeclared label name is a programming error (it would create unbounded
 * series), so it throws, naming the metric and the label.
 */
export function canonicalLabels(
  metric: string,
  declared: readonly string[],
  labels: Labels | undefined,
): LabelPairs {
  if (labels === undefined) return [];
  const pairs = Object.entries(labels);
  for (const [name, value] of pairs) {
    if (!declared.includes(name)) {
      throw new Error(
        `metric ${metric} has no label "${name}" (declared: ${declared.length === 0 ? 'none' : declared.join(', ')})`,
      );
    }
    if (typeof value !== 'string') throw new Error(`metric ${metric}: label "${name}" must be a string`);
  }
  return pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function formatBound(le: number): string {
  return le === Number.POSITIVE_INFINITY ? '+Inf' : String(le);
}

export function encodeField(field: MetricField): string {
  switch (field.kind) {
    case 'counter':
      return JSON.stringify(['c', field.name, field.labels]);
    case 'histogram':
      return JSON.stringify(
        field.part === 'le'
          ? ['h', field.name, field.labels, 'le', formatBound(field.le)]
          : ['h', field.name, field.labels, field.part],
      );
  }
}

function isLabelPairs(v: unknown): v is LabelPairs {
  return (
    Array.isArray(v) &&
    v.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && typeof p[1] === 'string')
  );
}

/**
 * Parses a field of the metrics hash. Returns undefined for a well-formed field of a metric this
 * version does not know (a newer worker during a rolling upgrade: not an error, just not exposed
 * yet); throws, naming the field, for anything malformed.
 */
export function decodeField(raw: string): MetricField | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch (err) {
    throw new Error(`metrics field ${JSON.stringify(raw)} is not JSON`, { cause: err });
  }
  const bad = (what: string): Error => new Error(`metrics field ${JSON.stringify(raw)}: ${what}`);
  if (!Array.isArray(v) || typeof v[0] !== 'string' || typeof v[1] !== 'string') {
    throw bad('expected ["c"|"h", name, labels, ...]');
  }
  const [kind, name, labels] = v as [string, string, unknown];
  if (!isLabelPairs(labels)) throw bad('labels must be [name, value] pairs');
  if (kind === 'c') {
    if (v.length !== 3) throw bad('a counter field has 3 elements');
    return isCounterName(name) ? { kind: 'counter', name, labels } : undefined;
  }
  if (kind !== 'h') throw bad(`unknown kind "${kind}"`);
  const part: unknown = v[3];
  let parsed: HistogramPart;
  if (part === 'sum' || part === 'count') {
    if (v.length !== 4) throw bad(`a ${part} field has 4 elements`);
    parsed = { part };
  } else if (part === 'le') {
    const bound: unknown = v[4];
    const le =
      bound === '+Inf' ? Number.POSITIVE_INFINITY : typeof bound === 'string' ? Number(bound) : Number.NaN;
    if (v.length !== 5 || Number.isNaN(le)) throw bad('a bucket field ends with "le" and a bound');
    parsed = { part, le };
  } else {
    throw bad('histogram part must be le, sum or count');
  }
  return isHistogramName(name) ? { kind: 'histogram', name, labels, ...parsed } : undefined;
}

/**
 * The index of the bucket (of `buckets`, plus `+Inf` at `buckets.length`) that counts `value`: the
 * first bound at or above it. Also places a bound recorded under an older bucket list: every value
 * it counted is at or below it, so it belongs in the first current bucket whose bound is at least
 * as large.
 */
export function bucketFor(buckets: readonly number[], value: number): number {
  const i = buckets.findIndex((le) => value <= le);
  return i === -1 ? buckets.length : i;
}

/** A key identifying one series of a metric (its name and canonical labels). */
export function seriesKey(name: string, labels: LabelPairs): string {
  return JSON.stringify([name, labels]);
}

export function counterLabels(name: MetricName, labels: Labels | undefined): LabelPairs {
  const spec = COUNTERS[name];
  return canonicalLabels(spec.metric, spec.labelNames, labels);
}

export function histogramLabels(name: TimingName, labels: Labels | undefined): LabelPairs {
  const spec = HISTOGRAMS[name];
  return canonicalLabels(spec.metric, spec.labelNames, labels);
}
