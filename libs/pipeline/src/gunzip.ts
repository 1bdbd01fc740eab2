/**
 * gzip decoding into two reused output buffers, for a layer's tar read in place by the store
 * (`LayerInput`: each chunk is copied before the next is asked for).
 *
 * Node's Gunzip stream allocates a new output Buffer per chunk: for a 645 MB tar, 2,500 Buffers of
 * 256 KiB, all garbage once the store has copied them. V8 runs a full GC for every 64 MB of new
 * Buffer memory, so the decoder alone caused about ten full GCs per such layer, each marking the
 * whole heap on V8's helper threads, on top of the stream machinery per chunk on the main thread.
 * This decoder drives the same native zlib handle the stream uses (node:zlib's `_handle`, the
 * binding behind `createGunzip`), on the libuv threadpool as the stream does, but writes into two
 * buffers in turn: while the store copies one, zlib fills the other.
 *
 * The handle is an internal of Node's zlib, like the zstd context of the store's workers: when
 * it is not there in the expected shape (another Node version), {@link nativeGunzipAvailable} is
 * false and callers use `createGunzip`; gunzip.test.ts fails then, so an upgrade that loses the
 * fast path does not go unnoticed. Errors are zlib's own (`code` Z_DATA_ERROR, Z_BUF_ERROR…), with
 * zlib's messages ("incorrect header check", "unexpected end of file"), as from the stream.
 */
import { constants, createGunzip } from 'node:zlib';
import { STREAM_CHUNK_BYTES, type ZlibWriteArgs } from '@stevedore/store';

/** Output buffer size: the store's stream chunk size. */
export const GUNZIP_CHUNK_BYTES = STREAM_CHUNK_BYTES;

interface NativeZlib {
  init(
    windowBits: number,
    level: number,
    memLevel: number,
    strategy: number,
    writeState: Uint32Array,
    processCallback: () => void,
    dictionary: Uint8Array | undefined,
    rejectGarbageAfterEnd: boolean,
  ): void;
  write(...args: ZlibWriteArgs): void;
  close(): void;
  onerror?: (message: string, errno: number, code: string) => void;
}

type NativeZlibClass = new (mode: number) => NativeZlib;

/** The binding class behind Node's zlib streams, or undefined when it is not as expected. */
const NativeZlib: NativeZlibClass | undefined = (() => {
  const probe = createGunzip() as unknown as { _handle?: object; close(): void };
  const handle = probe._handle;
  probe.close();
  if (handle === undefined || handle === null) return undefined;
  const proto = Object.getPrototypeOf(handle) as Record<string, unknown>;
  const ok = ['init', 'write', 'close'].every((m) => typeof proto[m] === 'function');
  return ok ? (handle.constructor as NativeZlibClass) : undefined;
})();

export const nativeGunzipAvailable = NativeZlib !== undefined;

/** An error of zlib's, as the stream reports it (message, errno, code). */
function zlibError(message: string, errno: number, code: string): Error {
  return Object.assign(new Error(message), { errno, code });
}

/** One native gunzip context; one write at a time, each resolving with [availOut, availIn]. */
class GunzipContext {
  readonly #handle: NativeZlib;
  readonly #state = new Uint32Array(2);
  #settle: ((err: Error | undefined) => void) | undefined;
  #failure: Error | undefined;
  #closed = false;

  constructor(Native: NativeZlibClass) {
    this.#handle = new Native(constants.GUNZIP);
    this.#handle.onerror = (message, errno, code) => {
      this.#failure ??= zlibError(message, errno, code);
      this.#take()?.(this.#failure);
    };
    this.#handle.init(
      constants.Z_DEFAULT_WINDOWBITS,
      constants.Z_DEFAULT_COMPRESSION,
      constants.Z_DEFAULT_MEMLEVEL,
      constants.Z_DEFAULT_STRATEGY,
      this.#state,
      () => this.#take()?.(undefined),
      undefined,
      false,
    );
  }

  #take(): ((err: Error | undefined) => void) | undefined {
    const settle = this.#settle;
    this.#settle = undefined;
    return settle;
  }

  write(
    flush: number,
    input: Uint8Array,
    inOffset: number,
    output: Uint8Array,
    outOffset: number,
  ): Promise<[number, number]> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#settle = (err) => (err === undefined ? resolve([this.#state[0]!, this.#state[1]!]) : reject(err));
      this.#handle.write(
        flush,
        input,
        inOffset,
        input.length - inOffset,
        output,
        outOffset,
        output.length - outOffset,
      );
    });
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Native close waits for a write in progress on the threadpool (Node defers it).
    this.#handle.close();
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Decodes a gzip stream (one member or several, as `createGunzip` does) into chunks of up to
 * {@link GUNZIP_CHUNK_BYTES}, read in place: a chunk's memory is reused once the next is asked for.
 * What follows the gzip data is handled as by `createGunzip`: zero padding is ignored, another
 * member is decoded, anything else fails. Requires {@link nativeGunzipAvailable}.
 *
 * A consumer that stops early (`return()`) closes `source`, after the decode in flight has ended;
 * when that decode waits for the source's next piece, `stop` is called first to end the wait (the
 * caller destroys the stream behind `source`), else the stop waits for that piece.
 */
export async function* gunzipInPlace(
  source: AsyncIterable<Uint8Array>,
  stop?: () => void,
): AsyncGenerator<Uint8Array> {
  if (NativeZlib === undefined) throw new Error('native zlib handle not available');
  const z = new GunzipContext(NativeZlib);
  const input = source[Symbol.asyncIterator]();
  const buffers = [Buffer.allocUnsafe(GUNZIP_CHUNK_BYTES), Buffer.allocUnsafe(GUNZIP_CHUNK_BYTES)];
  let turn = 0;
  let chunk: Uint8Array = EMPTY;
  let offset = 0;
  let inputDone = false;
  let ended = false;

  /** Fills the next buffer: resolves with its used length (0: nothing more). */
  const fill = async (out: Uint8Array): Promise<number> => {
    let used = 0;
    while (used < out.length && !ended) {
      if (offset === chunk.length && !inputDone) {
        const next = await input.next();
        if (next.done === true) inputDone = true;
        else {
          chunk = next.value;
          offset = 0;
          continue;
        }
      }
      const flush = inputDone ? constants.Z_FINISH : constants.Z_NO_FLUSH;
      const [availOut, availIn] = await z.write(
        flush,
        inputDone ? EMPTY : chunk,
        inputDone ? 0 : offset,
        out,
        used,
      );
      if (!inputDone) offset = chunk.length - availIn;
      const produced = out.length - used - availOut;
      used += produced;
      // Output room left: zlib took all the input it wanted. At the end of input, or with input
      // left over (the gzip data ended and what follows is zero padding), that is the end.
      if (availOut > 0 && (inputDone || availIn > 0)) ended = true;
    }
    return used;
  };

  let pending: Promise<number> | undefined;
  try {
    pending = fill(buffers[turn]!);
    for (;;) {
      const used = await pending;
      pending = undefined;
      if (used === 0) return;
      const ready = buffers[turn]!.subarray(0, used);
      turn ^= 1;
      // The next buffer fills on the threadpool while the consumer copies this one.
      if (!ended) {
        pending = fill(buffers[turn]!);
        pending.catch(() => undefined); // awaited next turn (or in finally)
      }
      yield ready;
      if (pending === undefined) return;
    }
  } finally {
    // A decode still in flight here: the consumer stopped early, or it failed.
    if (pending !== undefined) {
      stop?.();
      await pending.catch(() => undefined);
    }
    z.close();
    await input.return?.();
  }
}
