/**
 * Reading split layers back: the exact tar (openLayer, a stream of copies; openLayerBlocks, the
 * shared blocks themselves, lent to a borrower that releases them) and single files (readFile). Objects are
 * fetched ahead of the output in groups (neighbouring objects of one pack in one ranged GET) and
 * put in place in the worker pool. A rebuilt layer's sha256 is checked against its diffID at the
 * end (that covers every object: hashing each one too would hash every byte twice); when it does
 * not match, a second, diagnostic pass checks each object and names the corrupt one. readFile
 * checks the objects of its file (docs/store-format.md "Reading").
 */
import { Digester } from '@stevedore/oci/spec';
import { pipeline, Readable, Transform } from 'node:stream';
import { createZstdDecompress } from 'node:zlib';
import type { Backend } from './backend/backend.ts';
import { StreamHasher } from './hashing.ts';
import { noteBufferChurn } from './heap-tuning.ts';
import {
  CorruptObjectError,
  DigestMismatchError,
  InvalidFormatError,
  ObjectNotFoundError,
} from './errors.ts';
import { packKey } from './layout.ts';
import { STREAM_CHUNK_BYTES } from './limiter.ts';
import type { ObjectStore, ReadPart } from './objects.ts';
import type { LayerRecord } from './records.ts';
import { SplitstreamDecoder, type SplitRecord, type SplitstreamParams } from './splitstream.ts';
import { TarSplitter, type TarEntry } from './tar.ts';
import { HASH_BYTES } from './splitstream.ts';
import type { AssembleRequest, AssembleResponse } from './worker.ts';

const MiB = 1024 * 1024;
/**
 * Shared blocks a rebuild fills ahead of its output (at most half the pool): 8 MiB of the layer,
 * with the GETs they wait for in flight.
 */
const MAX_REBUILD_BLOCKS = 4;
/** Largest ranged GET of neighbouring objects. */
const MAX_GROUP_BYTES = 8 * MiB;
/** Bytes of other objects a group may read through to join two of ours (cheaper than a request). */
const MAX_GAP_BYTES = 256 * 1024;
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

/** The records of a layer's splitstream, one by one (see {@link recordBatches}). */
async function* records(
  deps: ReaderDeps,
  layer: LayerRecord,
  signal: AbortSignal | undefined,
  onParams: (p: SplitstreamParams) => void,
): AsyncGenerator<SplitRecord, void, undefined> {
  for await (const batch of recordBatches(deps, layer, signal, onParams)) yield* batch;
}

/**
 * The records of a layer's splitstream, in batches (those of one decoded chunk: a rebuild handles
 * tens of thousands of records, and an async step per record was most of its JavaScript garbage).
 * Checks the stored bytes' sha256 against the layer record and the END record against the diffID
 * once the stream is consumed.
 */
export async function* recordBatches(
  deps: ReaderDeps,
  layer: LayerRecord,
  signal: AbortSignal | undefined,
  onParams: (p: SplitstreamParams) => void,
): AsyncGenerator<readonly SplitRecord[], void, undefined> {
  const key = layer.splitstream.key;
  const raw = await deps.backend.get(key, { signal });
  const digester = new Digester('sha256');
  const hashing = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      digester.update(chunk);
      callback(null, chunk);
    },
  });
  const unzstd = createZstdDecompress({ chunkSize: STREAM_CHUNK_BYTES });
  let streamError: unknown;
  pipeline(raw, hashing, unzstd, (err) => {
    streamError = err ?? undefined;
  });
  const decoder = new SplitstreamDecoder(key);
  let sawParams = false;
  let ended = false;
  try {
    for await (const chunk of unzstd as AsyncIterable<Buffer>) {
      const batch: SplitRecord[] = [];
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
        batch.push(rec);
      }
      if (batch.length > 0) yield batch;
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

/**
 * A range of a pack read with one GET: neighbouring objects, and the gaps between them. Each
 * object's stored bytes are read straight to their place in their job's block.
 */
interface Group {
  readonly key: string;
  readonly offset: number;
  length: number;
  /** The first object (named in errors). */
  readonly first: string;
  /** Where the range goes, in order: each object's place in its block, and the gaps to skip. */
  readonly parts: ReadPart[];
  /** Settles once the objects' bytes are in their blocks (read once the group is complete, {@link Group.start}). */
  readonly read: Promise<void>;
  /** Starts the GET (the group takes no more objects). */
  readonly start: () => void;
  /** Gives up on the group before its GET (the rebuild stopped early). */
  readonly cancel: () => void;
}

/** An object's place: where its stored bytes are in its group, where its raw bytes go in the block. */
interface Placed {
  readonly group: Group;
  /** Offset of the stored bytes in the group's range. */
  readonly at: number;
  /** Position of the raw bytes in the block (its stored bytes are read there). */
  readonly pos: number;
  readonly stored: number;
  readonly raw: number;
  readonly zstd: boolean;
  readonly hash: Uint8Array;
}

/** A shared block being filled with a stretch of the layer, then assembled and verified by a worker. */
interface Job {
  readonly block: number;
  used: number;
  readonly objects: Placed[];
  /** Settles when the worker is done with the block (assembled, or failed). */
  assembled: Promise<AssembleResponse> | undefined;
}

/**
 * A stretch of a rebuilt layer, lent in place: `bytes` is a view of one of the limiter's shared
 * blocks. The borrower calls `release()` once it no longer reads `bytes` (and must, even when it
 * gives up: the block goes back to the pool only then); the view must not be read after that.
 */
export interface LayerBlock {
  /** The shared block's index (for StreamHasher.updateBlock). */
  readonly block: number;
  readonly bytes: Buffer;
  readonly release: () => void;
}

/** The exact tar of a layer, verified against its diffID at the end. */
export function openLayer(deps: ReaderDeps, layer: LayerRecord, signal?: AbortSignal): Readable {
  return Readable.from(copied(rebuildChecked(deps, layer, signal)), { objectMode: false });
}

/**
 * The exact tar of a layer as lent blocks (see {@link LayerBlock}), verified against its diffID
 * before the iteration ends: no copy and no garbage per block, for a borrower that always drains
 * (a file being written). A borrower that may stall (a network client) holds pool blocks meanwhile
 * and should use {@link openLayer}.
 */
export function openLayerBlocks(
  deps: ReaderDeps,
  layer: LayerRecord,
  signal?: AbortSignal,
): AsyncGenerator<LayerBlock> {
  return rebuildChecked(deps, layer, signal);
}

/** Copies each lent block into a Buffer of its own (a consumer owns what a Readable gives it). */
async function* copied(lent: AsyncIterable<LayerBlock>): AsyncGenerator<Buffer> {
  for await (const b of lent) {
    noteBufferChurn(b.bytes.length);
    const chunk = Buffer.allocUnsafe(b.bytes.length);
    b.bytes.copy(chunk);
    b.release();
    yield chunk;
  }
}

/**
 * The rebuilt layer, checked against its diffID; on a mismatch, finds the corrupt object with a
 * second pass that checks every object (and reports the mismatch if none is).
 */
async function* rebuildChecked(
  deps: ReaderDeps,
  layer: LayerRecord,
  signal: AbortSignal | undefined,
): AsyncGenerator<LayerBlock> {
  try {
    yield* rebuild(deps, layer, signal, false);
  } catch (err) {
    if (!(err instanceof DigestMismatchError)) throw err;
    for await (const b of rebuild(deps, layer, signal, true)) {
      // Drained: a corrupt object throws, naming itself.
      b.release();
    }
    throw err;
  }
}

/**
 * Rebuilds the tar in the limiter's shared blocks, in order: inline bytes are copied into a block
 * and objects' stored bytes (raw objects and zstd frames) are read straight to their places in it,
 * then a worker decompresses the frames into place and verifies every object; the block is added
 * to the diffID (pinned worker) and lent out. Objects are read in groups (neighbouring objects of
 * one pack with one scattered GET: no buffer per group, no copy), started as soon as a group is
 * complete. At most {@link MAX_REBUILD_BLOCKS} blocks (and the GETs they wait for) are in flight.
 */
async function* rebuild(
  deps: ReaderDeps,
  layer: LayerRecord,
  signal: AbortSignal | undefined,
  checkObjects: boolean,
): AsyncGenerator<LayerBlock> {
  const { objects } = deps;
  await objects.refresh(signal);
  const blocks = objects.limiter.blocks;
  const context = `layer ${layer.diffID}`;
  const out = new StreamHasher(objects.limiter);
  // Half the pool at most: imports running meanwhile keep blocks to work with.
  const maxJobs = Math.max(1, Math.min(MAX_REBUILD_BLOCKS, Math.floor(blocks.count / 2)));
  const jobs: Job[] = [];
  let open: Job | undefined;
  let group: Group | undefined;
  /** Digests in flight of the blocks emitted (each block goes back once hashed and released). */
  const hashing = new Set<Promise<void>>();

  const newGroup = (key: string, offset: number, first: string): Group => {
    let start!: () => void;
    let cancel!: (err: Error) => void;
    const started = new Promise<void>((resolve, reject) => {
      start = resolve;
      cancel = reject;
    });
    const g: Group = {
      key,
      offset,
      length: 0,
      first,
      parts: [],
      read: started.then(() =>
        objects.readRangeInto(g.key, g.offset, g.length, g.parts, ` (object sha256:${g.first})`, signal),
      ),
      start,
      cancel: () => cancel(new Error(`rebuild of ${context} stopped`)),
    };
    g.read.catch(() => undefined); // awaited by the jobs that need it; this only marks it handled meanwhile
    return g;
  };
  const closeGroup = (): void => {
    group?.start();
    group = undefined;
  };
  /** Settles once every read into the job's block has (groups come in order: each awaited once). */
  const groupsRead = async (job: Job): Promise<void> => {
    let last: Group | undefined;
    for (const o of job.objects) {
      if (o.group === last) continue;
      last = o.group;
      await last.read;
    }
  };

  /** Has a worker assemble the job's block once its objects' stored bytes are read into it. */
  const assemble = async (job: Job): Promise<AssembleResponse> => {
    await groupsRead(job);
    if (job.objects.length === 0) return { op: 'assemble', id: 0, bad: undefined };
    const list = new Uint32Array(4 * job.objects.length);
    const hashes = new Uint8Array(checkObjects ? HASH_BYTES * job.objects.length : 0);
    job.objects.forEach((o, i) => {
      list.set([o.pos, o.stored, o.raw, o.zstd ? 1 : 0], 4 * i);
      if (checkObjects) hashes.set(o.hash, HASH_BYTES * i);
    });
    return objects.limiter.pool.run<AssembleRequest>({
      op: 'assemble',
      block: job.block,
      objects: list,
      hashes,
    });
  };

  const seal = (job: Job): void => {
    if (open === job) open = undefined;
    // Waits for its groups' GETs; a group still open may take objects of the next jobs too.
    job.assembled = assemble(job);
    job.assembled.catch(() => undefined); // awaited in order by emit
    jobs.push(job);
  };

  /** Seals the open job and starts the next, emitting first when enough jobs are in flight. */
  async function* newJob(): AsyncGenerator<LayerBlock, Job> {
    if (open !== undefined) seal(open);
    while (jobs.length >= maxJobs) yield* emit();
    open = { block: await blocks.acquire(signal), used: 0, objects: [], assembled: undefined };
    return open;
  }

  /** The open job if `bytes` more fit in it (inline bytes ask for room for one). */
  const fits = (bytes: number): Job | undefined =>
    open !== undefined && open.used + bytes <= blocks.blockBytes ? open : undefined;

  /** Copies inline bytes into the open job, as many as fit; returns how many. */
  const placeInline = (job: Job, bytes: Uint8Array, pos: number): number => {
    const n = Math.min(blocks.blockBytes - job.used, bytes.length - pos);
    blocks.inputView(job.block).set(bytes.subarray(pos, pos + n), job.used);
    job.used += n;
    return n;
  };

  /** Places an object in the open job (it fits) and in a group of its pack. */
  const placeObject = (job: Job, hash: Uint8Array, size: number): void => {
    const loc = objects.locate(hash, context);
    if (loc.raw !== size) {
      throw new CorruptObjectError(
        `sha256:${hex(hash)}`,
        `index says ${loc.raw} bytes, ${context} expects ${size}`,
      );
    }
    // Its stored bytes are read into its place in the block: they must fit there.
    if (loc.codec === 'zstd' ? loc.stored > loc.raw : loc.stored !== loc.raw) {
      throw new CorruptObjectError(
        `sha256:${hex(hash)}`,
        `index says ${loc.stored} bytes stored (${loc.codec}) for ${loc.raw}`,
      );
    }
    const key = packKey(loc.pack);
    const end = group === undefined ? 0 : group.offset + group.length;
    if (
      group === undefined ||
      group.key !== key ||
      loc.offset < end ||
      loc.offset - end > MAX_GAP_BYTES ||
      loc.offset + loc.stored - group.offset > MAX_GROUP_BYTES
    ) {
      closeGroup();
      group = newGroup(key, loc.offset, hex(hash));
    }
    const g = group;
    const gap = loc.offset - (g.offset + g.length);
    if (gap > 0) g.parts.push(gap);
    g.parts.push(blocks.inputView(job.block).subarray(job.used, job.used + loc.stored));
    g.length = loc.offset + loc.stored - g.offset;
    job.objects.push({
      group: g,
      at: loc.offset - g.offset,
      pos: job.used,
      stored: loc.stored,
      raw: loc.raw,
      zstd: loc.codec === 'zstd',
      hash,
    });
    job.used += size;
  };

  /** Emits the oldest job: waits for its block to be assembled, hashes it, lends it out. */
  async function* emit(): AsyncGenerator<LayerBlock> {
    const job = jobs.shift()!;
    // Its last group may still be open (the records after it have not closed it): it is due now.
    if (job.objects.some((o) => o.group === group)) closeGroup();
    let res: AssembleResponse;
    try {
      res = await job.assembled!;
    } catch (err) {
      blocks.release(job.block);
      throw err;
    }
    if (res.bad !== undefined) {
      blocks.release(job.block);
      const o = job.objects[res.bad.index]!;
      throw new CorruptObjectError(
        o.group.key,
        `object sha256:${hex(o.hash)} at offset ${o.group.offset + o.at}: ${res.bad.reason}`,
      );
    }
    // Back to the pool once the diffID has read it and the borrower has released it.
    let holders = 2;
    const drop = (): void => {
      if (--holders === 0) blocks.release(job.block);
    };
    const hashed = out.updateBlock(job.block, job.used).then(
      () => undefined,
      () => undefined, // reported by out.digest()
    );
    const done = hashed.then(() => {
      hashing.delete(done);
      drop();
    });
    hashing.add(done);
    let lent = true;
    const release = (): void => {
      if (!lent) return;
      lent = false;
      drop();
    };
    yield { block: job.block, bytes: blocks.inputView(job.block).subarray(0, job.used), release };
  }

  let finished = false;
  try {
    let chunkSize = 0;
    // Placing a record is synchronous; only starting a new job may wait (and emit).
    for await (const batch of recordBatches(deps, layer, signal, (p) => {
      chunkSize = p.chunkSize;
    })) {
      for (const rec of batch) {
        switch (rec.kind) {
          case 'inline': {
            let pos = 0;
            while (pos < rec.bytes.length) pos += placeInline(fits(1) ?? (yield* newJob()), rec.bytes, pos);
            break;
          }
          case 'object':
            placeObject(fits(rec.size) ?? (yield* newJob()), rec.hash, rec.size);
            break;
          case 'chunked': {
            let left = rec.size;
            for (const h of rec.hashes) {
              const n = Math.min(left, chunkSize);
              placeObject(fits(n) ?? (yield* newJob()), h, n);
              left -= n;
            }
            break;
          }
          case 'end':
            break;
        }
      }
    }
    if (open !== undefined) seal(open);
    closeGroup();
    while (jobs.length > 0) yield* emit();
    finished = true;
  } finally {
    // Stopped early (consumer gone, error): give every block back once no worker uses it, and
    // drop the hash state held by the worker. Jobs waiting for the open group wait no more.
    group?.cancel();
    if (open !== undefined) {
      // Reads of its closed groups may still be writing into its block.
      await groupsRead(open).catch(() => undefined);
      blocks.release(open.block);
    }
    for (const job of jobs.splice(0)) {
      await job.assembled?.catch(() => undefined);
      blocks.release(job.block);
    }
    while (hashing.size > 0) await Promise.all([...hashing]);
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
