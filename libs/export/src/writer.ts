/**
 * The streaming writer: one pass over a planned export into any Writable (a file, stdout, an HTTP
 * response, a store upload).
 *
 *     layer i   : store.openLayer | store.getBlob ─▶ [gzip|zstd] ─▶ guard (size, digest) ─┐
 *     layer i+1 : … prepared concurrently, buffered up to LOOKAHEAD_BYTES, then paused     │ in order
 *     metadata  : configs, manifests, manifest.json / index.json (last)                    ▼
 *                                               tar-stream pack ─▶ [gzip|zstd] ─▶ sha256 + count ─▶ out
 *
 * Up to `concurrency` layers are rebuilt and compressed at once (zlib runs on the libuv pool, the
 * store's rebuild on its worker threads); the pack takes them one after the other. An uncompressed
 * archive written to a file takes another path, {@link writeTarLent}: no tar-stream, and the
 * rebuilt layers are written from the store's shared blocks instead of copies. Memory is
 * bounded by the number of layers in flight times their buffers, whatever the layers' sizes. The
 * archive's sha256 and size are computed on the way out (the sha256 on a worker thread), each
 * recompressed layer's digest and size on its way in (against its variant record). Any failure
 * destroys the output: a caller never sees a clean end of a truncated archive.
 */
import { Readable, Transform, type TransformCallback, type Writable } from 'node:stream';
import { finished, pipeline } from 'node:stream/promises';
import { pipeline as pipelineCallback } from 'node:stream';
import { pack as tarPack, type Pack } from 'tar-stream';
import { Digester, type DiffID, type Digest } from '@stevedore/oci/spec';
import { drained, StreamHasher, type LayerBlock, type Limiter } from '@stevedore/store';
import { compressorFor, recipeOf } from './codec.ts';
import { LayerVariantMismatchError } from './errors.ts';
import { DEFAULT_CONCURRENCY, type ExportPlan, type LayerMember } from './plan.ts';
import type { ExportStore } from './resolve.ts';
import { END_OF_ARCHIVE, MEMBER_MODE, MEMBER_MTIME, memberHeader, memberPadding } from './tar-layout.ts';

const MiB = 1024 * 1024;
/**
 * Bytes a prepared layer buffers while it waits for its turn; then it pauses (and so does its
 * compressor and its rebuild). Enough to smooth the hand-over from one layer to the next.
 */
export const LOOKAHEAD_BYTES = 2 * MiB;

export interface WriteOptions {
  readonly signal?: AbortSignal;
  /** Layers prepared at once; default {@link DEFAULT_CONCURRENCY}. */
  readonly concurrency?: number;
  /** Called with the bytes written so far, at most once per chunk. */
  readonly onProgress?: (bytesWritten: number) => void;
  /**
   * The output always drains (a file, not a network peer): an uncompressed archive is then written
   * by {@link writeTarLent}, which has layers rebuilt from the store lent to it in place
   * (store.openLayerBlocks) instead of copied. Set by writeArchiveFile.
   */
  readonly lendBlocks?: boolean;
}

export interface WrittenLayer {
  readonly diffID: DiffID;
  readonly digest: Digest;
  readonly size: number;
}

export interface ArchiveResult {
  /** sha256 of the bytes written (after whole-archive compression). */
  readonly digest: Digest;
  readonly size: number;
  /** Size of the tar before whole-archive compression. */
  readonly tarSize: number;
  readonly layers: readonly WrittenLayer[];
}

/** A layer member's bytes are not what the plan says (`actual`: what was seen instead). */
function memberMismatch(m: LayerMember, actual: string): Error {
  if (m.source.kind === 'compressed') {
    return new LayerVariantMismatchError(
      `layer ${m.diffID}: ${m.source.recipe.compression} level ${m.source.recipe.level} (${m.source.recipe.codec}) gave ${actual}, but its variant record says ${m.digest} (${m.size} bytes)`,
    );
  }
  const what = m.source.kind === 'blob' ? `blob ${m.digest}` : `tar`;
  return new Error(`layer ${m.diffID}: ${what} is ${actual}, but the store's records say ${m.size} bytes`);
}

/**
 * Checks a layer member on its way into the tar: never more bytes than its header announced (that
 * would corrupt the tar), exactly that many at the end, and for recompressed layers the digest of
 * the variant record. The store checks the rest itself (a rebuilt tar against its diffID, a blob
 * against its digest) before the stream ends.
 */
class LayerGuard extends Transform {
  readonly #member: LayerMember;
  readonly #digester: Digester | undefined;
  #size = 0;

  constructor(member: LayerMember) {
    super({ readableHighWaterMark: LOOKAHEAD_BYTES });
    this.#member = member;
    this.#digester = member.source.kind === 'compressed' ? new Digester() : undefined;
  }

  #mismatch(actual: string): Error {
    return memberMismatch(this.#member, actual);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#size += chunk.length;
    if (this.#size > this.#member.size) {
      callback(this.#mismatch(`more than ${this.#member.size} bytes`));
      return;
    }
    this.#digester?.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#size !== this.#member.size) {
      callback(this.#mismatch(`${this.#size} bytes`));
      return;
    }
    if (this.#digester !== undefined && this.#digester.digest() !== this.#member.digest) {
      callback(this.#mismatch(`${this.#digester.digest()} (${this.#size} bytes)`));
      return;
    }
    callback();
  }
}

/** The bytes of a layer member, checked by a {@link LayerGuard}. */
async function openMember(store: ExportStore, member: LayerMember, signal: AbortSignal): Promise<Readable> {
  const guard = new LayerGuard(member);
  const source = member.source;
  const stages: (Readable | Transform)[] = [];
  switch (source.kind) {
    case 'blob':
      stages.push(await store.getBlob(member.digest, { signal }));
      break;
    case 'tar':
      stages.push(await store.openLayer(member.diffID, { signal }));
      break;
    case 'compressed':
      stages.push(await store.openLayer(member.diffID, { signal }), ...compressorFor(source.recipe));
      break;
  }
  // Errors of any stage end up in `guard`, which the writer reads (or has failed the export on).
  pipelineCallback([...stages, guard], () => {});
  stagesOf.set(guard, stages);
  return guard;
}

/** The stages behind each stream {@link openMember} returns: a layer's blocks go back once they close. */
const stagesOf = new WeakMap<Readable, readonly (Readable | Transform)[]>();

/** Destroys `stream` and the stages behind it; resolves once every one of them has closed. */
function destroyMember(stream: Readable, err: Error): Promise<void> {
  const all = [...(stagesOf.get(stream) ?? []), stream];
  const closed = all
    .filter((s) => !s.closed)
    .map((s) => new Promise<void>((resolve) => s.once('close', () => resolve())));
  for (const s of all) s.destroy(err);
  return Promise.all(closed).then(() => undefined);
}

/**
 * Opens layers ahead of the writer, at most `window` at once counting the one being written. A
 * layer that fails while waiting fails the export at once (`onError`).
 */
class Prefetcher {
  readonly #layers: readonly LayerMember[];
  readonly #open: (m: LayerMember) => Promise<Readable>;
  readonly #window: number;
  readonly #onError: (err: unknown) => void;
  readonly #started: Promise<Readable>[] = [];
  #taken = 0;

  constructor(
    layers: readonly LayerMember[],
    window: number,
    open: (m: LayerMember) => Promise<Readable>,
    onError: (err: unknown) => void,
  ) {
    this.#layers = layers;
    this.#window = Math.max(1, window);
    this.#open = open;
    this.#onError = onError;
  }

  #startUpTo(end: number): void {
    while (this.#started.length < Math.min(end, this.#layers.length)) {
      const member = this.#layers[this.#started.length]!;
      const opened = this.#open(member).then((stream) => {
        stream.once('error', this.#onError);
        return stream;
      });
      opened.catch(this.#onError);
      this.#started.push(opened);
    }
  }

  /** The next layer's stream; starts the ones after it up to the window. */
  async next(): Promise<Readable> {
    const i = this.#taken++;
    this.#startUpTo(i + this.#window);
    return this.#started[i]!;
  }

  /**
   * Destroys every opened stream (after a failure); resolves once all have closed, that is once
   * each layer has given its blocks back to the pool (a rebuilt layer closes after its cleanup).
   */
  async destroyAll(err: Error): Promise<void> {
    await Promise.all(
      this.#started.map((p) =>
        p.then(
          (s) => destroyMember(s, err),
          () => undefined,
        ),
      ),
    );
  }
}

/** Writes one member into the pack and resolves once the pack has taken all of it. */
async function writeEntry(
  pack: Pack,
  name: string,
  size: number,
  body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): Promise<void> {
  const packed = Promise.withResolvers<void>();
  const sink = pack.entry(
    { name, size, mode: MEMBER_MODE, mtime: MEMBER_MTIME, uid: 0, gid: 0, type: 'file' },
    (err) => (err ? packed.reject(err) : packed.resolve()),
  );
  // The callback reports the same error; without a listener the sink's 'error' would be thrown.
  sink.on('error', packed.reject);
  const write = async (): Promise<void> => {
    for await (const chunk of body) {
      if (!sink.write(chunk)) {
        // streamx sinks emit 'drain'; 'close' means the pack was destroyed and `packed` rejects.
        await drained(sink);
        if (sink.destroyed) return;
      }
    }
    sink.end(undefined);
  };
  await Promise.all([packed.promise, write()]);
}

/**
 * Counts and hashes the archive on its way out, and refuses to write past (or end short of) the
 * size announced in advance, so a Content-Length is never broken by a clean but wrong end. The
 * sha256 runs on a worker of the store's pool (the event loop has the rest of the export to do).
 */
class OutputMeter extends Transform {
  readonly hasher: StreamHasher;
  readonly #expected: number | undefined;
  readonly #onProgress: ((bytes: number) => void) | undefined;

  constructor(
    limiter: Limiter,
    expected: number | undefined,
    onProgress: ((bytes: number) => void) | undefined,
  ) {
    super();
    this.hasher = new StreamHasher(limiter);
    this.#expected = expected;
    this.#onProgress = onProgress;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#expected !== undefined && this.hasher.size + chunk.length > this.#expected) {
      callback(new Error(`archive grew past its planned ${this.#expected} bytes`));
      return;
    }
    this.hasher.update(chunk).then(() => {
      this.#onProgress?.(this.hasher.size);
      callback(null, chunk);
    }, callback);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#expected !== undefined && this.hasher.size !== this.#expected) {
      callback(new Error(`archive ended at ${this.hasher.size} bytes, planned ${this.#expected}`));
      return;
    }
    callback();
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/** Writes the archive of `plan` into `out`; see the module comment. */
export async function writeArchive(
  store: ExportStore,
  plan: ExportPlan,
  out: Writable,
  options: WriteOptions = {},
): Promise<ArchiveResult> {
  if (options.lendBlocks === true && plan.archiveCompression === 'none') {
    return writeTarLent(store, plan, out, options);
  }
  const controller = new AbortController();
  const signal =
    options.signal === undefined ? controller.signal : AbortSignal.any([controller.signal, options.signal]);
  let failure: Error | undefined;
  let layersClosed: Promise<void> | undefined;
  const pack = tarPack();
  const layers = plan.members.filter((m) => m.kind === 'layer');
  const fail = (err: unknown): void => {
    if (failure !== undefined) return;
    // The caller's abort reason wins over the errors it causes downstream.
    failure = options.signal?.aborted === true ? asError(options.signal.reason) : asError(err);
    controller.abort(failure);
    pack.destroy(failure);
    layersClosed = prefetcher.destroyAll(failure);
  };
  const prefetcher = new Prefetcher(
    layers,
    options.concurrency ?? DEFAULT_CONCURRENCY,
    (m) => openMember(store, m, signal),
    fail,
  );
  const meter = new OutputMeter(store.limiter, plan.size, options.onProgress);
  const stages = [
    Readable.from(pack, { objectMode: false }),
    ...(plan.archiveCompression === 'none' ? [] : compressorFor(recipeOf(plan.archiveCompression))),
    meter,
    out,
  ];

  const feed = async (): Promise<void> => {
    for (const member of plan.members) {
      signal.throwIfAborted();
      if (member.kind === 'bytes') {
        await writeEntry(pack, member.name, member.bytes.byteLength, [member.bytes]);
      } else {
        await writeEntry(pack, member.name, member.size, await prefetcher.next());
      }
    }
    pack.finalize();
  };
  await Promise.all([feed().catch(fail), pipeline(stages, { signal }).catch(fail)]);
  if (failure !== undefined) {
    out.destroy(failure);
    // Every block back in the pool before the caller hears of the failure.
    await layersClosed;
    await meter.hasher.discard().catch(() => undefined);
    throw failure;
  }
  return {
    digest: await meter.hasher.digest(),
    size: meter.hasher.size,
    tarSize: plan.tarSize,
    layers: layers.map((l) => ({ diffID: l.diffID, digest: l.digest, size: l.size })),
  };
}

/**
 * Writes an uncompressed archive into an output that always drains, without tar-stream: the
 * headers are {@link memberHeader}'s (the bytes tar-stream writes), and the layers rebuilt from
 * the store are lent in place (store.openLayerBlocks): each block is added to the archive's
 * digest by a worker straight from shared memory and written from there, then released. That
 * saves two copies of every byte of such a layer (into a Buffer of its own, then into the
 * digest's ring) and its garbage. Other members go as {@link writeArchive} sends them (blobs and
 * recompressed layers through {@link openMember}, prepared ahead). A lent layer is not prepared
 * ahead: its blocks would sit in the pool unread while the layer before is written. (A plan's
 * layers all have one source kind, so lent and prepared layers never wait for each other's blocks.)
 */
async function writeTarLent(
  store: ExportStore,
  plan: ExportPlan,
  out: Writable,
  options: WriteOptions,
): Promise<ArchiveResult> {
  const controller = new AbortController();
  const signal =
    options.signal === undefined ? controller.signal : AbortSignal.any([controller.signal, options.signal]);
  const hasher = new StreamHasher(store.limiter);
  const expected = plan.tarSize; // the archive is the tar (archiveCompression none)
  /** Lent blocks being hashed and written: each is released once both are done. */
  const lentOut = new Set<Promise<void>>();
  let written = 0;
  let failure: Error | undefined;
  let layersClosed: Promise<void> | undefined;
  const fail = (err: unknown): void => {
    if (failure !== undefined) return;
    failure = options.signal?.aborted === true ? asError(options.signal.reason) : asError(err);
    controller.abort(failure);
    layersClosed = prefetcher.destroyAll(failure);
  };
  const lent = (m: LayerMember): boolean => m.source.kind === 'tar';
  const layers = plan.members.filter((m) => m.kind === 'layer');
  const prefetcher = new Prefetcher(
    layers.filter((m) => !lent(m)),
    options.concurrency ?? DEFAULT_CONCURRENCY,
    (m) => openMember(store, m, signal),
    fail,
  );
  // The output failing (a full disk) fails the export at once. Stays attached: destroying the
  // output below emits its 'error' after this function has returned.
  out.on('error', (err: Error) => fail(err));

  const count = (n: number): void => {
    if (written + n > expected) throw new Error(`archive grew past its planned ${expected} bytes`);
    written += n;
  };
  /** Writes `bytes` (owned by the archive from now on), once the output has room. */
  const write = async (bytes: Uint8Array, done?: (err?: Error | null) => void): Promise<void> => {
    const more = out.write(bytes, done);
    options.onProgress?.(written);
    if (!more) await drained(out);
    signal.throwIfAborted();
  };
  /** Bytes of ours: hashed through the digest's ring, then written. */
  const put = async (bytes: Uint8Array): Promise<void> => {
    if (bytes.length === 0) return;
    count(bytes.length);
    await hasher.update(bytes);
    await write(bytes);
  };
  /** A lent block: hashed from shared memory, written, released when both are done with it. */
  const lend = async (b: LayerBlock): Promise<void> => {
    let releaseScheduled = false;
    try {
      count(b.bytes.length);
      const hashed = hasher.updateBlock(b.block, b.bytes.length);
      const flushed = Promise.withResolvers<void>();
      const done = Promise.allSettled([hashed, flushed.promise]).then(() => {
        lentOut.delete(done);
        b.release();
      });
      lentOut.add(done);
      releaseScheduled = true;
      await write(b.bytes, (err) => (err ? flushed.reject(err) : flushed.resolve()));
    } finally {
      if (!releaseScheduled) b.release();
    }
  };
  const putLentLayer = async (m: LayerMember): Promise<void> => {
    let size = 0;
    for await (const b of await store.openLayerBlocks(m.diffID, { signal })) {
      size += b.bytes.length;
      if (size > m.size) {
        b.release();
        throw memberMismatch(m, `more than ${m.size} bytes`);
      }
      await lend(b);
    }
    if (size !== m.size) throw memberMismatch(m, `${size} bytes`);
  };

  try {
    for (const member of plan.members) {
      signal.throwIfAborted();
      const size = member.kind === 'bytes' ? member.bytes.byteLength : member.size;
      await put(memberHeader(member.name, size));
      if (member.kind === 'bytes') await put(member.bytes);
      else if (lent(member)) await putLentLayer(member);
      else for await (const chunk of await prefetcher.next()) await put(chunk as Buffer);
      await put(memberPadding(size));
    }
    await put(Buffer.alloc(END_OF_ARCHIVE));
    if (written !== expected) throw new Error(`archive ended at ${written} bytes, planned ${expected}`);
    out.end();
    await finished(out);
    await Promise.all(lentOut);
  } catch (err) {
    fail(err);
  }
  if (failure !== undefined) {
    out.destroy(failure);
    await Promise.allSettled(lentOut);
    await layersClosed;
    await hasher.discard().catch(() => undefined);
    throw failure;
  }
  return {
    digest: await hasher.digest(),
    size: written,
    tarSize: plan.tarSize,
    layers: layers.map((l) => ({ diffID: l.diffID, digest: l.digest, size: l.size })),
  };
}
