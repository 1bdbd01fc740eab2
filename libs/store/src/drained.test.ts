import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { drained } from './drained.ts';

/** A sink that holds every write until `release` is called. */
function slowSink(): { sink: Writable; release: () => void } {
  let pending: (() => void) | undefined;
  const sink = new Writable({
    highWaterMark: 4,
    write(_chunk, _encoding, callback) {
      pending = callback;
    },
  });
  return { sink, release: () => pending?.() };
}

describe('drained', () => {
  it('resolves when a full sink drains', async () => {
    const { sink, release } = slowSink();
    expect(sink.write(Buffer.alloc(8))).toBe(false);
    let done = false;
    const waiting = drained(sink).then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    release();
    await waiting;
    expect(done).toBe(true);
  });

  it('resolves when the sink is destroyed instead of draining, and at once if it already is', async () => {
    const { sink } = slowSink();
    sink.write(Buffer.alloc(8));
    const waiting = drained(sink);
    sink.destroy();
    await waiting;
    await drained(sink);
  });
});
