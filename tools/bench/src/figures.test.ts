import { describe, expect, it } from 'vitest';
import { atLeast, atMost, fixed, median, ratio, renderTable } from './figures.ts';

describe('median', () => {
  it.each([
    { values: [], expected: Number.NaN },
    { values: [3], expected: 3 },
    { values: [5, 1, 3], expected: 3 },
    { values: [4, 1, 3, 2], expected: 2.5 },
    { values: [2.5, 2.5, 10], expected: 2.5 },
  ])('of $values is $expected', ({ values, expected }) => {
    expect(median(values)).toBe(expected);
  });

  it('leaves its input unsorted', () => {
    const values = [3, 1, 2];
    median(values);
    expect(values).toEqual([3, 1, 2]);
  });
});

describe('ratio and fixed', () => {
  it.each([
    { a: 3, b: 2, decimals: 2, text: '1.50' },
    { a: 1, b: 0, decimals: 2, text: 'n/a' },
    { a: 0, b: 4, decimals: 1, text: '0.0' },
  ])('$a / $b prints $text', ({ a, b, decimals, text }) => {
    expect(fixed(ratio(a, b), decimals)).toBe(text);
  });

  it('prints infinities as n/a', () => {
    expect(fixed(Number.POSITIVE_INFINITY, 2)).toBe('n/a');
  });
});

describe('target checks', () => {
  it.each([
    { check: atMost(2.4, 2.5), met: true, text: '2.40 (target <= 2.5: met)' },
    { check: atMost(2.5, 2.5), met: true, text: '2.50 (target <= 2.5: met)' },
    { check: atMost(2.6, 2.5), met: false, text: '2.60 (target <= 2.5: NOT met)' },
    { check: atLeast(3, 3), met: true, text: '3.00 (target >= 3: met)' },
    { check: atLeast(0.5, 3), met: false, text: '0.50 (target >= 3: NOT met)' },
    { check: atMost(Number.NaN, 512), met: undefined, text: 'n/a (target <= 512)' },
    { check: atMost(300.4, 512, 0), met: true, text: '300 (target <= 512: met)' },
  ])('$text', ({ check, met, text }) => {
    expect(check).toEqual({ met, text });
  });
});

describe('renderTable', () => {
  it('pads columns to the widest cell, the first left-aligned and the rest right-aligned', () => {
    expect(
      renderTable(
        ['tool', 'wall s'],
        [
          ['stevedore', '1.50'],
          ['skopeo', '12.25'],
        ],
      ),
    ).toBe(['tool       wall s', '---------  ------', 'stevedore    1.50', 'skopeo      12.25'].join('\n'));
  });
});
