/**
 * Reading split layers back: the exact tar (openLayer) and single files (readFile). Objects are
 * fetched ahead of the output in groups (neighbouring objects of one pack in one ranged GET),
 * verified in the worker pool, and the rebuilt stream's sha256 is checked against the diffID at the
 * end (docs/store-format.md "Reading").
 */
import { Digester } from '@stevedore/oci';
import { pipeline, Readable, Transform } from 'node:stream';
import { createZstdDecompress } from 'node:zlib';
import type { Backend } from './backend/backend.ts';
import { StreamHasher } from './hashing.ts';
import {
  CorruptObjectError,
  DigestMismatchError,
  InvalidFormatError,
  ObjectNotFoundError,
} from './errors.ts';
import { packKey } from './layout.ts';
import type { ObjectStore } from './objects.ts';
import type { LayerRecord } from './records.ts';
import { SplitstreamDecoder, type SplitRecord, type SplitstreamParams } from './splitstream.ts';
import { TarSplitter, type TarEntry } from './tar.ts';
import type { VerifyItem } from './worker.ts';

const MiB = 1024 * 1024;
/** Object bytes fetched ahead of the output. */
const READ_AHEAD_BYTES = 32 * MiB;
/** Largest ranged GET of neighbouring objects. */
const MAX_GROUP_BYTES = 8 * MiB;
/** Bytes of other objects a group may read through to join two of ours (cheaper than a request). */
const MAX_GAP_BYTES = 256 * 1024;
/** Output pieces are gathered to at least this size before they are pushed. */
const OUTPUT_CHUNK_BYTES = 64 * 1024;
/** Hard links followed by readFile before giving up (a loop in a hostile tar). */
const MAX_LINK_HOPS = 16;
const TYPE_REG = '0';
const TYPE_CONTIGUOUS = '7';
const TYPE_HARDLINK = '1';

export interface ReaderDeps {
  readonly backend: Backend;
  readonly objects: ObjectStore;
}

function hex(hash: Uint8Array): string {
  return Buffer.from(hash.buffer, hash.byteOffset, hash.length).toString('hex');
}

/**
 * The records of a layer's splitstream. Checks the stored bytes' sha256 against the layer record
 * and the END record against the diffID once the stream is consumed.
 */
async function* records(
  deps: ReaderDeps,
  layer: LayerRecord,
  signal: AbortSignal | undefined,
  onParams: (p: SplitstreamParams) => void,
): AsyncGenerator<SplitRecord, void, undefined> {
  const key = layer.splitstream.key;
  const raw = await deps.backend.get(key, { signal });
  const digester = new Digester('sha256');
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      digester.update(chunk);
      callback(null, chunk);
    },
  });
  const unzstd = createZstdDecompress();
  let streamError: unknown;
  pipeline(raw, hashing, unzstd, (err) => {
    streamError = err ?? undefined;
  });
  const decoder = new SplitstreamDecoder(key);
  let sawParams = false;
  let ended = false;
  try {
    for await (const chunk of unzstd as AsyncIterable<Buffer>) {
      for (const rec of decoder.push(chunk)) {
        if (!sawParams) {
          sawParams = true;
          onParams(decoder.params);
        }
        if (rec.kind === 'end') {
          const diffHex = hex(rec.diffID);
          if (`sha256:${diffHex}` !== layer.diffID || rec.size !== layer.size) {
            throw new CorruptObjectError(
              key,
              `END record says sha256:${diffHex} (${rec.size} bytes), layer is ${layer.diffID}`,
            );
          }
          ended = true;
        }
        yield rec;
      }
    }
  } catch (err) {
    if (err instanceof CorruptObjectError || err instanceof ObjectNotFoundError) throw err;
    throw new CorruptObjectError(
      key,
      `cannot decode splitstream: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: streamError ?? err,
      },
    );
  }
  if (streamError !== undefined)
    throw new CorruptObjectError(key, 'cannot read splitstream', { cause: streamError });
  try {
    decoder.finish();
  } catch (err) {
    throw new CorruptObjectError(key, err instanceof Error ? err.message : String(err), { cause: err });
  }
  const actual = digester.digest();
  if (actual !== layer.splitstream.digest || digester.size !== layer.splitstream.size) {
    throw new CorruptObjectError(
      key,
      `stored bytes hash to ${actual} (${digester.size} bytes), expected ${layer.splitstream.digest}`,
    );
  }
  if (!ended) throw new CorruptObjectError(key, 'no END record');
}

interface Group {
  readonly key: string;
  readonly offset: number;
  length: number;
  readonly items: VerifyItem[];
  readonly rawOffsets: number[];
  rawTotal: number;
  consumed: number;
  result: Promise<Buffer> | undefined;
}

type Item =
  | { readonly kind: 'bytes'; readonly buf: Buffer }
  | { readonly kind: 'object'; readonly group: Group; readonly index: number };

/** The exact tar of a layer, verified against its diffID at the end. */
export function openLayer(deps: ReaderDeps, layer: LayerRecord, signal?: AbortSignal): Readable {
  return Readable.from(rebuild(deps, layer, signal), { objectMode: false });
}

async function* rebuild(
  deps: ReaderDeps,
  layer: LayerRecord,
  signal: AbortSignal | undefined,
): AsyncGenerator<Buffer> {
  const { objects } = deps;
  await objects.refresh(signal);
  const context = `layer ${layer.diffID}`;
  const out = new StreamHasher(objects.limiter);
  const queue: Item[] = [];
  let head = 0;
  let ahead = 0;
  let open: Group | undefined;
  let pending: Buffer[] = [];
  let pendingBytes = 0;

  const launch = (g: Group): void => {
    g.result = objects.readGroup(g, signal);
    g.result.catch(() => undefined); // awaited when its first object is due; marks it handled until then
  };
  const closeOpen = (): void => {
    if (open !== undefined) launch(open);
    open = undefined;
  };
  const addObject = (hash: Uint8Array, size: number): void => {
    const h = hex(hash);
    const loc = objects.locate(hash, context);
    if (loc.raw !== size) {
      throw new CorruptObjectError(`sha256:${h}`, `index says ${loc.raw} bytes, ${context} expects ${size}`);
    }
    const at = { key: packKey(loc.pack), offset: loc.offset };
    const end = open === undefined ? 0 : open.offset + open.length;
    if (
      open === undefined ||
      open.key !== at.key ||
      at.offset < end ||
      at.offset - end > MAX_GAP_BYTES ||
      at.offset + loc.stored - open.offset > MAX_GROUP_BYTES
    ) {
      closeOpen();
      open = {
        key: at.key,
        offset: at.offset,
        length: 0,
        items: [],
        rawOffsets: [],
        rawTotal: 0,
        consumed: 0,
        result: undefined,
      };
    }
    const g = open;
    g.items.push({
      offset: at.offset - g.offset,
      stored: loc.stored,
      raw: loc.raw,
      zstd: loc.codec === 'zstd',
      hash: h,
    });
    g.rawOffsets.push(g.rawTotal);
    g.rawTotal += loc.raw;
    g.length = at.offset + loc.stored - g.offset;
    queue.push({ kind: 'object', group: g, index: g.items.length - 1 });
    ahead += size;
  };
  const take = (piece: Buffer): Buffer | undefined => {
    pending.push(piece);
    pendingBytes += piece.length;
    if (pendingBytes < OUTPUT_CHUNK_BYTES) return undefined;
    return flush();
  };
  const flush = (): Buffer | undefined => {
    if (pendingBytes === 0) return undefined;
    const b = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    return b;
  };
  /** Emits queued items from the head until `ahead` is at most `limit`. */
  async function* emit(limit: number): AsyncGenerator<Buffer> {
    while (head < queue.length && ahead > limit) {
      const item = queue[head]!;
      queue[head++] = undefined as unknown as Item; // let consumed buffers go
      let piece: Buffer;
      if (item.kind === 'bytes') {
        piece = item.buf;
      } else {
        const g = item.group;
        if (g.result === undefined) {
          if (g === open) closeOpen();
          else launch(g);
        }
        const buf = await g.result!;
        const start = g.rawOffsets[item.index]!;
        piece = buf.subarray(start, start + g.items[item.index]!.raw);
        g.consumed++;
        if (g.consumed === g.items.length) g.result = Promise.resolve(Buffer.alloc(0));
      }
      ahead -= piece.length;
      await out.update(piece);
      const ready = take(piece);
      if (ready !== undefined) yield ready;
    }
    if (head === queue.length) {
      queue.length = 0;
      head = 0;
    }
  }

  let finished = false;
  try {
    let chunkSize = 0;
    for await (const rec of records(deps, layer, signal, (p) => {
      chunkSize = p.chunkSize;
    })) {
      switch (rec.kind) {
        case 'inline': {
          const buf = Buffer.from(rec.bytes);
          queue.push({ kind: 'bytes', buf });
          ahead += buf.length;
          break;
        }
        case 'object':
          addObject(rec.hash, rec.size);
          break;
        case 'chunked': {
          let left = rec.size;
          for (const h of rec.hashes) {
            const n = Math.min(left, chunkSize);
            addObject(h, n);
            left -= n;
          }
          break;
        }
        case 'end':
          break;
      }
      if (ahead > READ_AHEAD_BYTES) yield* emit(READ_AHEAD_BYTES / 2);
    }
    closeOpen();
    yield* emit(-1);
    const last = flush();
    if (last !== undefined) yield last;
    finished = true;
  } finally {
    // Stopped early (consumer gone, error): drop the hash state held by the worker.
    if (!finished) await out.discard();
  }
  const actual = await out.digest();
  if (actual !== layer.diffID || out.size !== layer.size) {
    throw new DigestMismatchError(`rebuilt layer ${layer.diffID} (${out.size} bytes)`, layer.diffID, actual);
  }
}

/** Strips `./` and `/` prefixes and trailing `/`: tars spell the same path several ways. */
export function normalizePath(p: string): string {
  let s = p;
  for (;;) {
    if (s.startsWith('./')) s = s.slice(2);
    else if (s.startsWith('/')) s = s.slice(1);
    else break;
  }
  while (s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

interface Found {
  readonly entry: TarEntry;
  readonly inline: Buffer[];
  hashes: readonly Uint8Array[];
}

/** The last entry named `path` (normalised) starting before `before`, with its content's whereabouts. */
async function findEntry(
  deps: ReaderDeps,
  layer: LayerRecord,
  path: string,
  before: number,
  signal: AbortSignal | undefined,
): Promise<Found | undefined> {
  const want = normalizePath(path);
  let splitter: TarSplitter | undefined;
  let found: Found | undefined;
  let capturing: Found | undefined;
  for await (const rec of records(deps, layer, signal, (p) => {
    splitter = new TarSplitter(p.inlineMax);
  })) {
    const s = splitter!;
    switch (rec.kind) {
      case 'inline':
        for (const ev of s.push(rec.bytes)) {
          switch (ev.kind) {
            case 'entry':
              capturing = undefined;
              if (ev.entry.offset < before && normalizePath(ev.entry.name) === want) {
                capturing = { entry: ev.entry, inline: [], hashes: [] };
                found = capturing;
              }
              break;
            case 'inline':
              if (ev.content && capturing !== undefined) capturing.inline.push(Buffer.from(ev.bytes));
              break;
            case 'data':
            case 'data-end':
              throw new InvalidFormatError(
                `splitstream ${layer.splitstream.key}: file content inline where an object was expected`,
              );
          }
        }
        break;
      case 'object':
      case 'chunked':
        s.skipExternal(rec.size);
        if (capturing !== undefined) capturing.hashes = rec.kind === 'object' ? [rec.hash] : rec.hashes;
        break;
      case 'end':
        break;
    }
  }
  return found;
}

/** One regular file's content (hard links followed), verified object by object. */
export async function readFile(
  deps: ReaderDeps,
  layer: LayerRecord,
  path: string,
  signal?: AbortSignal,
): Promise<Readable> {
  await deps.objects.refresh(signal);
  let name = path;
  let before = Number.POSITIVE_INFINITY;
  for (let hop = 0; hop <= MAX_LINK_HOPS; hop++) {
    const found = await findEntry(deps, layer, name, before, signal);
    if (found === undefined) {
      throw new ObjectNotFoundError(
        `${layer.diffID}:${path}`,
        `no file ${JSON.stringify(path)} in layer ${layer.diffID}`,
      );
    }
    const { entry } = found;
    if (entry.typeflag === TYPE_HARDLINK) {
      name = entry.linkname;
      before = entry.offset;
      continue;
    }
    if (entry.typeflag !== TYPE_REG && entry.typeflag !== TYPE_CONTIGUOUS) {
      throw new InvalidFormatError(
        `${JSON.stringify(path)} in layer ${layer.diffID} is not a regular file (type ${JSON.stringify(entry.typeflag)})`,
      );
    }
    if (entry.content === 'external')
      return deps.objects.streamObjects(found.hashes, `${layer.diffID}:${path}`, signal);
    return Readable.from(found.inline.length === 0 ? [] : [Buffer.concat(found.inline)], {
      objectMode: false,
    });
  }
  throw new InvalidFormatError(
    `${JSON.stringify(path)} in layer ${layer.diffID}: more than ${MAX_LINK_HOPS} hard link hops`,
  );
}
