/**
 * Pure helpers for benchmark figures: medians, ratios, units and plain-text tables. No I/O.
 */

export const MB = 1e6;
export const MiB = 1024 * 1024;
export const KiB = 1024;

/** The median of the values (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** `a / b`, NaN when `b` is 0 (a figure that cannot be computed prints as `n/a`). */
export function ratio(a: number, b: number): number {
  return b === 0 ? Number.NaN : a / b;
}

/** Fixed decimals, or `n/a` for NaN and infinities. */
export function fixed(value: number, decimals: number): string {
  return Number.isFinite(value) ? value.toFixed(decimals) : 'n/a';
}

/** A right-aligned plain-text table; the first column is left-aligned. */
export function renderTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** A target check: `met` is undefined when the measurement is missing. */
export interface TargetCheck {
  readonly met: boolean | undefined;
  readonly text: string;
}

export function atMost(value: number, limit: number, decimals = 2): TargetCheck {
  if (!Number.isFinite(value)) return { met: undefined, text: `n/a (target <= ${limit})` };
  const met = value <= limit;
  return { met, text: `${value.toFixed(decimals)} (target <= ${limit}: ${met ? 'met' : 'NOT met'})` };
}

export function atLeast(value: number, limit: number, decimals = 2): TargetCheck {
  if (!Number.isFinite(value)) return { met: undefined, text: `n/a (target >= ${limit})` };
  const met = value >= limit;
  return { met, text: `${value.toFixed(decimals)} (target >= ${limit}: ${met ? 'met' : 'NOT met'})` };
}
