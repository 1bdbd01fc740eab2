/**
 * Stream helpers of the hot paths. {@link drained}: waiting out backpressure on a sink that may also
 * be destroyed meanwhile (a wait on 'drain' alone would never end for a sink that closed instead;
 * its error, if any, is reported elsewhere). Reading a byte stream's chunks without copying them
 * is `chunksOf` of `@stevedore/oci/streams`.
 */

/** What both Node's Writables and streamx's sinks (tar-stream) have. */
export interface DrainableSink {
  readonly destroyed: boolean;
  on(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'close', listener: () => void): unknown;
}

/** Resolves when `sink` takes more ('drain') or is gone ('close'; at once if already destroyed). */
export function drained(sink: DrainableSink): Promise<void> {
  if (sink.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      sink.off('drain', done);
      sink.off('close', done);
      resolve();
    };
    sink.on('drain', done);
    sink.on('close', done);
  });
}
