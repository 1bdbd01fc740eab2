/**
 * `@stevedore/oci/streams`: reading byte streams on hot paths. The registry client reads blob bodies
 * with {@link chunksOf}, and the pipeline reads blobs with it. Node modules only, like `./spec`.
 */
import { finished, type Readable } from 'node:stream';

/**
 * The chunks of a byte stream as they were pushed, with backpressure: the stream is paused while
 * `maxQueuedBytes` wait for the consumer. `for await` on a Readable instead calls `read()`, which
 * concatenates every chunk buffered meanwhile into a new Buffer: for a consumer slower than its
 * source (a layer's decoder behind the registry), that copied most of the stream once more and
 * left as much garbage Buffer memory for V8 to collect. Ends when the stream ends, throws its error
 * (or a premature close), and destroys the stream when the consumer stops early.
 */
export async function* chunksOf(stream: Readable, maxQueuedBytes = 1024 * 1024): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let head = 0;
  let queued = 0;
  let done = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const onData = (chunk: Buffer): void => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= maxQueuedBytes) stream.pause();
    wake?.();
  };
  stream.on('data', onData);
  // A 'data' listener does not restart a stream paused before: this reader owns the flow now.
  if (stream.isPaused()) stream.resume();
  const cleanup = finished(stream, (err) => {
    if (err !== undefined && err !== null) failure = err;
    done = true;
    wake?.();
  });
  try {
    for (;;) {
      if (head < queue.length) {
        const chunk = queue[head]!;
        queue[head++] = EMPTY;
        if (head === queue.length) {
          queue.length = 0;
          head = 0;
        }
        queued -= chunk.length;
        if (queued < maxQueuedBytes && stream.isPaused() && !done) stream.resume();
        yield chunk;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (done) return;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    stream.off('data', onData);
    cleanup();
    if (!done) stream.destroy();
  }
}

const EMPTY = Buffer.alloc(0);
