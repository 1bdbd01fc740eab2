import { describe, expect, it } from 'vitest';
import { labelValues } from './promql.ts';

describe('labelValues', () => {
  it.each([
    ['sum(m{queue="split",state=~"waiting|active"})', 'queue', ['split']],
    ['sum(m{queue="split",state=~"waiting|active"})', 'state', ['waiting', 'active']],
    ['sum(m{ queue =~ "pull|fetch" })', 'queue', ['pull', 'fetch']],
    ['sum(m{state="waiting"}) + sum(m{state="active"})', 'state', ['waiting', 'active']],
    ['sum(m{myqueue="x"})', 'queue', []],
    ['sum(m)', 'queue', []],
  ])('%s: %s', (query, label, values) => {
    expect(labelValues(query, label)).toEqual(values);
  });

  it.each([
    [
      'm{queue!="pull"}',
      'label queue has a negative matcher (!=) in "m{queue!="pull"}": the values it selects are unknown',
    ],
    [
      'm{queue=~"p.*"}',
      'label queue matches the regular expression "p.*": only a|b|c alternations are understood',
    ],
  ])('refuses %s', (query, message) => {
    expect(() => labelValues(query, 'queue')).toThrow(message);
  });
});
