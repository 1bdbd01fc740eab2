/**
 * Byte progress of a streaming transfer, reported to the job at most every PROGRESS_INTERVAL_MS
 * (a progress update is a Redis round trip and an event to every listener).
 */
import { pipeline, Transform, type Readable, type TransformCallback } from 'node:stream';

const PROGRESS_INTERVAL_MS = 250;

export function progressMeter(report: (bytes: number) => void): Transform {
  let bytes = 0;
  let last = 0;
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      bytes += chunk.length;
      const now = Date.now();
      if (now - last >= PROGRESS_INTERVAL_MS) {
        last = now;
        report(bytes);
      }
      done(null, chunk);
    },
    flush(done: TransformCallback) {
      report(bytes);
      done();
    },
  });
}

/**
 * `body` through a {@link progressMeter}, joined with `pipeline`: the body's failure (a blob that
 * fails its digest at its end) reaches the meter and whoever reads it, and a reader that destroys
 * the meter stops the body. pipeline listens for errors on both from the start, so a failure that
 * comes before the reader is attached (a small blob, read whole into the meter's buffer while the
 * store still checks whether the blob is there) is held in the meter's state for the reader, not
 * thrown as an uncaught 'error' event that kills the process (`pipe` re-emits such an error when
 * the destination has no listener of its own).
 */
export function meteredBody(body: Readable, report: (bytes: number) => void): Transform {
  const meter = progressMeter(report);
  pipeline(body, meter, () => undefined);
  return meter;
}
