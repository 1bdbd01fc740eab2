/**
 * The label matchers of the simple PromQL queries the autoscalers use, e.g.
 * `sum(stevedore_queue_jobs{queue=~"pull|fetch",state=~"waiting|active"})`. Only equality and
 * alternations of literal values are understood: anything else throws, so a check built on this
 * cannot pass on a query it did not read.
 */

/** The values a label is matched against in `query` (`l="a"` → [a]; `l=~"a|b"` → [a, b]). */
export function labelValues(query: string, label: string): string[] {
  const values: string[] = [];
  const matcher = new RegExp(`[{,]\\s*${label}\\s*(=~|!=|!~|=)\\s*"([^"]*)"`, 'g');
  for (const [, op, value = ''] of query.matchAll(matcher)) {
    if (op === '=') {
      values.push(value);
    } else if (op === '=~') {
      if (!/^[\w-]+(\|[\w-]+)*$/.test(value)) {
        throw new Error(
          `label ${label} matches the regular expression "${value}": only a|b|c alternations are understood`,
        );
      }
      values.push(...value.split('|'));
    } else {
      throw new Error(
        `label ${label} has a negative matcher (${op}) in "${query}": the values it selects are unknown`,
      );
    }
  }
  return values;
}
