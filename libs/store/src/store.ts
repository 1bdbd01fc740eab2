/**
 * The store: blobs, split layers (file objects in packs + splitstreams) and records, on a
 * {@link Backend}. The storage layout and every format are specified in docs/store-format.md; the
 * key layout is drawn in layout.ts and libs/store/README.md.
 *
 * Several processes may write one store at once: content is keyed by digest (writes are
 * idempotent), things that cannot be content-keyed (packs, splitstreams) get random names and are
 * unreachable until a record points at them, and each commit publishes last the record that makes
 * its work visible (objects → index → layer record; layers → image record → reference).
 */
import {
  digesterFor,
  formatReference,
  parseDigest,
  type Digest,
  type DiffID,
  type MediaType,
  type Platform,
  type Reference,
} from '@stevedore/oci/spec';
import { pipeline, Transform, type Readable } from 'node:stream';
import { listAll, type Backend, type BackendStats } from './backend/backend.ts';
import { DirectoryBackend } from './backend/directory.ts';
import type { S3BackendConfig } from './backend/s3.ts';
import {
  CorruptObjectError,
  DigestMismatchError,
  InvalidFormatError,
  MissingDependencyError,
  ObjectNotFoundError,
} from './errors.ts';
import { setGcPaceAbove, tuneHeapForStreaming } from './heap-tuning.ts';
import { importLayer, INLINE_MAX, type ImportOptions, type ImportResult, type LayerInput } from './import.ts';
import { openLayer, openLayerBlocks, readFile, type LayerBlock } from './layer-reader.ts';
import { mapLimited } from './map-limited.ts';
import {
  blobKey,
  FORMAT_KEY,
  imageKey,
  layerBlobKey,
  layerKey,
  PREFIX,
  referenceKey,
  referenceName,
} from './layout.ts';
import { sharedLimiter, type Limiter } from './limiter.ts';
import { compactIndex, type CompactOptions, type CompactResult } from './compaction.ts';
import { removeOrphans, type RemoveOrphansOptions, type RemoveOrphansResult } from './orphans.ts';
import { collectGarbage, type CollectOptions, type CollectResult } from './gc.ts';
import { CHUNK_SIZE, ObjectStore, PACK_TARGET } from './objects.ts';
import {
  decodeImageRecord,
  decodeLayerBlobRecord,
  decodeLayerRecord,
  decodeReferenceRecord,
  encodeRecord,
  SCHEMA_VERSION,
  type BlobDescriptor,
  type ImageLayer,
  type ImageRecord,
  type LayerBlobRecord,
  type LayerRecord,
  type ReferenceRecord,
} from './records.ts';
import {
  decodeLayerVariantRecord,
  layerVariantKey,
  type LayerVariantRecord,
  type VariantRecipe,
} from './variants.ts';

/**
 * What happens to a compressed layer blob once its layer is split and committed: `keep` it (exports
 * and a mirror can hand out the original bytes) or `drop` it (maximum dedup).
 */
export type BlobPolicy = 'keep' | 'drop';

export type BackendConfig =
  { readonly kind: 'directory'; readonly path: string } | ({ readonly kind: 's3' } & S3BackendConfig);

export interface StoreConfig {
  /** Where the store lives: a backend config, or a backend instance. */
  readonly backend: BackendConfig | Backend;
  /** Default `keep`. */
  readonly blobPolicy?: BlobPolicy;
  /** Default: the process-wide {@link sharedLimiter}. */
  readonly limiter?: Limiter;
  /**
   * RSS above which rebuilds pace V8's GCs (heap-tuning.ts; 0: never). Process-wide: the last
   * store opened with it sets it. Default 192 MiB (DEFAULT_GC_PACE_ABOVE_BYTES).
   */
  readonly gcPaceAboveBytes?: number;
}

/** The format marker at {@link FORMAT_KEY}. */
interface FormatMarker {
  readonly format: 'stevedore-store';
  readonly version: 1;
  readonly chunkSize: number;
  readonly packTarget: number;
  readonly inlineMax: number;
  readonly createdAt: string;
}

const FORMAT_NAME = 'stevedore-store';
const FORMAT_VERSION = 1;
/** Records read at once when listing. */
const LIST_READ_CONCURRENCY = 16;

export interface BlobInfo {
  readonly digest: Digest;
  readonly size: number;
}

/** Input of {@link Store.commitLayer}: a compressed blob and the layer it decompresses to. */
export interface LayerBlob {
  readonly digest: Digest;
  readonly diffID: DiffID;
  readonly size: number;
  readonly mediaType: MediaType;
}

/** Input of {@link Store.putImage}. */
export interface NewImage {
  readonly manifest: BlobDescriptor;
  readonly config: BlobDescriptor;
  readonly platform?: Platform;
  readonly layers: readonly ImageLayer[];
}

/** Everything committed in the store, to rebuild derived state (Redis) from. */
export interface ReindexResult {
  readonly layers: LayerRecord[];
  readonly layerBlobs: LayerBlobRecord[];
  readonly images: ImageRecord[];
  readonly references: ReferenceRecord[];
  readonly blobs: BlobInfo[];
}

interface Signal {
  readonly signal?: AbortSignal;
}

/** `source` piped through a transform checking the digest (and size) at the end. */
function verifying(
  source: Readable,
  digest: Digest,
  size: number | undefined,
  onMismatch: (actual: string) => Error,
): Readable {
  const d = digesterFor(digest);
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      d.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      const actual = d.digest();
      if (actual !== digest) callback(onMismatch(actual));
      else if (size !== undefined && d.size !== size)
        callback(onMismatch(`${actual} (${d.size} bytes, expected ${size})`));
      else callback();
    },
  });
  // Errors of `source` reach `check` (destroyed by pipeline) and whoever reads it.
  pipeline(source, check, () => {});
  return check;
}

/** A store opened on a backend. Create with {@link openStore}. */
export class Store {
  readonly backend: Backend;
  readonly blobPolicy: BlobPolicy;
  readonly limiter: Limiter;
  readonly #objects: ObjectStore;

  constructor(backend: Backend, options: { blobPolicy?: BlobPolicy; limiter?: Limiter } = {}) {
    this.backend = backend;
    this.blobPolicy = options.blobPolicy ?? 'keep';
    this.limiter = options.limiter ?? sharedLimiter();
    this.#objects = new ObjectStore(backend, this.limiter);
  }

  /** Request and byte counters of the backend. */
  get stats(): BackendStats {
    return this.backend.stats;
  }

  // ---- blobs -------------------------------------------------------------------------------

  async hasBlob(digest: Digest, options: Signal = {}): Promise<boolean> {
    return (await this.backend.head(blobKey(digest), options)) !== undefined;
  }

  /**
   * Stores a blob if absent, verifying its digest (and `size` when given) before it becomes
   * visible. A stream is consumed, or destroyed when the blob is already there.
   */
  async putBlob(
    digest: Digest,
    data: Uint8Array | Readable,
    options: Signal & {
      size?: number;
      /**
       * The stream checks its own bytes against `digest` (and `size`) and fails before it ends
       * when they differ, as the registry client's blob streams do: the store publishes only a
       * stream that ended, so it does not hash the bytes a second time.
       */
      verifiedBySource?: boolean;
    } = {},
  ): Promise<{ written: boolean }> {
    const key = blobKey(digest);
    if (await this.hasBlob(digest, options)) {
      if (!(data instanceof Uint8Array)) data.destroy();
      return { written: false };
    }
    const mismatch = (actual: string): Error => new DigestMismatchError(`blob ${digest}`, digest, actual);
    if (data instanceof Uint8Array) {
      const d = digesterFor(digest);
      d.update(data);
      if (d.digest() !== digest) throw mismatch(d.digest());
      if (options.size !== undefined && data.length !== options.size)
        throw mismatch(`${d.digest()} (${data.length} bytes)`);
      await this.limiter.io.run(() => this.backend.put(key, data, options), options.signal);
    } else {
      const body = options.verifiedBySource === true ? data : verifying(data, digest, options.size, mismatch);
      // Not under limiter.io, like the splitstream's upload: a stream lasts as long as its source
      // and is paced by it. A blob fetched while its layer is split waits for that split's pack
      // writes; holding I/O slots meanwhile could starve them.
      await this.backend.put(key, body, options);
    }
    await this.backend.sync();
    return { written: true };
  }

  /**
   * The blob as a stream; errors with CorruptObjectError at the end if it does not match.
   * `verify: false` skips that check, for a caller that verifies what it makes of the bytes (the
   * split checks the layer's tar against its diffID): one sha256 pass less over the blob.
   */
  async getBlob(digest: Digest, options: Signal & { verify?: boolean } = {}): Promise<Readable> {
    const key = blobKey(digest);
    const raw = await this.backend.get(key, options.signal === undefined ? {} : { signal: options.signal });
    if (options.verify === false) return raw;
    return verifying(
      raw,
      digest,
      undefined,
      (actual) => new CorruptObjectError(key, `content hashes to ${actual}`),
    );
  }

  /** A small blob (manifest, config) in memory, verified. */
  async getBlobBytes(digest: Digest, options: Signal = {}): Promise<Buffer> {
    const key = blobKey(digest);
    const bytes = await this.backend.getBytes(key, options);
    const d = digesterFor(digest);
    d.update(bytes);
    if (d.digest() !== digest) throw new CorruptObjectError(key, `content hashes to ${d.digest()}`);
    return bytes;
  }

  async deleteBlob(digest: Digest, options: Signal = {}): Promise<void> {
    await this.backend.delete(blobKey(digest), options);
    await this.backend.sync();
  }

  async listBlobs(options: Signal = {}): Promise<BlobInfo[]> {
    const out: BlobInfo[] = [];
    for await (const { key, size } of listAll(this.backend, PREFIX.blobs, options)) {
      const [alg, hex] = key.slice(PREFIX.blobs.length).split('/');
      out.push({ digest: parseDigest(`${alg}:${hex}`), size });
    }
    return out;
  }

  // ---- layers ------------------------------------------------------------------------------

  /**
   * Splits an uncompressed layer tar into the store and publishes its layer record. Returns early
   * (destroying or closing `tar`) when `expectedDiffID` is given and already stored; fails,
   * publishing nothing, on a malformed or truncated tar or a diffID mismatch. An iterable's chunks
   * are read in place (its producer may reuse their memory): see {@link LayerInput}.
   */
  async importLayer(tar: LayerInput, options: ImportOptions = {}): Promise<ImportResult> {
    return importLayer(
      {
        backend: this.backend,
        objects: this.#objects,
        limiter: this.limiter,
        readLayer: (diffID, signal) => this.getLayer(diffID, { signal }),
      },
      tar,
      options,
    );
  }

  async getLayer(diffID: DiffID, options: Signal = {}): Promise<LayerRecord | undefined> {
    return this.#getRecord(layerKey(diffID), decodeLayerRecord, options);
  }

  async hasLayer(diffID: DiffID, options: Signal = {}): Promise<boolean> {
    return (await this.backend.head(layerKey(diffID), options)) !== undefined;
  }

  async listLayers(options: Signal = {}): Promise<LayerRecord[]> {
    return this.#listRecords(PREFIX.layers, decodeLayerRecord, options);
  }

  /** The exact tar of a stored layer; the stream errors if the rebuilt bytes do not hash to `diffID`. */
  async openLayer(diffID: DiffID, options: Signal = {}): Promise<Readable> {
    const layer = await this.#requireLayer(diffID, options);
    return openLayer({ backend: this.backend, objects: this.#objects }, layer, options.signal);
  }

  /**
   * Gets ready to read layers (openLayer, openLayerBlocks, readFile) or import them: starts the
   * limiter's worker threads and loads the object index, which the first read or import would
   * otherwise wait for (100-150 ms for the threads). Optional: for a caller with other work to do
   * meanwhile (an export planning its archive, a worker service starting).
   */
  async prepareReads(signal?: AbortSignal): Promise<void> {
    this.limiter.pool.warm();
    await this.#objects.refresh(signal);
  }

  /**
   * The exact tar of a layer as blocks lent in place (layer-reader.ts {@link LayerBlock}): for a
   * borrower that always drains, such as a file being written; release every block.
   */
  async openLayerBlocks(diffID: DiffID, options: Signal = {}): Promise<AsyncGenerator<LayerBlock>> {
    const layer = await this.#requireLayer(diffID, options);
    return openLayerBlocks({ backend: this.backend, objects: this.#objects }, layer, options.signal);
  }

  /** One regular file of a layer (the last entry with that path; hard links followed). */
  async readFile(diffID: DiffID, path: string, options: Signal = {}): Promise<Readable> {
    const layer = await this.#requireLayer(diffID, options);
    return readFile({ backend: this.backend, objects: this.#objects }, layer, path, options.signal);
  }

  /**
   * Records that compressed blob `blob.digest` is layer `blob.diffID` (which must be imported), then
   * applies the blob policy (`drop` deletes the compressed blob).
   */
  async commitLayer(
    blob: LayerBlob,
    options: Signal & { policy?: BlobPolicy } = {},
  ): Promise<LayerBlobRecord> {
    if (!(await this.hasLayer(blob.diffID, options))) {
      throw new MissingDependencyError(
        `cannot commit blob ${blob.digest}: layer ${blob.diffID} is not in the store`,
      );
    }
    const record: LayerBlobRecord = {
      schemaVersion: SCHEMA_VERSION,
      digest: blob.digest,
      diffID: blob.diffID,
      size: blob.size,
      mediaType: blob.mediaType,
      createdAt: new Date().toISOString(),
    };
    await this.#putRecord(layerBlobKey(blob.digest), record, options);
    if ((options.policy ?? this.blobPolicy) === 'drop') await this.deleteBlob(blob.digest, options);
    return record;
  }

  async getLayerBlob(digest: Digest, options: Signal = {}): Promise<LayerBlobRecord | undefined> {
    return this.#getRecord(layerBlobKey(digest), decodeLayerBlobRecord, options);
  }

  async listLayerBlobs(options: Signal = {}): Promise<LayerBlobRecord[]> {
    return this.#listRecords(PREFIX.layerBlobs, decodeLayerBlobRecord, options);
  }

  /**
   * Records what layer `variant.diffID` (which must be stored) compresses to with a deterministic
   * recipe (variants.ts). Idempotent: the same recipe always gives the same digest and size.
   */
  async putLayerVariant(
    variant: Omit<LayerVariantRecord, 'schemaVersion' | 'createdAt'>,
    options: Signal = {},
  ): Promise<LayerVariantRecord> {
    if (!(await this.hasLayer(variant.diffID, options))) {
      throw new MissingDependencyError(
        `cannot record a ${variant.compression} variant: layer ${variant.diffID} is not in the store`,
      );
    }
    const record: LayerVariantRecord = {
      schemaVersion: SCHEMA_VERSION,
      diffID: variant.diffID,
      compression: variant.compression,
      level: variant.level,
      codec: variant.codec,
      digest: variant.digest,
      size: variant.size,
      createdAt: new Date().toISOString(),
    };
    await this.#putRecord(layerVariantKey(variant.diffID, variant), record, options);
    return record;
  }

  /** The variant of layer `diffID` made with `recipe`, if one was recorded. */
  async getLayerVariant(
    diffID: DiffID,
    recipe: VariantRecipe,
    options: Signal = {},
  ): Promise<LayerVariantRecord | undefined> {
    return this.#getRecord(layerVariantKey(diffID, recipe), decodeLayerVariantRecord, options);
  }

  // ---- images and references ---------------------------------------------------------------

  /** Publishes an image record; its manifest and config blobs and its layers must be stored. */
  async putImage(image: NewImage, options: Signal = {}): Promise<ImageRecord> {
    const missing: string[] = [];
    for (const d of [image.manifest.digest, image.config.digest]) {
      if (!(await this.hasBlob(d, options))) missing.push(`blob ${d}`);
    }
    for (const l of image.layers) {
      if (!(await this.hasLayer(l.diffID, options))) missing.push(`layer ${l.diffID}`);
    }
    if (missing.length > 0) {
      throw new MissingDependencyError(
        `cannot publish image ${image.manifest.digest}: missing ${missing.join(', ')}`,
      );
    }
    const record: ImageRecord = {
      schemaVersion: SCHEMA_VERSION,
      manifest: image.manifest,
      config: image.config,
      ...(image.platform === undefined ? {} : { platform: image.platform }),
      layers: image.layers,
      createdAt: new Date().toISOString(),
    };
    await this.#putRecord(imageKey(image.manifest.digest), record, options);
    return record;
  }

  async getImage(manifestDigest: Digest, options: Signal = {}): Promise<ImageRecord | undefined> {
    return this.#getRecord(imageKey(manifestDigest), decodeImageRecord, options);
  }

  async listImages(options: Signal = {}): Promise<ImageRecord[]> {
    return this.#listRecords(PREFIX.images, decodeImageRecord, options);
  }

  async deleteImage(manifestDigest: Digest, options: Signal = {}): Promise<void> {
    await this.backend.delete(imageKey(manifestDigest), options);
    await this.backend.sync();
  }

  /**
   * Points reference `ref` at `digest` (a manifest or index blob that must be stored). Published
   * last in a pull: everything it leads to is already visible. A tag reference may move; a digest
   * reference (`registry/repository@sha256:…`, a pull by digest) only ever points at its own
   * digest, and a reference with a digest (with or without a tag) refuses any other one
   * ({@link DigestMismatchError}). A reference with both is stored as its tag (layout.ts
   * {@link referenceKey}).
   */
  async setReference(ref: Reference, digest: Digest, options: Signal = {}): Promise<ReferenceRecord> {
    const key = referenceKey(ref);
    const name = referenceName(ref);
    if (ref.digest !== undefined && ref.digest !== digest) {
      throw new DigestMismatchError(
        `cannot point ${formatReference(ref)} at another digest than its own`,
        ref.digest,
        digest,
      );
    }
    if (!(await this.hasBlob(digest, options))) {
      throw new MissingDependencyError(`cannot point ${name} at ${digest}: blob not in the store`);
    }
    const record: ReferenceRecord = {
      schemaVersion: SCHEMA_VERSION,
      reference: name,
      digest,
      updatedAt: new Date().toISOString(),
    };
    await this.#putRecord(key, record, options);
    return record;
  }

  async getReference(ref: Reference, options: Signal = {}): Promise<ReferenceRecord | undefined> {
    return this.#getRecord(referenceKey(ref), decodeReferenceRecord, options);
  }

  async listReferences(options: Signal = {}): Promise<ReferenceRecord[]> {
    return this.#listRecords(PREFIX.refs, decodeReferenceRecord, options);
  }

  async deleteReference(ref: Reference, options: Signal = {}): Promise<void> {
    await this.backend.delete(referenceKey(ref), options);
    await this.backend.sync();
  }

  /** Enumerates everything committed, to rebuild derived state from the store alone. */
  async reindex(options: Signal = {}): Promise<ReindexResult> {
    const [layers, layerBlobs, images, references, blobs] = await Promise.all([
      this.listLayers(options),
      this.listLayerBlobs(options),
      this.listImages(options),
      this.listReferences(options),
      this.listBlobs(options),
    ]);
    return { layers, layerBlobs, images, references, blobs };
  }

  /**
   * Merges the index files older than `minAgeMs` into a few large ones and deletes them, so that
   * processes opening the store load a few files instead of one per import (compaction.ts). Safe
   * while other processes import and read; two compactions at once: one may stop with
   * IndexCompactionConflictError, having changed nothing.
   */
  async compactIndex(options: CompactOptions = {}): Promise<CompactResult> {
    return compactIndex(this.#objects, options);
  }

  /**
   * Deletes what crashed imports and puts left behind, once older than `minAgeMs` (default a day;
   * it must exceed the longest import): packs no index file lists, splitstreams no layer record
   * names, the backend's temporary files (orphans.ts). Safe while other processes import and read.
   */
  async removeOrphans(options: RemoveOrphansOptions = {}): Promise<RemoveOrphansResult> {
    return removeOrphans(
      {
        backend: this.backend,
        limiter: this.limiter,
        listLayers: (signal) => this.listLayers({ signal }),
      },
      options,
    );
  }

  /**
   * Deletes what no reference (and no digest in `roots`) reaches, and rewrites packs that are
   * mostly garbage (gc.ts). Must run alone: nothing may import, commit or read meanwhile (the
   * pipeline's gc closes its gate first). `dryRun` reports and changes nothing.
   */
  async collectGarbage(options: CollectOptions = {}): Promise<CollectResult> {
    return collectGarbage({ store: this, objects: this.#objects }, options);
  }

  /**
   * Forgets the object index loaded so far (reloaded on the next import or read): for a process
   * that learns another one collected garbage in the store. Call with no import or read running.
   */
  async forgetObjectIndex(): Promise<void> {
    await this.#objects.forget();
  }

  /** Syncs and releases the backend (the shared limiter stays). */
  async close(): Promise<void> {
    await this.backend.close();
  }

  async #requireLayer(diffID: DiffID, options: Signal): Promise<LayerRecord> {
    const layer = await this.getLayer(diffID, options);
    if (layer === undefined)
      throw new ObjectNotFoundError(layerKey(diffID), `layer ${diffID} is not in the store`);
    return layer;
  }

  async #getRecord<T>(
    key: string,
    decode: (b: Uint8Array, key: string) => T,
    options: Signal,
  ): Promise<T | undefined> {
    let bytes: Buffer;
    try {
      bytes = await this.limiter.io.run(() => this.backend.getBytes(key, options), options.signal);
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return undefined;
      throw err;
    }
    return decode(bytes, key);
  }

  async #putRecord(key: string, record: object, options: Signal): Promise<void> {
    await this.limiter.io.run(() => this.backend.put(key, encodeRecord(record), options), options.signal);
    await this.backend.sync();
  }

  async #listRecords<T>(
    prefix: string,
    decode: (b: Uint8Array, key: string) => T,
    options: Signal,
  ): Promise<T[]> {
    const keys: string[] = [];
    for await (const { key } of listAll(this.backend, prefix, options))
      if (key.endsWith('.json')) keys.push(key);
    const records = await mapLimited(keys, LIST_READ_CONCURRENCY, (key) =>
      this.#getRecord(key, decode, options),
    );
    // A record deleted between the list and the read is simply not there any more.
    return records.filter((r) => r !== undefined);
  }
}

/**
 * The S3 backend, loaded on first use: the AWS SDK adds about 30 MiB to a process's memory, which
 * a process on a directory store never needs.
 */
export async function openS3Backend(config: S3BackendConfig): Promise<Backend> {
  const { S3Backend } = await import('./backend/s3.ts');
  return new S3Backend(config);
}

/** Opens (creating when empty) a store; checks the format marker. */
export async function openStore(config: StoreConfig): Promise<Store> {
  // A process that opens a store streams layers through it: size V8's heap for that.
  tuneHeapForStreaming();
  if (config.gcPaceAboveBytes !== undefined) setGcPaceAbove(config.gcPaceAboveBytes);
  const b = config.backend;
  const backend: Backend =
    'put' in b ? b : b.kind === 'directory' ? await DirectoryBackend.open(b.path) : await openS3Backend(b);
  await checkFormat(backend);
  return new Store(backend, { blobPolicy: config.blobPolicy, limiter: config.limiter });
}

async function checkFormat(backend: Backend): Promise<void> {
  let bytes: Buffer;
  try {
    bytes = await backend.getBytes(FORMAT_KEY);
  } catch (err) {
    if (!(err instanceof ObjectNotFoundError)) throw err;
    const marker: FormatMarker = {
      format: FORMAT_NAME,
      version: FORMAT_VERSION,
      chunkSize: CHUNK_SIZE,
      packTarget: PACK_TARGET,
      inlineMax: INLINE_MAX,
      createdAt: new Date().toISOString(),
    };
    await backend.put(FORMAT_KEY, encodeRecord(marker));
    await backend.sync();
    return;
  }
  let marker: Partial<FormatMarker>;
  try {
    marker = JSON.parse(bytes.toString('utf8')) as Partial<FormatMarker>;
  } catch (err) {
    throw new InvalidFormatError(`${backend.description}/${FORMAT_KEY}: invalid JSON`, { cause: err });
  }
  if (marker.format !== FORMAT_NAME || marker.version !== FORMAT_VERSION) {
    throw new InvalidFormatError(
      `${backend.description}/${FORMAT_KEY}: not a ${FORMAT_NAME} v${FORMAT_VERSION} store (${JSON.stringify(marker.format)} v${JSON.stringify(marker.version)})`,
    );
  }
}
