/**
 * The hashing/compressing worker (worker_threads). The main thread parses tar streams and writes;
 * these threads do the CPU-heavy work per object: sha256 (via @stevedore/oci, the repository's one
 * hashing helper) and zstd. Messages are the {@link WorkerRequest}/{@link WorkerResponse} unions;
 * buffers are transferred, not copied, when the main thread owns them.
 */
import { Digester, digestHex, digestOf } from '@stevedore/oci';
import { parentPort, workerData } from 'node:worker_threads';
import { setImmediate as turn } from 'node:timers/promises';
import { constants, zstdCompressSync, zstdDecompressSync } from 'node:zlib';

/** zstd level: 3 is zstd's default, a good ratio at several hundred MB/s per core. */
export const ZSTD_LEVEL = 3;
/** Objects are compressed only if zstd saves at least 10%: decompressing costs reads too. */
export const MIN_SAVING = 0.1;
/** Larger objects first compress this prefix and give up when it does not shrink (random data). */
export const TRIAL_BYTES = 16 * 1024;
/** Below this, zstd's frame overhead eats any gain. */
export const MIN_COMPRESS_BYTES = 128;
/**
 * zstd contexts of the sync calls are freed by close callbacks, which run only when the event loop
 * turns: without a turn every few objects, a batch of thousands of small files would hold a
 * context (hundreds of KiB of native memory) per file until the batch ends.
 */
const OBJECTS_PER_TURN = 8;

export interface SplitRequest {
  readonly op: 'split';
  readonly id: number;
  /** Objects back to back from offset 0. */
  readonly arena: ArrayBuffer;
  readonly lengths: readonly number[];
}

export interface SplitResponse {
  readonly op: 'split';
  readonly id: number;
  readonly arena: ArrayBuffer;
  /** 32 bytes per object. */
  readonly hashes: ArrayBuffer;
  /** Per object: compressed length, or -1 when stored raw. */
  readonly compressedLengths: readonly number[];
  /** Compressed objects back to back (those with a length above). */
  readonly compressed: ArrayBuffer;
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
  /** Raw objects back to back; undefined when `bad` is set. */
  readonly out: ArrayBuffer | undefined;
  /** Index of the first item that failed, and why. */
  readonly bad: { readonly index: number; readonly reason: string } | undefined;
}

/** Feeds `length` bytes of `data` to the running hash of stream `stream` (created on first use). */
export interface DigestUpdateRequest {
  readonly op: 'digest-update';
  readonly id: number;
  readonly stream: number;
  readonly data: ArrayBuffer;
  readonly length: number;
}

export interface DigestUpdateResponse {
  readonly op: 'digest-update';
  readonly id: number;
  /** The block, back for reuse. */
  readonly data: ArrayBuffer;
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

export type WorkerRequest = SplitRequest | VerifyRequest | DigestUpdateRequest | DigestEndRequest;
export type WorkerResponse =
  | SplitResponse
  | VerifyResponse
  | DigestUpdateResponse
  | DigestEndResponse
  | { op: 'error'; id: number; message: string };

/** With the input size pledged, zstd sizes its window and tables (its memory) to the object. */
function zstdOptions(size: number): { pledgedSrcSize: number; params: Record<number, number> } {
  return { pledgedSrcSize: size, params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL } };
}

/** zstd of `data` when it saves at least {@link MIN_SAVING}, else undefined. */
export function maybeCompress(data: Uint8Array): Buffer | undefined {
  if (data.length < MIN_COMPRESS_BYTES) return undefined;
  if (data.length > TRIAL_BYTES * 2) {
    const trial = zstdCompressSync(data.subarray(0, TRIAL_BYTES), zstdOptions(TRIAL_BYTES));
    if (trial.length > TRIAL_BYTES * (1 - MIN_SAVING)) return undefined;
  }
  const out = zstdCompressSync(data, zstdOptions(data.length));
  return out.length <= data.length * (1 - MIN_SAVING) ? out : undefined;
}

export async function split(
  req: SplitRequest,
): Promise<{ response: SplitResponse; transfer: ArrayBuffer[] }> {
  const arena = new Uint8Array(req.arena);
  const hashes = new Uint8Array(32 * req.lengths.length);
  const compressedLengths: number[] = [];
  const parts: Buffer[] = [];
  let total = 0;
  let pos = 0;
  for (let i = 0; i < req.lengths.length; i++) {
    const length = req.lengths[i]!;
    const data = arena.subarray(pos, pos + length);
    pos += length;
    hashes.set(Buffer.from(digestHex(digestOf(data)), 'hex'), i * 32);
    const c = maybeCompress(data);
    compressedLengths.push(c === undefined ? -1 : c.length);
    if (c !== undefined) {
      parts.push(c);
      total += c.length;
    }
    if (i % OBJECTS_PER_TURN === OBJECTS_PER_TURN - 1) await turn();
  }
  const compressed = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    compressed.set(p, at);
    at += p.length;
  }
  return {
    response: {
      op: 'split',
      id: req.id,
      arena: req.arena,
      hashes: hashes.buffer,
      compressedLengths,
      compressed: compressed.buffer,
    },
    transfer: [req.arena, hashes.buffer, compressed.buffer],
  };
}

export async function verify(
  req: VerifyRequest,
): Promise<{ response: VerifyResponse; transfer: ArrayBuffer[] }> {
  const data = new Uint8Array(req.data);
  const out = new Uint8Array(req.items.reduce((n, it) => n + it.raw, 0));
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
        raw = zstdDecompressSync(stored, { maxOutputLength: Math.max(it.raw, 1) });
      } catch (err) {
        return bad(`zstd: ${err instanceof Error ? err.message : String(err)}`);
      }
    } else {
      raw = stored;
    }
    if (raw.length !== it.raw) return bad(`${raw.length} bytes, expected ${it.raw}`);
    const actual = digestHex(digestOf(raw));
    if (actual !== it.hash) return bad(`content hashes to sha256:${actual}`);
    out.set(raw, at);
    at += raw.length;
    if (i % OBJECTS_PER_TURN === OBJECTS_PER_TURN - 1) await turn();
  }
  return { response: { op: 'verify', id: req.id, out: out.buffer, bad: undefined }, transfer: [out.buffer] };
}

const streams = new Map<number, Digester>();

export function digestUpdate(req: DigestUpdateRequest): {
  response: DigestUpdateResponse;
  transfer: ArrayBuffer[];
} {
  let d = streams.get(req.stream);
  if (d === undefined) streams.set(req.stream, (d = new Digester('sha256')));
  d.update(new Uint8Array(req.data, 0, req.length));
  return { response: { op: 'digest-update', id: req.id, data: req.data }, transfer: [req.data] };
}

export function digestEnd(req: DigestEndRequest): { response: DigestEndResponse; transfer: ArrayBuffer[] } {
  const d = streams.get(req.stream) ?? new Digester('sha256');
  streams.delete(req.stream);
  return {
    response: { op: 'digest-end', id: req.id, digest: req.discard ? '' : d.digest(), size: d.size },
    transfer: [],
  };
}

async function handle(req: WorkerRequest): Promise<{ response: WorkerResponse; transfer: ArrayBuffer[] }> {
  switch (req.op) {
    case 'split':
      return split(req);
    case 'verify':
      return verify(req);
    case 'digest-update':
      return digestUpdate(req);
    case 'digest-end':
      return digestEnd(req);
  }
}

/** Set in `workerData` by the pool, so importing this module elsewhere does not listen. */
export const WORKER_MARKER = 'stevedore-store-worker';

if (parentPort !== null && workerData === WORKER_MARKER) {
  const port = parentPort;
  // The pool sends the next request only after this one's response: no two run at once.
  port.on('message', (req: WorkerRequest) => {
    handle(req).then(
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
