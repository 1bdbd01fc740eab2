/**
 * Parsing Redis `INFO` replies (`# Section` lines and `key:value` lines, CRLF-separated). Pure.
 */

/** The `key:value` fields of an INFO reply; section headers and blank lines are skipped. */
export function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    if (raw === '' || raw.startsWith('#')) continue;
    const colon = raw.indexOf(':');
    if (colon > 0) fields.set(raw.slice(0, colon), raw.slice(colon + 1));
  }
  return fields;
}

/** `total_commands_processed` of an `INFO stats` reply. */
export function totalCommands(info: string): number {
  const value = parseInfo(info).get('total_commands_processed');
  if (value === undefined || !/^\d+$/.test(value)) {
    throw new Error('INFO stats has no numeric total_commands_processed');
  }
  return Number(value);
}

/**
 * Calls per command from an `INFO commandstats` reply
 * (`cmdstat_evalsha:calls=12,usec=340,usec_per_call=28.33,...`).
 */
export function commandCalls(info: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const [key, value] of parseInfo(info)) {
    if (!key.startsWith('cmdstat_')) continue;
    const match = /(?:^|,)calls=(\d+)(?:,|$)/.exec(value);
    if (match !== null) calls.set(key.slice('cmdstat_'.length), Number(match[1]));
  }
  return calls;
}

/** Calls made between two commandstats snapshots, most frequent first, zero deltas left out. */
export function commandDelta(
  before: ReadonlyMap<string, number>,
  after: ReadonlyMap<string, number>,
): [string, number][] {
  return [...after]
    .map(([name, n]): [string, number] => [name, n - (before.get(name) ?? 0)])
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
}
