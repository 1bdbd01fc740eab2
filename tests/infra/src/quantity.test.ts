import { describe, expect, it } from 'vitest';
import { MiB, parseQuantity } from './quantity.ts';

describe('parseQuantity', () => {
  it.each([
    ['500m', 0.5],
    ['2', 2],
    [2, 2],
    ['0.25', 0.25],
    ['512Mi', 512 * MiB],
    ['1Gi', 1024 * MiB],
    ['1G', 1e9],
    ['128k', 128_000],
    ['64Ki', 65_536],
  ])('%s is %d', (quantity, value) => {
    expect(parseQuantity(quantity)).toBe(value);
  });

  it.each(['', 'Mi', '1MB', '1 Gi', 'two', '1e3x'])('rejects "%s"', (quantity) => {
    expect(() => parseQuantity(quantity)).toThrow(`not a Kubernetes quantity: "${quantity}"`);
  });
});
