import { describe, expect, it } from 'vitest';
import { bucketFor, canonicalLabels, decodeField, encodeField, type MetricField } from './fields.ts';
import { parseSnapshot } from './reader.ts';

describe('encodeField / decodeField', () => {
  const cases: { field: MetricField; encoded: string }[] = [
    { field: { kind: 'counter', name: 'bytes_fetched', labels: [] }, encoded: '["c","bytes_fetched",[]]' },
    {
      field: { kind: 'histogram', name: 'stage_seconds', labels: [['stage', 'fetch']], part: 'le', le: 0.5 },
      encoded: '["h","stage_seconds",[["stage","fetch"]],"le","0.5"]',
    },
    {
      field: {
        kind: 'histogram',
        name: 'stage_seconds',
        labels: [['stage', 'a"|b']],
        part: 'le',
        le: Infinity,
      },
      encoded: '["h","stage_seconds",[["stage","a\\"|b"]],"le","+Inf"]',
    },
    {
      field: { kind: 'histogram', name: 'lock_wait_seconds', labels: [], part: 'sum' },
      encoded: '["h","lock_wait_seconds",[],"sum"]',
    },
    {
      field: { kind: 'histogram', name: 'lock_wait_seconds', labels: [], part: 'count' },
      encoded: '["h","lock_wait_seconds",[],"count"]',
    },
  ];
  it.each(cases)('round-trips $encoded', ({ field, encoded }) => {
    expect(encodeField(field)).toBe(encoded);
    expect(decodeField(encoded)).toEqual(field);
  });

  it.each([['["c","bytes_from_the_future",[]]'], ['["h","seconds_from_the_future",[],"sum"]']])(
    'skips the well-formed field %s of a metric this version does not know',
    (raw) => {
      expect(decodeField(raw)).toBeUndefined();
    },
  );

  it.each([
    ['nope', 'metrics field "nope" is not JSON'],
    ['{"c":1}', 'metrics field "{\\"c\\":1}": expected ["c"|"h", name, labels, ...]'],
    ['["x","bytes_fetched",[]]', 'metrics field "[\\"x\\",\\"bytes_fetched\\",[]]": unknown kind "x"'],
    [
      '["c","bytes_fetched",[["a"]]]',
      'metrics field "[\\"c\\",\\"bytes_fetched\\",[[\\"a\\"]]]": labels must be [name, value] pairs',
    ],
    [
      '["c","bytes_fetched",[],1]',
      'metrics field "[\\"c\\",\\"bytes_fetched\\",[],1]": a counter field has 3 elements',
    ],
    [
      '["h","stage_seconds",[],"le","x"]',
      'metrics field "[\\"h\\",\\"stage_seconds\\",[],\\"le\\",\\"x\\"]": a bucket field ends with "le" and a bound',
    ],
    [
      '["h","stage_seconds",[],"max"]',
      'metrics field "[\\"h\\",\\"stage_seconds\\",[],\\"max\\"]": histogram part must be le, sum or count',
    ],
  ])('refuses %s', (raw, message) => {
    expect(() => decodeField(raw)).toThrow(new Error(message));
  });
});

describe('canonicalLabels', () => {
  const cases: {
    labels: Record<string, string> | undefined;
    declared: string[];
    pairs: [string, string][];
  }[] = [
    { labels: undefined, declared: ['stage'], pairs: [] },
    { labels: { stage: 'fetch' }, declared: ['stage'], pairs: [['stage', 'fetch']] },
    {
      labels: { z: '1', a: '2' },
      declared: ['a', 'z'],
      pairs: [
        ['a', '2'],
        ['z', '1'],
      ],
    },
  ];
  it.each(cases)('sorts $labels', ({ labels, declared, pairs }) => {
    expect(canonicalLabels('m', declared, labels)).toEqual(pairs);
  });

  it.each([
    { labels: { queue: 'fetch' }, declared: [], message: 'metric m has no label "queue" (declared: none)' },
    {
      labels: { queue: 'fetch' },
      declared: ['stage'],
      message: 'metric m has no label "queue" (declared: stage)',
    },
  ])('refuses an undeclared label: $message', ({ labels, declared, message }) => {
    expect(() => canonicalLabels('m', declared, labels)).toThrow(new Error(message));
  });
});

describe('bucketFor', () => {
  const bounds = [0.1, 1, 10];
  it.each([
    [0, 0],
    [0.1, 0],
    [0.10001, 1],
    [1, 1],
    [9.99, 2],
    [10, 2],
    [10.5, 3],
    [Infinity, 3],
  ])('puts %d in bucket %d', (value, index) => {
    expect(bucketFor(bounds, value)).toBe(index);
  });
});

describe('parseSnapshot', () => {
  it('folds bounds of an older bucket list into the first current bucket at or above them', () => {
    const snapshot = parseSnapshot({
      '["h","lock_wait_seconds",[],"le","0.01"]': '1',
      // 0.02 and 0.03 are not current bounds: both belong to le=0.05.
      '["h","lock_wait_seconds",[],"le","0.02"]': '2',
      '["h","lock_wait_seconds",[],"le","0.03"]': '3',
      '["h","lock_wait_seconds",[],"le","+Inf"]': '4',
      '["h","lock_wait_seconds",[],"sum"]': '2000.5',
      '["h","lock_wait_seconds",[],"count"]': '10',
    });
    expect(snapshot.histograms.get('lock_wait_seconds')).toEqual([
      { labels: [], buckets: [1, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4], sum: 2000.5, count: 10 },
    ]);
  });

  it('names the field whose value is not a number', () => {
    expect(() => parseSnapshot({ '["c","lock_waits",[]]': 'many' }, 'k')).toThrow(
      new Error('Redis hash k, field ["c","lock_waits",[]]: value "many" is not a number'),
    );
  });
});
