import { describe, expect, it } from 'vitest';
import { backoffDelay, parseRetryAfter, retryDelay, sleep } from './retry.ts';

const policy = { attempts: 5, baseDelayMs: 100, maxDelayMs: 1000, maxRetryAfterMs: 5000 };

describe('backoffDelay', () => {
  it.each([
    { retry: 0, random: 0.5, want: 50 },
    { retry: 1, random: 0.5, want: 100 },
    { retry: 3, random: 0.5, want: 400 },
    { retry: 4, random: 0.5, want: 500 }, // 1600 capped at 1000
    { retry: 10, random: 0.999, want: 999 },
    { retry: 2, random: 0, want: 0 },
  ])('retry $retry with random $random waits $want ms', ({ retry, random, want }) => {
    expect(backoffDelay(retry, policy, () => random)).toBe(want);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
  it.each([
    { value: undefined, want: undefined },
    { value: '0', want: 0 },
    { value: ' 3 ', want: 3000 },
    { value: 'Wed, 21 Oct 2015 07:28:05 GMT', want: 5000 },
    { value: 'Wed, 21 Oct 2015 07:27:00 GMT', want: 0 },
    { value: '-1', want: undefined },
    { value: '1.5', want: undefined },
    { value: 'soon', want: undefined },
    { value: '2015-10-21', want: undefined },
  ])('$value', ({ value, want }) => {
    expect(parseRetryAfter(value, now)).toBe(want);
  });
});

describe('retryDelay', () => {
  it.each([
    { name: 'backoff without Retry-After', retryAfter: undefined, want: 100 },
    { name: 'Retry-After honoured', retryAfter: 3000, want: 3000 },
    { name: 'Retry-After at the limit', retryAfter: 5000, want: 5000 },
    { name: 'Retry-After beyond the limit gives up', retryAfter: 5001, want: undefined },
  ])('$name', ({ retryAfter, want }) => {
    expect(retryDelay(1, policy, retryAfter, () => 0.5)).toBe(want);
  });
});

describe('sleep', () => {
  it('rejects with the abort reason', async () => {
    const controller = new AbortController();
    const pending = sleep(60_000, controller.signal);
    controller.abort(new Error('stop now'));
    await expect(pending).rejects.toThrow('stop now');
  });
  it('rejects at once when already aborted, even for 0 ms', async () => {
    await expect(sleep(0, AbortSignal.abort(new Error('gone')))).rejects.toThrow('gone');
  });
});
