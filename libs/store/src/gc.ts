/**
 * Garbage collection (`stevedore gc`): deletes what no reference reaches any more, and rewrites
 * packs that are mostly garbage. docs/store-format.md ("Garbage collection") has the sequence.
 *
 * It must run alone: no import, commit or read of what it may delete while it runs. The pipeline
 * guarantees that (libs/pipeline gc.ts closes a Redis gate that every job waits behind, and waits
 * for the active jobs to finish), and passes as `roots` the digests that queued work depends on
 * (a pull whose layers are committed but whose image is not yet). This module only marks and
 * sweeps.
 *
 * Mark: the references and the roots lead to images (an index to its stored platform images), an
 * image to its manifest, config and layers; a stored manifest or config not yet committed as an
 * image leads to its layers by their blob digests (layer-blob records) and diffIDs. The live layers'
 * splitstreams give the live objects.
 *
 * Sweep, each step durable before the next, so that a crash leaves only garbage, never a live
 * record pointing at something deleted (the next collection finishes the job):
 * 1. image records, then layer-blob records, then layer records no live thing reaches;
 * 2. the dead layers' splitstreams and recompressed-variant records; blobs no live thing reaches;
 * 3. objects: packs none of whose objects is live are deleted; packs whose live objects take less
 *    than `repackBelow` of their bytes are rewritten (their live objects copied, as stored, into
 *    new packs); one new set of index files lists every live object once, then the old index files
 *    go, then the old packs. A crash in between leaves packs no index lists: crash leftovers that
 *    `compact` deletes (orphans.ts).
 * The object sweep is skipped (records are still collected) when a live layer's splitstream
 * cannot be read or names an object no index lists: the store is damaged, `stevedore verify`
 * says where, and deleting packs then could only make it worse.
 */
import { createHash, randomBytes } from 'node:crypto';
import { zstdDecompressSync } from 'node:zlib';
import {
  digestHex,
  digestOf,
  isDigest,
  MAX_MANIFEST_BYTES,
  parseImageConfig,
  parseManifest,
  type Digest,
} from '@stevedore/oci/spec';
import { listAll } from './backend/backend.ts';
import { ObjectNotFoundError } from './errors.ts';
import {
  blobKey,
  imageKey,
  indexKey,
  layerBlobKey,
  layerKey,
  packKey,
  parseIndexKey,
  PREFIX,
} from './layout.ts';
import { mapLimited } from './map-limited.ts';
import { PACK_TARGET, verifyIndexFile, type ObjectStore } from './objects.ts';
import { recordBatches } from './layer-reader.ts';
import {
  indexPacks,
  IndexMerger,
  KeyTable,
  ObjectIndex,
  PACK_ID_BYTES,
  type ObjectLocation,
} from './pack-index.ts';
import type { ImageRecord, LayerRecord } from './records.ts';
import { HASH_BYTES } from './splitstream.ts';
import type { Store } from './store.ts';
import { MERGED_INDEX_MAX_BYTES } from './compaction.ts';

/** Packs whose live objects take less than this share of their bytes are rewritten by default. */
export const DEFAULT_REPACK_BELOW = 0.5;
/** Deletes and small reads at once. */
const CONCURRENCY = 8;

export interface CollectOptions {
  /**
   * Digests that queued work depends on (manifests, configs, blobs, diffIDs): kept, with what
   * they lead to. Strings that are not digests are ignored.
   */
  readonly roots?: readonly string[];
  /** Report what would be deleted and rewritten, and change nothing. */
  readonly dryRun?: boolean;
  /** 0 to 1: rewrite packs whose live objects take less than this share of their bytes. */
  readonly repackBelow?: number;
  readonly signal?: AbortSignal;
}

export interface Collected {
  readonly count: number;
  readonly bytes: number;
}

export interface CollectResult {
  readonly dryRun: boolean;
  /** What stays: reachable records and blobs, and the live objects with their stored bytes. */
  readonly live: {
    readonly references: number;
    readonly images: number;
    readonly layers: number;
    readonly blobs: Collected;
    readonly objects: Collected;
  };
  /** Deleted (or, in a dry run, to delete). Records count their record files' bytes. */
  readonly deleted: {
    readonly images: Collected;
    readonly layers: Collected;
    readonly layerBlobs: Collected;
    readonly splitstreams: Collected;
    readonly variants: Collected;
    readonly blobs: Collected;
    /** Packs with no live object. */
    readonly packs: Collected;
  };
  /** Packs rewritten: the old ones (deleted) and the new ones holding their live objects. */
  readonly repacked: { readonly packs: Collected; readonly written: Collected };
  /** Stored bytes of dead objects left in packs that stay (mostly live: below the repack share). */
  readonly deadBytesKept: number;
  /**
   * Index files before, and written in their place (0 when no pack was deleted or rewritten: the
   * index files then stay as they are).
   */
  readonly indexFiles: { readonly before: number; readonly written: number };
  /** Why the object sweep was skipped (empty when it ran). */
  readonly problems: readonly string[];
}

const none = (): { count: number; bytes: number } => ({ count: 0, bytes: 0 });
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Every key under `prefix` with its size. */
async function listed(store: Store, prefix: string, signal?: AbortSignal): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for await (const o of listAll(store.backend, prefix, { signal })) sizes.set(o.key, o.size);
  return sizes;
}

export async function collectGarbage(
  deps: { readonly store: Store; readonly objects: ObjectStore },
  options: CollectOptions = {},
): Promise<CollectResult> {
  const { store, objects } = deps;
  const { signal } = options;
  const dryRun = options.dryRun === true;
  const repackBelow = options.repackBelow ?? DEFAULT_REPACK_BELOW;
  if (!(repackBelow >= 0 && repackBelow <= 1))
    throw new RangeError(`repackBelow must be 0 to 1, got ${repackBelow}`);
  const backend = store.backend;

  // ---- mark ---------------------------------------------------------------------------------
  const [references, images, layers, layerBlobs, blobList] = await Promise.all([
    store.listReferences({ signal }),
    store.listImages({ signal }),
    store.listLayers({ signal }),
    store.listLayerBlobs({ signal }),
    store.listBlobs({ signal }),
  ]);
  const imageByDigest = new Map(images.map((i) => [i.manifest.digest as string, i]));
  const layerByDiffID = new Map(layers.map((l) => [l.diffID as string, l]));
  const diffIDOfBlob = new Map(layerBlobs.map((b) => [b.digest as string, b.diffID as string]));
  const blobSize = new Map(blobList.map((b) => [b.digest as string, b.size]));

  const liveImages = new Set<string>();
  const liveLayers = new Set<string>();
  const liveBlobs = new Set<string>();
  const visited = new Set<string>();

  const markLayerBlob = (digest: string): void => {
    liveBlobs.add(digest);
    const diffID = diffIDOfBlob.get(digest);
    if (diffID !== undefined) liveLayers.add(diffID);
  };
  const markImage = (image: ImageRecord): void => {
    liveImages.add(image.manifest.digest);
    liveBlobs.add(image.manifest.digest);
    liveBlobs.add(image.config.digest);
    for (const l of image.layers) {
      liveLayers.add(l.diffID);
      markLayerBlob(l.digest);
    }
  };
  /** A stored manifest, index or config not (yet) committed as an image: what it names. */
  const markParsed = async (digest: Digest): Promise<void> => {
    const size = blobSize.get(digest);
    if (size === undefined || size > MAX_MANIFEST_BYTES) return;
    const bytes = await store.getBlobBytes(digest, { signal });
    let parsed: ReturnType<typeof parseManifest> | undefined;
    try {
      parsed = parseManifest(bytes);
    } catch {
      parsed = undefined;
    }
    if (parsed?.kind === 'index') {
      for (const m of parsed.index.manifests) await mark(m.digest);
    } else if (parsed?.kind === 'manifest') {
      await mark(parsed.manifest.config.digest);
      for (const l of parsed.manifest.layers) markLayerBlob(l.digest);
    } else {
      try {
        for (const diffID of parseImageConfig(bytes).rootfs.diff_ids) liveLayers.add(diffID);
      } catch {
        // A blob that is neither a manifest nor a config (a layer blob): nothing more to follow.
      }
    }
  };
  const mark = async (digest: string): Promise<void> => {
    if (!isDigest(digest) || visited.has(digest)) return;
    visited.add(digest);
    liveBlobs.add(digest);
    if (layerByDiffID.has(digest)) liveLayers.add(digest);
    if (diffIDOfBlob.has(digest)) markLayerBlob(digest);
    const image = imageByDigest.get(digest);
    if (image !== undefined) markImage(image);
    else await markParsed(digest);
  };
  for (const ref of references) await mark(ref.digest);
  for (const root of options.roots ?? []) await mark(root);

  const deadImages = images.filter((i) => !liveImages.has(i.manifest.digest));
  const deadLayers = layers.filter((l) => !liveLayers.has(l.diffID));
  const deadDiffIDs = new Set(deadLayers.map((l) => l.diffID as string));
  // A layer-blob record naming a dead layer, or no layer at all (dangling), goes with it.
  const deadLayerBlobs = layerBlobs.filter((b) => deadDiffIDs.has(b.diffID) || !layerByDiffID.has(b.diffID));
  const deadBlobs = blobList.filter((b) => !liveBlobs.has(b.digest));

  const [splitstreamList, variantList, recordSizes] = await Promise.all([
    listed(store, PREFIX.splitstreams, signal),
    listed(store, PREFIX.layerVariants, signal),
    Promise.all([
      listed(store, PREFIX.images, signal),
      listed(store, PREFIX.layers, signal),
      listed(store, PREFIX.layerBlobs, signal),
    ]),
  ]);
  const [imageFiles, layerFiles, layerBlobFiles] = recordSizes;
  const sizeOf = (files: Map<string, number>, key: string): number => files.get(key) ?? 0;
  const total = (keys: readonly string[], files: Map<string, number>): Collected => ({
    count: keys.length,
    bytes: keys.reduce((n, k) => n + sizeOf(files, k), 0),
  });
  const deadImageKeys = deadImages.map((i) => imageKey(i.manifest.digest));
  const deadLayerKeys = deadLayers.map((l) => layerKey(l.diffID));
  const deadLayerBlobKeys = deadLayerBlobs.map((b) => layerBlobKey(b.digest));
  const deadSplitstreamKeys = deadLayers.map((l) => l.splitstream.key).filter((k) => splitstreamList.has(k));
  const deadVariantKeys = [...variantList.keys()].filter((key) => {
    const m = /^layer-variants\/([a-z0-9]+)\/([0-9a-f]+)\//.exec(key);
    return m !== null && deadDiffIDs.has(`${m[1]}:${m[2]}`);
  });
  const deadBlobKeys = deadBlobs.map((b) => blobKey(b.digest));

  // ---- objects (marked before anything is deleted: a dry run reports them too) --------------
  const liveLayerRecords = layers.filter((l) => liveLayers.has(l.diffID));
  const plan = await planObjects(store, objects, liveLayerRecords, repackBelow, signal);
  const damaged = plan.problems.length > 0;

  const result = {
    dryRun,
    live: {
      references: references.length,
      images: images.length - deadImages.length,
      layers: layers.length - deadLayers.length,
      blobs: {
        count: blobList.length - deadBlobs.length,
        bytes: blobList.filter((b) => liveBlobs.has(b.digest)).reduce((n, b) => n + b.size, 0),
      },
      objects: plan.live,
    },
    deleted: {
      images: total(deadImageKeys, imageFiles),
      layers: total(deadLayerKeys, layerFiles),
      layerBlobs: total(deadLayerBlobKeys, layerBlobFiles),
      splitstreams: total(deadSplitstreamKeys, splitstreamList),
      variants: total(deadVariantKeys, variantList),
      blobs: { count: deadBlobs.length, bytes: deadBlobs.reduce((n, b) => n + b.size, 0) },
      packs: damaged ? none() : plan.deadPacks,
    },
    // A damaged store keeps its packs: nothing to report there but the problems.
    repacked: damaged
      ? { packs: none(), written: none() }
      : { packs: plan.repackPacks, written: plan.repackWritten },
    deadBytesKept: damaged ? 0 : plan.deadBytesKept,
    indexFiles: { before: plan.indexFiles.length, written: 0 },
    problems: plan.problems,
  };
  if (dryRun) return result;

  // ---- sweep --------------------------------------------------------------------------------
  const remove = async (keys: readonly string[]): Promise<void> => {
    await mapLimited(keys, CONCURRENCY, (key) =>
      store.limiter.io.run(() => backend.delete(key, { signal }), signal),
    );
    await backend.sync();
  };
  await remove(deadImageKeys);
  await remove(deadLayerBlobKeys);
  await remove(deadLayerKeys);
  await remove([...deadSplitstreamKeys, ...deadVariantKeys]);
  await remove(deadBlobKeys);
  // With no pack to delete or rewrite, the index files stay as they are (the dead objects they
  // still list are in packs that stay: harmless), and no process need reload them.
  if (plan.problems.length === 0 && (plan.deadPackIds.length > 0 || plan.repackIds.size > 0)) {
    const written = await sweepObjects(store, plan, signal);
    // This process's own index places objects in the packs just deleted.
    await objects.forget();
    return { ...result, indexFiles: { before: plan.indexFiles.length, written } };
  }
  return result;
}

/** What the object sweep will do. */
interface ObjectPlan {
  readonly live: Collected;
  readonly problems: string[];
  /** Every index file listed (all replaced by the sweep). */
  readonly indexFiles: readonly string[];
  /** Each live object's location, in the order they were found. */
  readonly liveLocations: readonly { readonly hash: Uint8Array; readonly loc: ObjectLocation }[];
  readonly deadPacks: Collected;
  readonly deadPackIds: readonly string[];
  readonly repackIds: ReadonlySet<string>;
  readonly repackPacks: Collected;
  /** New packs the rewrite writes (estimated before it runs: the live bytes of the old ones). */
  readonly repackWritten: Collected;
  readonly deadBytesKept: number;
}

async function planObjects(
  store: Store,
  objects: ObjectStore,
  liveLayers: readonly LayerRecord[],
  repackBelow: number,
  signal?: AbortSignal,
): Promise<ObjectPlan> {
  const backend = store.backend;
  const problems: string[] = [];
  // Every index file, loaded into a fresh index (the first location of an object wins, as readers do).
  const indexFiles: string[] = [];
  for await (const { key } of listAll(backend, PREFIX.index, { signal }))
    if (parseIndexKey(key) !== undefined) indexFiles.push(key);
  const index = new ObjectIndex();
  const loaded = await mapLimited(indexFiles, CONCURRENCY, (key) =>
    store.limiter.io.run(() => backend.getBytes(key, { signal }), signal),
  );
  indexFiles.forEach((key, i) => {
    verifyIndexFile(key, loaded[i]!);
    index.addIndexFile(loaded[i]!, key);
  });

  const packSizes = new Map<string, number>();
  for await (const { key, size } of listAll(backend, PREFIX.packs, { signal })) {
    const id = /^packs\/([0-9a-f]{32})\.pack$/.exec(key)?.[1];
    if (id !== undefined) packSizes.set(id, size);
  }
  const listedPacks = new Set<string>();
  indexFiles.forEach((key, i) => {
    for (const id of indexPacks(loaded[i]!, key)) listedPacks.add(id);
  });

  // Live objects: every hash the live layers' splitstreams name.
  const seen = new KeyTable();
  const liveLocations: { hash: Uint8Array; loc: ObjectLocation }[] = [];
  const liveBytes = new Map<string, number>();
  for (const layer of liveLayers) {
    try {
      for await (const hash of splitstreamObjects(objects, layer, signal)) {
        if (seen.find(hash) >= 0) continue;
        seen.push(hash);
        const loc = index.get(hash);
        if (loc === undefined) {
          problems.push(
            `layer ${layer.diffID}: object sha256:${Buffer.from(hash).toString('hex')} is in no index`,
          );
          break;
        }
        liveLocations.push({ hash, loc });
        liveBytes.set(loc.pack, (liveBytes.get(loc.pack) ?? 0) + loc.stored);
      }
    } catch (err) {
      problems.push(`layer ${layer.diffID}: ${message(err)}`);
    }
    if (problems.length > 0) break;
  }

  const deadPacks = none();
  const deadPackIds: string[] = [];
  const repackIds = new Set<string>();
  const repackPacks = none();
  const repackWritten = none();
  let deadBytesKept = 0;
  for (const id of listedPacks) {
    const size = packSizes.get(id);
    if (size === undefined) continue; // listed but gone: nothing to delete (verify reports it)
    const live = liveBytes.get(id) ?? 0;
    if (live === 0) {
      deadPackIds.push(id);
      deadPacks.count++;
      deadPacks.bytes += size;
    } else if (live < size * repackBelow) {
      repackIds.add(id);
      repackPacks.count++;
      repackPacks.bytes += size;
      repackWritten.bytes += live;
    } else {
      deadBytesKept += size - live;
    }
  }
  repackWritten.count = Math.ceil(repackWritten.bytes / PACK_TARGET);
  const liveStored = liveLocations.reduce((n, l) => n + l.loc.stored, 0);
  return {
    live: { count: liveLocations.length, bytes: liveStored },
    problems,
    indexFiles,
    liveLocations,
    deadPacks,
    deadPackIds,
    repackIds,
    repackPacks,
    repackWritten,
    deadBytesKept,
  };
}

/** The object hashes a layer's splitstream names (read and checked as every read checks it). */
async function* splitstreamObjects(
  objects: ObjectStore,
  layer: LayerRecord,
  signal?: AbortSignal,
): AsyncGenerator<Uint8Array> {
  for await (const batch of recordBatches(
    { backend: objects.backend, objects },
    layer,
    signal,
    () => undefined,
  )) {
    for (const record of batch) {
      if (record.kind === 'object') yield record.hash;
      else if (record.kind === 'chunked') yield* record.hashes;
    }
  }
}

/**
 * Rewrites the packs to repack, publishes the new index files, then deletes the old index files
 * and the dead and rewritten packs. Returns the number of index files written.
 */
async function sweepObjects(store: Store, plan: ObjectPlan, signal?: AbortSignal): Promise<number> {
  const backend = store.backend;
  const io = <T>(fn: () => Promise<T>): Promise<T> => store.limiter.io.run(fn, signal);

  // 1. Live objects of the packs to rewrite, copied as stored (frames are not recompressed) into
  //    new packs, each object checked against its hash on the way.
  const moved = new Map<number, ObjectLocation>();
  const byPack = new Map<string, number[]>();
  plan.liveLocations.forEach(({ loc }, i) => {
    if (!plan.repackIds.has(loc.pack)) return;
    const list = byPack.get(loc.pack) ?? [];
    list.push(i);
    byPack.set(loc.pack, list);
  });
  let pack = newPack();
  const flush = async (): Promise<void> => {
    if (pack.used === 0) return;
    const bytes = pack.buf.subarray(0, pack.used);
    const id = pack.id;
    await io(() => backend.put(packKey(id), bytes, { signal }));
    pack = newPack();
  };
  for (const [id, rows] of byPack) {
    const data = await io(() => backend.getBytes(packKey(id), { signal }));
    for (const row of rows) {
      const { hash, loc } = plan.liveLocations[row]!;
      const stored = data.subarray(loc.offset, loc.offset + loc.stored);
      checkObject(hash, loc, stored, id);
      if (pack.used + stored.length > pack.buf.length) await flush();
      stored.copy(pack.buf, pack.used);
      moved.set(row, { ...loc, pack: pack.id, offset: pack.used });
      pack.used += stored.length;
    }
  }
  await flush();
  await backend.sync();

  // 2. One set of index files listing every live object once, at its (new) location.
  const merger = new IndexMerger(MERGED_INDEX_MAX_BYTES);
  plan.liveLocations.forEach(({ hash, loc }, row) => {
    const at = moved.get(row) ?? loc;
    merger.addEntry(hash, at.pack, at.offset, at.stored, at.raw, at.codec);
  });
  const files = merger.finish();
  const now = Date.now();
  const old = new Set(plan.indexFiles);
  for (const bytes of files) {
    const key = indexKey(now, digestHex(digestOf(bytes)));
    old.delete(key); // the same content under the same name: keep it
    await io(() => backend.put(key, bytes, { signal }));
  }
  await backend.sync();

  // 3. The old index files, then the packs no index lists any more.
  await mapLimited([...old], CONCURRENCY, (key) => io(() => deleteIfThere(store, key, signal)));
  await backend.sync();
  const packs = [...plan.deadPackIds, ...plan.repackIds].map(packKey);
  await mapLimited(packs, CONCURRENCY, (key) => io(() => deleteIfThere(store, key, signal)));
  await backend.sync();
  return files.length;
}

async function deleteIfThere(store: Store, key: string, signal?: AbortSignal): Promise<void> {
  try {
    await store.backend.delete(key, { signal });
  } catch (err) {
    if (!(err instanceof ObjectNotFoundError)) throw err;
  }
}

function newPack(): { id: string; buf: Buffer; used: number } {
  // An object is at most CHUNK_SIZE stored: a pack of PACK_TARGET plus one object, as imports write.
  return { id: randomBytes(PACK_ID_BYTES).toString('hex'), buf: Buffer.allocUnsafe(PACK_TARGET), used: 0 };
}

/** Throws unless `stored` decodes to the object `hash` names (a rewrite never copies damage). */
function checkObject(hash: Uint8Array, loc: ObjectLocation, stored: Buffer, pack: string): void {
  const raw =
    loc.codec === 'zstd' ? zstdDecompressSync(stored, { maxOutputLength: Math.max(loc.raw, 1) }) : stored;
  const actual = createHash('sha256').update(raw).digest();
  if (raw.length !== loc.raw || !actual.equals(Buffer.from(hash.buffer, hash.byteOffset, HASH_BYTES))) {
    throw new Error(
      `pack ${pack}: object sha256:${Buffer.from(hash).toString('hex')} at ${loc.offset} does not match its hash; nothing was deleted (run stevedore verify)`,
    );
  }
}
