import { Readable } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { meteredBody } from './progress.ts';

/** A body that ends in an error, as a registry blob stream does when its bytes fail the digest. */
function failingBody(): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(Buffer.from('a small blob'));
      } else this.destroy(new Error('digest mismatch'));
    },
  });
}

describe('meteredBody', () => {
  it('holds a failure that comes before any reader is attached for the reader (no uncaught error event)', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => void uncaught.push(err);
    process.prependListener('uncaughtException', onUncaught);
    try {
      const reported: number[] = [];
      const metered = meteredBody(failingBody(), (n) => reported.push(n));
      // The body is read whole and fails while nobody reads the meter yet (the store's HEAD).
      for (let i = 0; i < 20; i++) await tick();
      expect(metered.destroyed).toBe(true);
      expect(uncaught).toEqual([]);
      // The reader that comes later gets the body's error.
      await expect(
        (async () => {
          for await (const chunk of metered) void chunk;
        })(),
      ).rejects.toThrow('digest mismatch');
    } finally {
      process.removeListener('uncaughtException', onUncaught);
    }
  });

  it('counts the bytes, and a reader that gives up stops the body', async () => {
    const reported: number[] = [];
    const body = Readable.from([Buffer.alloc(10), Buffer.alloc(5)]);
    const chunks: Buffer[] = [];
    for await (const chunk of meteredBody(body, (n) => reported.push(n))) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).length).toBe(15);
    expect(reported.at(-1)).toBe(15);

    const endless = new Readable({
      read() {
        this.push(Buffer.alloc(1024));
      },
    });
    const metered = meteredBody(endless, () => undefined);
    metered.destroy();
    for (let i = 0; i < 5 && !endless.destroyed; i++) await tick();
    expect(endless.destroyed).toBe(true);
  });
});
