/**
 * Splitting a layer while its blob is fetched, in a process that serves both the fetcher and the
 * hasher role (the embedded `worker all`). The registry stream is copied to two consumers at the
 * pace of the slower: the blob's write into the store, and the decoder feeding the split. The split
 * job that follows finds the layer stored and has nothing to do; a process with only one of the
 * roles never does this, and the split job splits from the stored blob as before.
 *
 * Order and ownership are those of the two jobs it merges:
 * - the fetch holds `blob:<digest>`; the split takes `layer:<diffID>` only if it is free (never
 *   waits for it, so no two locks are ever awaited in opposite orders) and holds it, renewed, until
 *   the layer is published or abandoned, then releases it and wakes its waiters;
 * - the layer record is published only after the blob is stored, that is after the registry stream
 *   ended verified (a blob that fails its digest publishes nothing), and only while the layer lock
 *   is still ours (fencing, as in the split job);
 * - a split that fails for any reason is abandoned without failing the fetch: the blob is still
 *   written, and the split job splits it from the store and reports the error under its own name.
 */
import { PassThrough, type Readable } from 'node:stream';
import type { LockGrant } from '@stevedore/lock';
import type { DiffID, Digest } from '@stevedore/oci';
import { wakeWaiters } from '@stevedore/queue';
import { chunksOf } from '@stevedore/oci/streams';
import { drained, STREAM_CHUNK_BYTES } from '@stevedore/store';
import { decompressLayer } from '../compression.ts';
import type { ProcessorDeps } from '../deps.ts';
import type { Logger } from '../logger.ts';
import type { LayerImportStats } from '../ports.ts';

/** How many layers a process splits while fetching them at once (its split concurrency). */
export class SplitSlots {
  #free: number;
  constructor(max: number) {
    this.#free = max;
  }
  tryTake(): boolean {
    if (this.#free === 0) return false;
    this.#free -= 1;
    return true;
  }
  give(): void {
    this.#free += 1;
  }
}

export interface FetchAndSplit {
  readonly digest: Digest;
  readonly diffID: DiffID;
  readonly size: number;
  readonly mediaType: string;
  /** The registry's verifying blob stream (already metered). */
  readonly body: Readable;
  /** The blob lock's signal: aborts both when the fetch loses its lock. */
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/**
 * Stores the blob and, when a split slot and the layer lock are free, splits the layer from the
 * same bytes. Returns the split's statistics, or undefined when the layer was not split here.
 * Throws only what the blob's own write throws.
 */
export async function fetchAndMaybeSplit(
  deps: ProcessorDeps,
  work: FetchAndSplit,
): Promise<LayerImportStats | undefined> {
  const { store, locks } = deps;
  const slots = deps.splitWhileFetching;
  const storeBlob = (body: Readable): Promise<void> =>
    store.putBlob(work.digest, work.size, body, { signal: work.signal, verifiedBySource: true });
  if (slots === undefined || !slots.tryTake()) {
    await storeBlob(work.body);
    return undefined;
  }
  try {
    const attempt = await locks.tryAcquire(`layer:${work.diffID}`);
    if (!attempt.acquired) {
      await storeBlob(work.body);
      return undefined;
    }
    const { grant } = attempt;
    const started = Date.now();
    try {
      const stats = await teeAndSplit(deps, work, storeBlob, grant);
      // A split, like the split job's: the stage metric counts it (its time is the fetch's too).
      if (stats !== undefined)
        deps.metrics.observe('stage_seconds', (Date.now() - started) / 1000, { stage: 'split' });
      return stats;
    } finally {
      const { waiters } = await locks.release(grant);
      await wakeWaiters(deps.queues, waiters);
    }
  } finally {
    slots.give();
  }
}

async function teeAndSplit(
  deps: ProcessorDeps,
  work: FetchAndSplit,
  storeBlob: (body: Readable) => Promise<void>,
  grant: LockGrant,
): Promise<LayerImportStats | undefined> {
  const { store, locks } = deps;
  const toBlob = new PassThrough({ highWaterMark: STREAM_CHUNK_BYTES });
  const toSplit = new PassThrough({ highWaterMark: STREAM_CHUNK_BYTES });
  // Their consumers see their errors (the blob write, the decoder); a consumer that has already
  // gone (an abandoned split) must not turn the fetch's error into an uncaught 'error' event.
  for (const side of [toBlob, toSplit]) side.on('error', () => undefined);
  let splitting = true;

  const stored = storeBlob(toBlob);
  // A failed write stops the copying: nothing waits on a consumer that is gone.
  stored.catch((err: unknown) => {
    const reason = err instanceof Error ? err : new Error(String(err));
    work.body.destroy(reason);
    toBlob.destroy(reason);
  });

  const split = locks
    .hold(
      grant,
      async (layerSignal) => {
        // Under the layer lock, checked again: another process may have split it meanwhile.
        if (await store.hasLayerContent(work.diffID)) return undefined;
        const tar = await decompressLayer(toSplit, work.mediaType, `layer ${work.digest}`);
        return store.importLayer(tar, work.diffID, {
          signal: layerSignal,
          beforePublish: async () => {
            await stored;
            await locks.assertCurrent(grant);
          },
        });
      },
      work.signal,
    )
    .catch((err: unknown) => {
      if (!work.signal.aborted) {
        work.log.warn(
          { diffID: work.diffID, err: err instanceof Error ? err.message : String(err) },
          'split while fetching abandoned: the split job will split the stored blob',
        );
      }
      return undefined;
    })
    .finally(() => {
      splitting = false;
      toSplit.destroy();
    });

  const pass = async (chunk: Buffer): Promise<void> => {
    const blobFull = !toBlob.write(chunk);
    const splitFull = splitting && !toSplit.write(chunk);
    if (blobFull || splitFull) {
      await Promise.all([blobFull ? drained(toBlob) : undefined, splitFull ? drained(toSplit) : undefined]);
    }
  };
  try {
    for await (const chunk of chunksOf(work.body, STREAM_CHUNK_BYTES)) await pass(chunk);
    toBlob.end();
    if (splitting) toSplit.end();
  } catch (err) {
    const reason = err instanceof Error ? err : new Error(String(err));
    toBlob.destroy(reason);
    toSplit.destroy(reason);
  }
  // Both settle before the layer lock is released: a split never outlives its lock.
  const [blob, layer] = await Promise.allSettled([stored, split]);
  if (blob.status === 'rejected') throw blob.reason;
  return layer.status === 'fulfilled' ? layer.value : undefined;
}
