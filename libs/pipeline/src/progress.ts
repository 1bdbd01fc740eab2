/**
 * Byte progress of a streaming transfer, reported to the job at most every PROGRESS_INTERVAL_MS
 * (a progress update is a Redis round trip and an event to every listener).
 */
import { Transform, type TransformCallback } from 'node:stream';

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
