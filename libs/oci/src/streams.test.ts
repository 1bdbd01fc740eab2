import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { chunksOf } from './streams.ts';

/** A turn of the event loop: lets the stream emit what it has. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A stream whose chunks the test pushes itself. */
function manual(): Readable {
  return new Readable({ read() {} });
}

describe('chunksOf', () => {
  const pushed = ['a', 'bb', 'ccc', 'dddd', 'eeeee'].map((s) => Buffer.from(s));

  it('yields the very Buffers the stream pushed, in order, also those buffered before the consumer asked', async () => {
    const stream = manual();
    for (const chunk of pushed.slice(0, 3)) stream.push(chunk);
    const got: Buffer[] = [];
    for await (const chunk of chunksOf(stream)) {
      got.push(chunk);
      if (got.length === 1) {
        // Queued while the consumer is busy with the first.
        for (const more of pushed.slice(3)) stream.push(more);
        stream.push(null);
        await turn();
      }
    }
    expect(got).toHaveLength(pushed.length);
    got.forEach((chunk, i) => expect(chunk).toBe(pushed[i]));
  });

  it('(unlike for await on the Readable, which concatenates the chunks buffered meanwhile)', async () => {
    const stream = manual();
    for (const chunk of pushed.slice(0, 3)) stream.push(chunk);
    stream.push(null);
    const got: Buffer[] = [];
    for await (const chunk of stream) got.push(chunk as Buffer);
    expect(got).toHaveLength(1);
    expect(got[0]).not.toBe(pushed[0]);
    expect(got[0]).toEqual(Buffer.concat(pushed.slice(0, 3)));
  });

  it('pauses a fast stream while maxQueuedBytes wait for a slow consumer, then delivers everything', async () => {
    const chunkBytes = 16 * 1024;
    const count = 200;
    const maxQueuedBytes = 4 * chunkBytes;
    let produced = 0;
    const stream = new Readable({
      highWaterMark: 2 * chunkBytes,
      read() {
        if (produced === count) {
          this.push(null);
          return;
        }
        const chunk = Buffer.alloc(chunkBytes);
        chunk.writeUInt32BE(produced++);
        this.push(chunk);
      },
    });
    let consumed = 0;
    let mostAhead = 0;
    let sawPaused = false;
    for await (const chunk of chunksOf(stream, maxQueuedBytes)) {
      expect(chunk.readUInt32BE(0)).toBe(consumed);
      consumed++;
      mostAhead = Math.max(mostAhead, produced - consumed);
      sawPaused ||= stream.isPaused();
      await turn();
    }
    expect(consumed).toBe(count);
    expect(sawPaused).toBe(true);
    // Read from the source but not yet consumed: at most the queue (maxQueuedBytes and the chunk
    // that crossed it) and the stream's own buffer (highWaterMark). Unbounded, it would be all 200.
    expect(mostAhead).toBeLessThanOrEqual(maxQueuedBytes / chunkBytes + 1 + 2);
  });

  it("throws the stream's error after the chunks that came before it", async () => {
    const stream = manual();
    const chunks = chunksOf(stream);
    const first = chunks.next();
    for (const chunk of pushed.slice(0, 3)) stream.push(chunk);
    await turn();
    const boom = new Error('boom');
    stream.destroy(boom);
    await turn();
    expect((await first).value).toBe(pushed[0]);
    expect((await chunks.next()).value).toBe(pushed[1]);
    expect((await chunks.next()).value).toBe(pushed[2]);
    await expect(chunks.next()).rejects.toBe(boom);
  });

  it('throws an error that arrives while the consumer waits', async () => {
    const stream = manual();
    const chunks = chunksOf(stream);
    const first = chunks.next();
    await turn();
    const boom = new Error('boom');
    stream.destroy(boom);
    await expect(first).rejects.toBe(boom);
  });

  it('throws ERR_STREAM_PREMATURE_CLOSE for a stream destroyed without an error', async () => {
    // While the consumer waits.
    const waiting = manual();
    const next = chunksOf(waiting).next();
    await turn();
    waiting.destroy();
    await expect(next).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    // After a chunk, while the consumer has it.
    const stream = manual();
    stream.push(pushed[0]);
    const got: Buffer[] = [];
    await expect(
      (async () => {
        for await (const chunk of chunksOf(stream)) {
          got.push(chunk);
          stream.destroy();
        }
      })(),
    ).rejects.toMatchObject({ code: 'ERR_STREAM_PREMATURE_CLOSE' });
    expect(got).toEqual([pushed[0]]);
  });

  it('destroys the stream when the consumer stops early', async () => {
    const stream = manual();
    stream.push(pushed[0]);
    stream.push(pushed[1]);
    for await (const chunk of chunksOf(stream)) {
      expect(chunk).toBe(pushed[0]);
      break;
    }
    expect(stream.destroyed).toBe(true);
    expect(stream.listenerCount('data')).toBe(0);
  });

  it('destroys the stream when the consumer throws', async () => {
    const stream = manual();
    stream.push(pushed[0]);
    const oops = new Error('consumer failed');
    await expect(
      (async () => {
        for await (const _chunk of chunksOf(stream)) throw oops;
      })(),
    ).rejects.toBe(oops);
    expect(stream.destroyed).toBe(true);
  });

  it('reads a stream that was paused before', async () => {
    const stream = manual();
    stream.pause();
    stream.push(pushed[0]);
    stream.push(null);
    const got: Buffer[] = [];
    for await (const chunk of chunksOf(stream)) got.push(chunk);
    expect(got).toEqual([pushed[0]]);
  });

  it('ends at once for a stream that already ended', async () => {
    const stream = Readable.from([Buffer.from('x')]);
    for await (const _chunk of stream);
    const got: Buffer[] = [];
    for await (const chunk of chunksOf(stream)) got.push(chunk);
    expect(got).toEqual([]);
  });
});
