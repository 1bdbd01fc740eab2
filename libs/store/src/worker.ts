/**
 * The hashing/compressing worker (worker_threads). The main thread parses tar streams and writes;
 * these threads do the CPU-heavy work per object: sha256 and zstd. Messages are the
 * {@link WorkerRequest}/{@link WorkerResponse} unions; buffers are transferred, not copied, when the
 * main thread owns them.
 *
 * sha256 here is node:crypto's, not the Digester of @stevedore/oci/spec (the repository's hashing
 * helper): an object is hashed with one call of the one-shot `hash`, which the streaming helper
 * does not offer, and the thread loads only node: modules. Same algorithm on the same bytes.
 */
import { createHash, hash, type Hash } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import { setImmediate as turn } from 'node:timers/promises';
import {
  constants,
  createZstdCompress,
  createZstdDecompress,
  zstdCompressSync,
  zstdDecompressSync,
  type ZstdCompress,
  type ZstdDecompress,
} from 'node:zlib';

/** Raw sha256 length. */
const HASH_BYTES = 32;
/**
 * zstd level for file objects: 1, zstd's fastest. The split is the bottleneck of a pull (it runs at
 * the speed of sha256 plus this compression); level 3 measured about 30% more compression CPU for
 * about 4% fewer stored bytes on /usr/share. Frames of any level decode the same, so a store may
 * mix them.
 */
export const ZSTD_LEVEL = 1;
/** Objects are compressed only if zstd saves at least 10%: decompressing costs reads too. */
export const MIN_SAVING = 0.1;
/** Larger objects first compress this prefix and give up when it does not shrink (random data). */
export const TRIAL_BYTES = 16 * 1024;
/** Below this, zstd's frame overhead eats any gain. */
export const MIN_COMPRESS_BYTES = 128;
/**
 * Fallback path only ({@link ZstdContext} unavailable): zstd contexts of the sync calls are freed
 * by close callbacks, which run only when the event loop turns; without a turn every few objects, a
 * batch of thousands of small files would hold a context per file until the batch ends.
 */
const OBJECTS_PER_TURN = 8;

/**
 * The native handle inside Node's zlib streams (lib/zlib.js) and the two-number state it reports
 * into (`[availOut, availIn]` after each call): exactly what `zstdCompressSync` drives, minus the
 * close at the end.
 */
interface ZlibHandle {
  writeSync(...args: ZlibWriteArgs): void;
  reset(): void;
}

/**
 * The arguments of the native zlib handle's `write` and `writeSync` (Node's lib/zlib.js): the flush
 * mode, then the input and the output, each as buffer, offset and length. The pipeline's gzip
 * decoder drives the same handle's `write`.
 */
export type ZlibWriteArgs = [
  flush: number,
  input: Uint8Array,
  inOffset: number,
  inLength: number,
  output: Uint8Array,
  outOffset: number,
  outLength: number,
];

interface ZlibInternals {
  readonly _handle?: ZlibHandle | null;
  readonly _writeState?: Uint32Array;
}

/**
 * One zstd context (compressor or decompressor) reused for every object of a thread.
 *
 * `zstdCompressSync` / `zstdDecompressSync` build a stream object and a native context per call
 * and free it on a later event-loop turn: about 25 µs per call, more than compressing a 16 KiB
 * file takes, and most of the CPU of a layer of small files. This class keeps one stream and
 * drives its native handle the way those functions do (Node's `processChunkSync`), with the whole
 * input and a caller-given output in one call, so compressed frames are byte for byte what
 * `zstdCompressSync` with the size pledged produces (zstd pledges the input size itself when one
 * call ends the frame). The handle is an internal of Node's zlib: when it is missing (another Node
 * version), `available` is false and callers use the sync functions; worker.test.ts fails then, so
 * an upgrade that loses the fast path does not go unnoticed.
 */
export class ZstdContext {
  readonly #make: () => ZstdCompress | ZstdDecompress;
  #stream: (ZstdCompress | ZstdDecompress) & ZlibInternals;
  #handle: ZlibHandle | undefined;
  #state: Uint32Array | undefined;

  constructor(make: () => ZstdCompress | ZstdDecompress) {
    this.#make = make;
    this.#stream = this.#open();
  }

  static compressor(level: number): ZstdContext {
    return new ZstdContext(() =>
      createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: level } }),
    );
  }

  static decompressor(): ZstdContext {
    return new ZstdContext(() => createZstdDecompress());
  }

  /** True when the reusable native handle is there (else use zstdCompressSync and friends). */
  get available(): boolean {
    return this.#handle !== undefined;
  }

  /**
   * Runs `input` through the context as one whole frame into `output`. Returns the bytes written,
   * or -1 when they did not fit. Throws zstd's error (a corrupt frame, when decompressing). After
   * -1 or an error the context is replaced by a fresh one: the handle's own reset would be cheaper
   * but forgets the compression level. Callers size `output` so that -1 is rare (a compressor
   * gets {@link compressBound} bytes).
   */
  process(input: Uint8Array, output: Uint8Array): number {
    const handle = this.#handle;
    const state = this.#state;
    if (handle === undefined || state === undefined) throw new Error('zstd context not available');
    // After a complete frame the context starts the next one by itself: no reset per call.
    handle.writeSync(constants.ZSTD_e_end, input, 0, input.length, output, 0, output.length);
    const failure = this.#stream.errored;
    if (failure !== null) {
      this.#stream = this.#open();
      throw failure;
    }
    const availOut = state[0]!;
    const availIn = state[1]!;
    // Output full: the frame may be unfinished (or fit only just): not fitting, and a new context
    // so that the rest of this frame does not leak into the next.
    if (availOut === 0 || availIn !== 0) {
      this.#stream.destroy();
      this.#stream = this.#open();
      return -1;
    }
    return output.length - availOut;
  }

  #open(): (ZstdCompress | ZstdDecompress) & ZlibInternals {
    const stream = this.#make() as (ZstdCompress | ZstdDecompress) & ZlibInternals;
    // Errors are read synchronously from `errored` in process(); this listener only keeps the
    // stream's own asynchronous 'error' event from becoming an uncaught exception.
    stream.on('error', () => undefined);
    const handle = stream._handle;
    const state = stream._writeState;
    const usable =
      handle !== null &&
      handle !== undefined &&
      typeof handle.writeSync === 'function' &&
      typeof handle.reset === 'function' &&
      state instanceof Uint32Array &&
      state.length >= 2;
    this.#handle = usable ? handle : undefined;
    this.#state = usable ? state : undefined;
    return stream;
  }
}

let compressor: ZstdContext | undefined;
let decompressor: ZstdContext | undefined;
/** Where frames are compressed before the ones worth keeping are copied out. */
let scratch: Uint8Array | undefined;

/** zstd's ZSTD_COMPRESSBOUND: the largest frame for `n` input bytes (incompressible input). */
export function compressBound(n: number): number {
  const SMALL = 128 * 1024;
  return n + (n >>> 8) + (n < SMALL ? (SMALL - n) >>> 11 : 0);
}

/** What a pool worker gets when it starts (`workerData`): the shared blocks (limiter.ts BlockPool). */
export interface WorkerSetup {
  readonly marker: string;
  /** The blocks, back to back. */
  readonly input: SharedArrayBuffer;
  readonly blockBytes: number;
}

/** The shared blocks as a byte array. */
export interface Areas {
  readonly input: Uint8Array;
  readonly blockBytes: number;
}

/**
 * Hashes (and compresses where it pays) the objects of one shared block. Sent once the block is in
 * its layer's diffID: kept frames are written over their objects' raw bytes.
 */
export interface SplitRequest {
  readonly op: 'split';
  readonly id: number;
  readonly block: number;
  /** Per object: its offset and its length in the block (pairs). */
  readonly objects: Uint32Array;
}

export interface SplitResponse {
  readonly op: 'split';
  readonly id: number;
  /** 32 bytes per object. */
  readonly hashes: Uint8Array;
  /**
   * Per object: the length of its zstd frame, written over the object's raw bytes (from its
   * offset), or -1 when it is stored raw (its bytes untouched).
   */
  readonly compressedLengths: Int32Array;
}

export interface VerifyItem {
  /** Offset and length of the stored bytes in `data`. */
  readonly offset: number;
  readonly stored: number;
  readonly raw: number;
  readonly zstd: boolean;
  /** Expected sha256, hex. */
  readonly hash: string;
}

export interface VerifyRequest {
  readonly op: 'verify';
  readonly id: number;
  readonly data: ArrayBuffer;
  readonly items: readonly VerifyItem[];
}

export interface VerifyResponse {
  readonly op: 'verify';
  readonly id: number;
  /** Raw objects back to back (and one spare byte); undefined when `bad` is set. */
  readonly out: ArrayBuffer | undefined;
  /** Index of the first item that failed, and why. */
  readonly bad: { readonly index: number; readonly reason: string } | undefined;
}

/**
 * Puts a rebuilt stretch of a layer together in shared block `block` and verifies its objects: the
 * main thread has written the inline bytes, raw objects and zstd frames each at its object's
 * position; the worker decompresses the frames into place, then checks every object's size and
 * sha256.
 */
export interface AssembleRequest {
  readonly op: 'assemble';
  readonly id: number;
  readonly block: number;
  /** Per object, four numbers: position in the block, stored length, raw length, 1 for zstd (else 0). */
  readonly objects: Uint32Array;
  /**
   * The expected sha256 of each object, 32 bytes each, to check each object against; empty when
   * the caller checks the whole (a rebuilt layer against its diffID) instead.
   */
  readonly hashes: Uint8Array;
}

export interface AssembleResponse {
  readonly op: 'assemble';
  readonly id: number;
  /** The first object that failed, and why. */
  readonly bad: { readonly index: number; readonly reason: string } | undefined;
}

/** Feeds the first `length` bytes of shared block `block` to the running hash of stream `stream`. */
export interface DigestBlockRequest {
  readonly op: 'digest-block';
  readonly id: number;
  readonly stream: number;
  readonly block: number;
  readonly length: number;
}

/**
 * Feeds `length` bytes at `offset` of `buffer` (shared memory the caller filled and keeps until the
 * answer) to the running hash of stream `stream`.
 */
export interface DigestBytesRequest {
  readonly op: 'digest-bytes';
  readonly id: number;
  readonly stream: number;
  readonly buffer: SharedArrayBuffer;
  readonly offset: number;
  readonly length: number;
}

export interface DigestBytesResponse {
  readonly op: 'digest-bytes';
  readonly id: number;
}

export interface DigestBlockResponse {
  readonly op: 'digest-block';
  readonly id: number;
}

/** Finishes (or, with `discard`, drops) the hash of stream `stream`. */
export interface DigestEndRequest {
  readonly op: 'digest-end';
  readonly id: number;
  readonly stream: number;
  readonly discard: boolean;
}

export interface DigestEndResponse {
  readonly op: 'digest-end';
  readonly id: number;
  /** `sha256:…`; empty when discarded. */
  readonly digest: string;
  readonly size: number;
}

export type WorkerRequest =
  SplitRequest | AssembleRequest | VerifyRequest | DigestBlockRequest | DigestBytesRequest | DigestEndRequest;
export type WorkerResponse =
  | SplitResponse
  | AssembleResponse
  | VerifyResponse
  | DigestBlockResponse
  | DigestBytesResponse
  | DigestEndResponse
  | { op: 'error'; id: number; message: string };

/** With the input size pledged, zstd sizes its window and tables (its memory) to the object. */
function zstdOptions(size: number): { pledgedSrcSize: number; params: Record<number, number> } {
  return { pledgedSrcSize: size, params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } };
}

/** Largest compressed size worth keeping for `raw` bytes (it saves at least {@link MIN_SAVING}). */
export function worthKeeping(raw: number): number {
  return Math.floor(raw * (1 - MIN_SAVING));
}

function zstd(): ZstdContext {
  compressor ??= ZstdContext.compressor(ZSTD_LEVEL);
  return compressor;
}

/**
 * Writes `data` as one zstd frame into `out` when that saves at least {@link MIN_SAVING}, and
 * returns the frame's length; returns -1 when the object is better stored raw. `out` needs room
 * for {@link worthKeeping}(data.length) bytes.
 */
export function compressInto(data: Uint8Array, out: Uint8Array): number {
  if (data.length < MIN_COMPRESS_BYTES) return -1;
  const z = zstd();
  const room = worthKeeping(data.length);
  if (!z.available) return compressOneShot(data, out.subarray(0, room));
  const bound = compressBound(data.length);
  if (scratch === undefined || scratch.length < bound) scratch = new Uint8Array(bound);
  if (data.length > TRIAL_BYTES * 2) {
    const trial = z.process(data.subarray(0, TRIAL_BYTES), scratch);
    if (trial < 0 || trial > worthKeeping(TRIAL_BYTES)) return -1;
  }
  // Compressed with room for any frame (so the context never stops mid-frame), then kept if it
  // saves MIN_SAVING.
  const n = z.process(data, scratch);
  if (n < 0 || n > room) return -1;
  out.set(scratch.subarray(0, n));
  return n;
}

/** {@link compressInto} without a reusable context (one context per call). */
function compressOneShot(data: Uint8Array, room: Uint8Array): number {
  if (data.length > TRIAL_BYTES * 2) {
    const trial = zstdCompressSync(data.subarray(0, TRIAL_BYTES), zstdOptions(TRIAL_BYTES));
    if (trial.length > worthKeeping(TRIAL_BYTES)) return -1;
  }
  const frame = zstdCompressSync(data, zstdOptions(data.length));
  if (frame.length > room.length) return -1;
  room.set(frame);
  return frame.length;
}

/** The `raw` bytes of one zstd frame into `out` (which has room for one byte more, to catch frames that are too long). */
function decompressInto(stored: Uint8Array, raw: number, out: Uint8Array): Uint8Array {
  decompressor ??= ZstdContext.decompressor();
  if (!decompressor.available) return zstdDecompressSync(stored, { maxOutputLength: Math.max(raw, 1) });
  const n = decompressor.process(stored, out.subarray(0, raw + 1));
  // -1: the frame is longer than raw + 1 bytes, or incomplete; either way not the object.
  if (n < 0) throw new Error(`frame does not decode to ${raw} bytes`);
  return out.subarray(0, n);
}

export async function split(
  req: SplitRequest,
  areas: Areas,
): Promise<{ response: SplitResponse; transfer: ArrayBuffer[] }> {
  const count = req.objects.length / 2;
  const base = req.block * areas.blockBytes;
  const hashes = new Uint8Array(HASH_BYTES * count);
  const compressedLengths = new Int32Array(count);
  const oneShot = !zstd().available;
  for (let i = 0; i < count; i++) {
    const start = base + req.objects[2 * i]!;
    const end = start + req.objects[2 * i + 1]!;
    const data = areas.input.subarray(start, end);
    hashes.set(hash('sha256', data, 'buffer'), i * HASH_BYTES);
    // The frame goes over the object's own bytes (compressInto reads them before it writes).
    compressedLengths[i] = compressInto(data, areas.input.subarray(start, end));
    if (oneShot && i % OBJECTS_PER_TURN === OBJECTS_PER_TURN - 1) await turn();
  }
  return {
    response: { op: 'split', id: req.id, hashes, compressedLengths },
    transfer: [hashes.buffer, compressedLengths.buffer],
  };
}

export async function verify(
  req: VerifyRequest,
): Promise<{ response: VerifyResponse; transfer: ArrayBuffer[] }> {
  const data = new Uint8Array(req.data);
  // One spare byte past the end: a zstd frame decoding to more than its raw size is caught.
  const out = new Uint8Array(req.items.reduce((n, it) => n + it.raw, 0) + 1);
  let at = 0;
  for (let i = 0; i < req.items.length; i++) {
    const it = req.items[i]!;
    const bad = (reason: string): { response: VerifyResponse; transfer: ArrayBuffer[] } => ({
      response: { op: 'verify', id: req.id, out: undefined, bad: { index: i, reason } },
      transfer: [],
    });
    if (it.offset + it.stored > data.length)
      return bad(`short read: ${data.length - it.offset} of ${it.stored} bytes`);
    const stored = data.subarray(it.offset, it.offset + it.stored);
    let raw: Uint8Array;
    if (it.zstd) {
      try {
        raw = decompressInto(stored, it.raw, out.subarray(at));
      } catch (err) {
        return bad(`zstd: ${err instanceof Error ? err.message : String(err)}`);
      }
    } else {
      raw = stored;
    }
    if (raw.length !== it.raw) return bad(`${raw.length} bytes, expected ${it.raw}`);
    const actual = hash('sha256', raw, 'hex');
    if (actual !== it.hash) return bad(`content hashes to sha256:${actual}`);
    if (raw.buffer !== out.buffer || raw.byteOffset !== out.byteOffset + at) out.set(raw, at);
    at += raw.length;
    if (decompressor?.available !== true && i % OBJECTS_PER_TURN === OBJECTS_PER_TURN - 1) await turn();
  }
  return { response: { op: 'verify', id: req.id, out: out.buffer, bad: undefined }, transfer: [out.buffer] };
}

/** Where frames are decompressed (their raw size and one spare byte) before they are put in place. */
let rawScratch: Uint8Array | undefined;

export function assemble(
  req: AssembleRequest,
  areas: Areas,
): { response: AssembleResponse; transfer: ArrayBuffer[] } {
  const base = req.block * areas.blockBytes;
  const count = req.objects.length / 4;
  const bad = (index: number, reason: string): { response: AssembleResponse; transfer: ArrayBuffer[] } => ({
    response: { op: 'assemble', id: req.id, bad: { index, reason } },
    transfer: [],
  });
  for (let i = 0; i < count; i++) {
    const at = base + req.objects[4 * i]!;
    const stored = req.objects[4 * i + 1]!;
    const raw = req.objects[4 * i + 2]!;
    if (req.objects[4 * i + 3] === 1) {
      if (rawScratch === undefined || rawScratch.length < raw + 1)
        rawScratch = new Uint8Array(Math.max(raw + 1, TRIAL_BYTES));
      let data: Uint8Array;
      try {
        data = decompressInto(areas.input.subarray(at, at + stored), raw, rawScratch);
      } catch (err) {
        return bad(i, `zstd: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (data.length !== raw) return bad(i, `${data.length} bytes, expected ${raw}`);
      areas.input.set(data, at);
    } else if (stored !== raw) {
      return bad(i, `${stored} bytes, expected ${raw}`);
    }
    if (req.hashes.length === 0) continue;
    const actual = hash('sha256', areas.input.subarray(at, at + raw), 'buffer');
    const expected = req.hashes.subarray(i * HASH_BYTES, (i + 1) * HASH_BYTES);
    if (!actual.equals(expected)) return bad(i, `content hashes to sha256:${actual.toString('hex')}`);
  }
  return { response: { op: 'assemble', id: req.id, bad: undefined }, transfer: [] };
}

export function digestBlock(
  req: DigestBlockRequest,
  areas: Areas,
): { response: DigestBlockResponse; transfer: ArrayBuffer[] } {
  const start = req.block * areas.blockBytes;
  streamDigest(req.stream).update(areas.input.subarray(start, start + req.length));
  return { response: { op: 'digest-block', id: req.id }, transfer: [] };
}

export function digestBytes(req: DigestBytesRequest): {
  response: DigestBytesResponse;
  transfer: ArrayBuffer[];
} {
  streamDigest(req.stream).update(new Uint8Array(req.buffer, req.offset, req.length));
  return { response: { op: 'digest-bytes', id: req.id }, transfer: [] };
}

interface StreamDigest {
  readonly hash: Hash;
  size: number;
  update(bytes: Uint8Array): void;
}

const streams = new Map<number, StreamDigest>();

function newStreamDigest(): StreamDigest {
  const hash = createHash('sha256');
  const d: StreamDigest = {
    hash,
    size: 0,
    update(bytes) {
      hash.update(bytes);
      d.size += bytes.length;
    },
  };
  return d;
}

function streamDigest(stream: number): StreamDigest {
  let d = streams.get(stream);
  if (d === undefined) streams.set(stream, (d = newStreamDigest()));
  return d;
}

export function digestEnd(req: DigestEndRequest): { response: DigestEndResponse; transfer: ArrayBuffer[] } {
  const d = streams.get(req.stream) ?? newStreamDigest();
  streams.delete(req.stream);
  return {
    response: {
      op: 'digest-end',
      id: req.id,
      digest: req.discard ? '' : `sha256:${d.hash.digest('hex')}`,
      size: d.size,
    },
    transfer: [],
  };
}

async function handle(
  req: WorkerRequest,
  areas: Areas,
): Promise<{ response: WorkerResponse; transfer: ArrayBuffer[] }> {
  switch (req.op) {
    case 'split':
      return split(req, areas);
    case 'assemble':
      return assemble(req, areas);
    case 'verify':
      return verify(req);
    case 'digest-block':
      return digestBlock(req, areas);
    case 'digest-bytes':
      return digestBytes(req);
    case 'digest-end':
      return digestEnd(req);
  }
}

/** Set in `workerData` by the pool, so importing this module elsewhere does not listen. */
export const WORKER_MARKER = 'stevedore-store-worker';

const setup = workerData as Partial<WorkerSetup> | null | undefined;
if (parentPort !== null && setup?.marker === WORKER_MARKER) {
  const port = parentPort;
  const areas: Areas = {
    input: new Uint8Array(setup.input!),
    blockBytes: setup.blockBytes!,
  };
  // The pool sends the next request only after this one's response: no two run at once.
  port.on('message', (req: WorkerRequest) => {
    handle(req, areas).then(
      ({ response, transfer }) => port.postMessage(response, transfer),
      (err: unknown) =>
        port.postMessage({
          op: 'error',
          id: req.id,
          message: err instanceof Error ? (err.stack ?? err.message) : String(err),
        }),
    );
  });
}
