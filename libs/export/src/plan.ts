/**
 * Planning an export: everything about the archive is decided before its first byte. The targets
 * are resolved, every record and blob the archive needs is checked, each layer's member size and
 * digest is known (blob size, tar size, or the layer's variant record), and the metadata (configs,
 * manifests, manifest.json or index.json) is built. So the archive's exact size is known in advance
 * when it is not compressed as a whole, and most bad input fails before anything is written.
 *
 * Layers recompressed with gzip or zstd for the first time have no variant record: the plan
 * compresses them once into a counting, hashing sink (in parallel, no temporary file), records the
 * variants, and the export then streams in one pass (docs/export.md "What is one pass").
 */
import { availableParallelism } from 'node:os';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  Digester,
  digestHex,
  digestOf,
  formatPlatform,
  isNonDistributable,
  layerCompression,
  OCI_LAYER_NONDISTRIBUTABLE,
  OCI_LAYER_NONDISTRIBUTABLE_GZIP,
  OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER,
  OCI_LAYER_GZIP,
  OCI_LAYER_ZSTD,
  OCI_MANIFEST,
  parseImageConfig,
  parseManifest,
  serializeManifest,
  type DiffID,
  type Digest,
  type ImageIndex,
  type ImageManifest,
  type MediaType,
  type Descriptor,
} from '@stevedore/oci/spec';
import type { ImageRecord, LayerRecord, VariantCompression, VariantRecipe } from '@stevedore/store';
import { mapLimited } from '@stevedore/store';
import { compressorFor, recipeOf } from './codec.ts';
import { ExportRequestError, IncompleteImageError } from './errors.ts';
import {
  archiveContentType,
  type ArchiveCompression,
  type ExportFormat,
  type LayerCompressionChoice,
} from './options.ts';
import {
  resolveTargets,
  type ExportStore,
  type ExportTarget,
  type PlatformChoice,
  type ResolvedTarget,
} from './resolve.ts';
import { tarSize } from './tar-layout.ts';

/**
 * Layers prepared at once (rebuilt from the store and compressed): compression is CPU-bound and
 * zlib's async streams run on the libuv pool (4 threads by default), so one per core, at least two
 * (one being written while the next is prepared) and at most four (the pool's size).
 */
export const DEFAULT_CONCURRENCY = Math.min(4, Math.max(2, availableParallelism()));

/** Annotation of OCI index entries naming the image (image-layout.md). */
export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** What `ctr images import` (and docker 25's `docker load`) read the image name from. */
export const CONTAINERD_NAME_ANNOTATION = 'io.containerd.image.name';
export const IMAGE_LAYOUT_VERSION = '1.0.0';

export interface ExportRequest {
  readonly targets: readonly ExportTarget[];
  readonly format: ExportFormat;
  readonly compression: LayerCompressionChoice;
  /** Default `none`. */
  readonly archiveCompression?: ArchiveCompression;
  /** Default: every stored platform (oci), the only or the host's image (docker). */
  readonly platform?: PlatformChoice;
}

/** Where a layer member's bytes come from. */
export type LayerSource =
  | { readonly kind: 'blob' }
  | { readonly kind: 'tar' }
  | { readonly kind: 'compressed'; readonly recipe: VariantRecipe; readonly tarSize: number };

/** A layer in the archive: written once however many images share it. */
export interface LayerMember {
  readonly kind: 'layer';
  readonly name: string;
  readonly diffID: DiffID;
  /** Digest of the member's bytes (the original blob, the tar, or the recompressed tar). */
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: MediaType;
  readonly source: LayerSource;
}

/** Metadata built in memory: configs, manifests, manifest.json, index.json, oci-layout. */
export interface BytesMember {
  readonly kind: 'bytes';
  readonly name: string;
  readonly bytes: Uint8Array;
}

export type Member = LayerMember | BytesMember;

export interface PlannedImage {
  /** Digest of the manifest in the archive (the stored one for `original`, else a new one). */
  readonly manifestDigest: Digest;
  readonly sourceManifestDigest: Digest;
  readonly configDigest: Digest;
  readonly platform: string | undefined;
  /** Names (`registry/repository:tag`) the image is exported under. */
  readonly names: readonly string[];
  readonly layers: readonly LayerMember[];
}

export interface ExportPlan {
  readonly format: ExportFormat;
  readonly compression: LayerCompressionChoice;
  readonly archiveCompression: ArchiveCompression;
  readonly targets: readonly ResolvedTarget[];
  readonly images: readonly PlannedImage[];
  /** In write order: layers, then configs and manifests, then the index (written last). */
  readonly members: readonly Member[];
  /** Size of the tar (before whole-archive compression). */
  readonly tarSize: number;
  /** Exact archive size when known in advance: always, unless the archive is compressed. */
  readonly size: number | undefined;
  readonly contentType: string;
  /** Layers compressed by the counting pass because no variant record existed. */
  readonly variantsComputed: number;
}

export interface PlanOptions {
  readonly signal?: AbortSignal;
  /** Layers compressed at once by the counting pass; default {@link DEFAULT_CONCURRENCY}. */
  readonly concurrency?: number;
}

const OCI_LAYER_TYPES: { readonly [C in 'none' | VariantCompression]: MediaType } = {
  none: OCI_LAYER,
  gzip: OCI_LAYER_GZIP,
  zstd: OCI_LAYER_ZSTD,
};
/** The OCI media type of a stored layer blob (Docker's gzip types are OCI's gzip types). */
function ociLayerType(mediaType: MediaType): MediaType {
  const compression = layerCompression(mediaType);
  if (!isNonDistributable(mediaType)) return OCI_LAYER_TYPES[compression];
  switch (compression) {
    case 'none':
      return OCI_LAYER_NONDISTRIBUTABLE;
    case 'gzip':
      return OCI_LAYER_NONDISTRIBUTABLE_GZIP;
    case 'zstd':
      return OCI_LAYER_NONDISTRIBUTABLE_ZSTD;
  }
}

const LAYER_SUFFIX: { readonly [C in 'none' | VariantCompression]: string } = {
  none: '.tar',
  gzip: '.tar.gz',
  zstd: '.tar.zst',
};

/** A sink that only hashes and counts: the counting pass writes nothing anywhere. */
function digestSink(digester: Digester): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      digester.update(chunk);
      callback();
    },
  });
}

/**
 * Compresses layer `layer` with `recipe` into a hashing sink and records the variant. For layers
 * exported recompressed for the first time.
 */
export async function recordVariant(
  store: ExportStore,
  layer: LayerRecord,
  recipe: VariantRecipe,
  signal?: AbortSignal,
): Promise<{ digest: Digest; size: number }> {
  const digester = new Digester();
  const tar = await store.openLayer(layer.diffID, { signal });
  try {
    await pipeline([tar, ...compressorFor(recipe), digestSink(digester)], { signal });
  } catch (err) {
    throw new Error(`compressing layer ${layer.diffID} with ${recipe.compression} failed`, { cause: err });
  }
  const variant = { digest: digester.digest(), size: digester.size };
  await store.putLayerVariant({ ...recipe, diffID: layer.diffID, ...variant }, { signal });
  return variant;
}

function describe(image: ImageRecord, target: ResolvedTarget): string {
  return `image ${image.manifest.digest} ("${target.input}")`;
}

/** A blob in memory (configs, manifests), verified by the store; a missing one names what it is. */
async function readBlob(
  store: ExportStore,
  digest: Digest,
  what: string,
  signal?: AbortSignal,
): Promise<Buffer> {
  try {
    return await store.getBlobBytes(digest, { signal });
  } catch (err) {
    throw new IncompleteImageError(`${what}: blob ${digest} cannot be read from the store`, { cause: err });
  }
}

/** `blobs/<alg>/<hex>` of an OCI image layout. */
export function blobName(digest: Digest): string {
  return `blobs/${digest.slice(0, digest.indexOf(':'))}/${digestHex(digest)}`;
}

/** A layer's member name: OCI layouts name blobs by digest; docker archives `<hex>.tar[.gz|.zst]`. */
function layerName(format: ExportFormat, digest: Digest, kind: 'none' | VariantCompression): string {
  return format === 'oci' ? blobName(digest) : `${digestHex(digest)}${LAYER_SUFFIX[kind]}`;
}

/**
 * The OCI manifest of an image whose layers are recompressed: the same config (so the same image
 * ID and diffIDs), the new layer descriptors, the source manifest's annotations.
 */
function ociManifest(source: Uint8Array, record: ImageRecord, layers: readonly LayerMember[]): Uint8Array {
  const parsed = parseManifest(source);
  const annotations = parsed.kind === 'manifest' ? parsed.manifest.annotations : undefined;
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: record.config.digest, size: record.config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    ...(annotations === undefined ? {} : { annotations }),
  };
  return serializeManifest(manifest);
}

/**
 * The index blob of a multi-platform target: the stored one when it is exported as is (original
 * layers, every listed manifest exported), else a new OCI index of the exported images.
 */
function indexFor(
  target: ResolvedTarget & { index: NonNullable<ResolvedTarget['index']> },
  compression: LayerCompressionChoice,
  manifests: ReadonlyMap<Digest, Descriptor>,
): { mediaType: MediaType; bytes: Uint8Array } {
  const listed = target.index.index.manifests;
  const exact =
    compression === 'original' &&
    target.index.mediaType === OCI_INDEX &&
    listed.every((d) => manifests.get(d.digest)?.digest === d.digest);
  if (exact) {
    return { mediaType: target.index.mediaType, bytes: target.index.bytes };
  }
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: target.images.map((i) => manifests.get(i.manifest.digest)!),
  };
  return { mediaType: OCI_INDEX, bytes: serializeManifest(index) };
}

function layerMember(
  format: ExportFormat,
  compression: LayerCompressionChoice,
  layer: ImageRecord['layers'][number],
  record: LayerRecord,
  variant: { digest: Digest; size: number; recipe: VariantRecipe } | undefined,
): LayerMember {
  const common = { kind: 'layer', diffID: layer.diffID } as const;
  switch (compression) {
    case 'original':
      return {
        ...common,
        name: layerName(format, layer.digest, layerCompression(layer.mediaType)),
        digest: layer.digest,
        size: layer.size,
        // OCI layouts describe the same blob with the OCI type (skopeo skips Docker types there).
        mediaType: ociLayerType(layer.mediaType),
        source: { kind: 'blob' },
      };
    case 'none':
      return {
        ...common,
        name: layerName(format, layer.diffID, 'none'),
        digest: layer.diffID,
        size: record.size,
        mediaType: OCI_LAYER,
        source: { kind: 'tar' },
      };
    case 'gzip':
    case 'zstd':
      if (variant === undefined) throw new Error(`layer ${layer.diffID}: no ${compression} variant planned`);
      return {
        ...common,
        name: layerName(format, variant.digest, compression),
        digest: variant.digest,
        size: variant.size,
        mediaType: OCI_LAYER_TYPES[compression],
        source: { kind: 'compressed', recipe: variant.recipe, tarSize: record.size },
      };
  }
}

/** Resolves, checks and lays out an export; see the module comment. */
export async function planExport(
  store: ExportStore,
  request: ExportRequest,
  options: PlanOptions = {},
): Promise<ExportPlan> {
  const { signal } = options;
  // The export will read layers: their worker threads and object index get ready while the plan is
  // made (a failure there shows again, and is reported, at the first read).
  store.prepareReads().catch(() => undefined);
  const { format, compression } = request;
  const archiveCompression = request.archiveCompression ?? 'none';
  const targets = await resolveTargets(store, request.targets, {
    format,
    ...(request.platform === undefined ? {} : { platform: request.platform }),
    ...(signal === undefined ? {} : { signal }),
  });
  if (compression === 'original' && store.blobPolicy === 'drop') {
    throw new ExportRequestError(
      'compression "original" needs the original layer blobs, but this store drops them (blob policy drop): export with compression gzip, zstd or none',
    );
  }

  // Each image once, whichever targets lead to it, with every name it is exported under.
  interface Entry {
    readonly record: ImageRecord;
    readonly target: ResolvedTarget;
    readonly names: string[];
    readonly tags: string[];
  }
  const images = new Map<Digest, Entry>();
  for (const target of targets) {
    for (const record of target.images) {
      const entry = images.get(record.manifest.digest) ?? { record, target, names: [], tags: [] };
      if (target.name !== undefined && !entry.names.includes(target.name)) {
        entry.names.push(target.name);
        entry.tags.push(target.familiarName ?? target.name);
      }
      images.set(record.manifest.digest, entry);
    }
  }

  // Records and blobs, checked before any byte: configs and manifests are read (and verified).
  const configs = new Map<Digest, Buffer>();
  const sourceManifests = new Map<Digest, Buffer>();
  const layerRecords = new Map<DiffID, LayerRecord>();
  for (const { record, target } of images.values()) {
    const what = describe(record, target);
    const config = await readBlob(store, record.config.digest, `config of ${what}`, signal);
    const diffIDs = parseImageConfig(config).rootfs.diff_ids;
    if (diffIDs.length !== record.layers.length || diffIDs.some((d, i) => d !== record.layers[i]!.diffID)) {
      throw new IncompleteImageError(`${what}: the image record's layers do not match its config's diff_ids`);
    }
    configs.set(record.config.digest, config);
    sourceManifests.set(
      record.manifest.digest,
      await readBlob(store, record.manifest.digest, `manifest of ${what}`, signal),
    );
    for (const layer of record.layers) {
      if (!layerRecords.has(layer.diffID)) {
        const stored = await store.getLayer(layer.diffID, { signal });
        if (stored === undefined) {
          throw new IncompleteImageError(`${what}: layer ${layer.diffID} is not in the store`);
        }
        if ((await store.backend.head(stored.splitstream.key, { signal })) === undefined) {
          throw new IncompleteImageError(
            `${what}: layer ${layer.diffID} is missing its splitstream ${stored.splitstream.key}`,
          );
        }
        layerRecords.set(layer.diffID, stored);
      }
      if (compression === 'original' && !(await store.hasBlob(layer.digest, { signal }))) {
        throw new ExportRequestError(
          `${what}: the original blob ${layer.digest} of layer ${layer.diffID} is not in the store (a store with blob policy drop keeps none): export with compression gzip, zstd or none`,
        );
      }
    }
  }

  // Variants: recorded ones are trusted (and verified while written); missing ones are computed.
  const variants = new Map<DiffID, { digest: Digest; size: number; recipe: VariantRecipe }>();
  let variantsComputed = 0;
  if (compression === 'gzip' || compression === 'zstd') {
    const recipe = recipeOf(compression);
    const missing: LayerRecord[] = [];
    for (const layer of layerRecords.values()) {
      const known = await store.getLayerVariant(layer.diffID, recipe, { signal });
      if (known === undefined) missing.push(layer);
      else variants.set(layer.diffID, { digest: known.digest, size: known.size, recipe });
    }
    const computed = await mapLimited(missing, options.concurrency ?? DEFAULT_CONCURRENCY, (layer) =>
      recordVariant(store, layer, recipe, signal),
    );
    missing.forEach((layer, i) => variants.set(layer.diffID, { ...computed[i]!, recipe }));
    variantsComputed = missing.length;
  }

  const layerMembers = new Map<string, LayerMember>();
  const metadata = new Map<string, BytesMember>();
  const addBytes = (name: string, bytes: Uint8Array): void => {
    if (!metadata.has(name)) metadata.set(name, { kind: 'bytes', name, bytes });
  };
  const planned: PlannedImage[] = [];
  const manifestDescriptors = new Map<Digest, Descriptor>();
  for (const { record, names } of images.values()) {
    const layers = record.layers.map((l) =>
      layerMember(format, compression, l, layerRecords.get(l.diffID)!, variants.get(l.diffID)),
    );
    for (const l of layers) if (!layerMembers.has(l.name)) layerMembers.set(l.name, l);
    const config = configs.get(record.config.digest)!;
    let manifestDigest = record.manifest.digest;
    if (format === 'docker') {
      addBytes(`${digestHex(record.config.digest)}.json`, config);
    } else {
      addBytes(blobName(record.config.digest), config);
      const source = sourceManifests.get(record.manifest.digest)!;
      // The stored manifest as is when it is an OCI one with the very same blobs; else a new OCI
      // manifest (readers of OCI layouts skip Docker manifest types).
      const exact = compression === 'original' && record.manifest.mediaType === OCI_MANIFEST;
      const bytes = exact ? source : ociManifest(source, record, layers);
      const descriptor: Descriptor = {
        mediaType: OCI_MANIFEST,
        digest: digestOf(bytes),
        size: bytes.byteLength,
        ...(record.platform === undefined ? {} : { platform: record.platform }),
      };
      manifestDigest = descriptor.digest;
      manifestDescriptors.set(record.manifest.digest, descriptor);
      addBytes(blobName(descriptor.digest), bytes);
    }
    planned.push({
      manifestDigest,
      sourceManifestDigest: record.manifest.digest,
      configDigest: record.config.digest,
      platform: record.platform === undefined ? undefined : formatPlatform(record.platform),
      names,
      layers,
    });
  }

  if (format === 'docker') {
    // docker save's manifest.json: one entry per image, with every tag it is exported under.
    const manifestJson = [...images.values()].map((entry, i) => ({
      Config: `${digestHex(entry.record.config.digest)}.json`,
      RepoTags: entry.tags,
      Layers: planned[i]!.layers.map((l) => l.name),
    }));
    addBytes('manifest.json', Buffer.from(JSON.stringify(manifestJson)));
  } else {
    addBytes('oci-layout', Buffer.from(JSON.stringify({ imageLayoutVersion: IMAGE_LAYOUT_VERSION })));
    const entries: Descriptor[] = [];
    for (const target of targets) {
      let descriptor: Descriptor;
      if (target.index === undefined || target.images.length === 1) {
        descriptor = manifestDescriptors.get(target.images[0]!.manifest.digest)!;
      } else {
        const { mediaType, bytes } = indexFor(
          { ...target, index: target.index },
          compression,
          manifestDescriptors,
        );
        descriptor = { mediaType, digest: digestOf(bytes), size: bytes.byteLength };
        addBytes(blobName(descriptor.digest), bytes);
      }
      // One entry per name (the same image may be listed under several).
      entries.push(
        target.name === undefined
          ? descriptor
          : {
              ...descriptor,
              annotations: { [CONTAINERD_NAME_ANNOTATION]: target.name, [REF_NAME_ANNOTATION]: target.name },
            },
      );
    }
    const index: ImageIndex = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: entries };
    addBytes('index.json', serializeManifest(index));
  }

  // Layers first; the index (manifest.json, index.json) last, so a truncated archive has none and
  // no loader mistakes it for a whole one.
  const indexName = format === 'docker' ? 'manifest.json' : 'index.json';
  const head = format === 'oci' ? [metadata.get('oci-layout')!] : [];
  const members: Member[] = [
    ...head,
    ...layerMembers.values(),
    ...[...metadata.values()].filter((m) => m.name !== indexName && m.name !== 'oci-layout'),
    metadata.get(indexName)!,
  ];
  const tar = tarSize(
    members.map((m) => ({ name: m.name, size: m.kind === 'layer' ? m.size : m.bytes.byteLength })),
  );
  return {
    format,
    compression,
    archiveCompression,
    targets,
    images: planned,
    members,
    tarSize: tar,
    size: archiveCompression === 'none' ? tar : undefined,
    contentType: archiveContentType(archiveCompression),
    variantsComputed,
  };
}
