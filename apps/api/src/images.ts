/**
 * What the API shows of the store: references and images, one image in detail (manifest, config,
 * layers, sizes, dedup figures), and deleting a reference. Read-only views of `@stevedore/store`
 * records; nothing here writes content.
 */
import {
  formatPlatform,
  formatReference,
  InvalidDigestError,
  InvalidReferenceError,
  MAX_MANIFEST_BYTES,
  parseDigest,
  parseManifest,
  parseReference,
  type Digest,
  type Reference,
} from '@stevedore/oci';
import type { ImageRecord, LayerRecord, Store } from '@stevedore/store';

/** The part of the store the API reads (and the one delete it does). */
export type ImageStore = Pick<
  Store,
  | 'listImages'
  | 'listReferences'
  | 'getReference'
  | 'getImage'
  | 'getLayer'
  | 'hasBlob'
  | 'getBlobBytes'
  | 'deleteReference'
>;

/** A request the API refuses (400), with a message naming the input. */
export class BadRequestError extends Error {
  override readonly name = 'BadRequestError';
}

export interface ReferenceSummary {
  readonly reference: string;
  readonly digest: string;
  readonly updatedAt: string;
  /** Manifest digests of the images it leads to (one, or one per stored platform of an index). */
  readonly images: readonly string[];
}

export interface ImageSummary {
  readonly manifestDigest: string;
  readonly platform: string | null;
  readonly configDigest: string;
  readonly layers: number;
  /** Manifest, config and compressed layers: what a registry transfer of the image costs. */
  readonly compressedSize: number;
  readonly createdAt: string;
  readonly references: readonly string[];
}

export interface ImageList {
  readonly references: readonly ReferenceSummary[];
  readonly images: readonly ImageSummary[];
}

export interface LayerDetail {
  readonly digest: string;
  readonly diffID: string;
  readonly mediaType: string;
  /** Compressed size. */
  readonly size: number;
  readonly uncompressedSize: number;
  readonly files: number;
  readonly objects: number;
  readonly objectsWritten: number;
  readonly objectsReused: number;
  readonly bytesWritten: number;
  readonly bytesReused: number;
  readonly bytesStored: number;
  readonly splitstreamBytes: number;
}

export interface ImageDetail {
  readonly manifest: { readonly digest: string; readonly size: number; readonly mediaType: string };
  readonly config: { readonly digest: string; readonly size: number; readonly mediaType: string };
  readonly platform: string | null;
  readonly createdAt: string;
  readonly layers: readonly LayerDetail[];
  readonly sizes: {
    /** Manifest, config and compressed layers. */
    readonly compressed: number;
    /** Uncompressed layer tars. */
    readonly uncompressed: number;
    /** What importing the layers added to the store: new objects (after compression) and splitstreams. */
    readonly stored: number;
  };
  /** Content dedup when the layers were imported (file objects already in the store were reused). */
  readonly dedup: {
    readonly objectsWritten: number;
    readonly objectsReused: number;
    readonly bytesWritten: number;
    readonly bytesReused: number;
    /** uncompressed / stored, or null when nothing was stored. */
    readonly ratio: number | null;
  };
}

export interface ImageLookup {
  /** The tag reference asked for (normalised), or null when asked by digest. */
  readonly reference: string | null;
  readonly digest: string;
  readonly mediaType: string;
  readonly images: readonly ImageDetail[];
}

/**
 * What a path segment names: a tag reference, or content by digest (`sha256:…` or `repo@sha256:…`;
 * the latter also names the digest reference a pull by digest keeps, `ref`).
 */
export type ImageTarget =
  | { readonly kind: 'tag'; readonly ref: Reference; readonly name: string }
  | {
      readonly kind: 'digest';
      readonly digest: Digest;
      readonly name: string;
      /** The reference when a repository is named (`repo@sha256:…`); undefined for a bare digest. */
      readonly ref: Reference | undefined;
    };

export function parseImageTarget(input: string): ImageTarget {
  if (!input.includes('/') && !input.includes('@')) {
    try {
      const digest = parseDigest(input);
      return { kind: 'digest', digest, name: digest, ref: undefined };
    } catch (err) {
      if (!(err instanceof InvalidDigestError)) throw err;
      // Not a digest: read it as a reference below (`alpine:3.20` is one).
    }
  }
  let ref: Reference;
  try {
    ref = parseReference(input);
  } catch (err) {
    if (err instanceof InvalidReferenceError) throw new BadRequestError(err.message, { cause: err });
    throw err;
  }
  return ref.digest === undefined
    ? { kind: 'tag', ref, name: formatReference(ref) }
    : { kind: 'digest', digest: ref.digest, name: formatReference(ref), ref };
}

/** The manifest digests an image or index blob leads to, and its media type; undefined if not stored. */
async function resolve(
  store: ImageStore,
  digest: Digest,
  images: ReadonlyMap<string, ImageRecord> | undefined,
): Promise<{ mediaType: string; manifests: ImageRecord[] } | undefined> {
  const known = images === undefined ? await store.getImage(digest) : images.get(digest);
  if (known !== undefined) return { mediaType: known.manifest.mediaType, manifests: [known] };
  if (!(await store.hasBlob(digest))) return undefined;
  const bytes = await store.getBlobBytes(digest);
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new Error(`blob ${digest} is ${bytes.length} bytes: too large for a manifest or index`);
  }
  const parsed = parseManifest(bytes);
  if (parsed.kind === 'manifest') return { mediaType: parsed.mediaType, manifests: [] };
  const manifests: ImageRecord[] = [];
  for (const d of parsed.index.manifests) {
    const image = images === undefined ? await store.getImage(d.digest) : images.get(d.digest);
    // Platforms that were not pulled are in the index but not in the store.
    if (image !== undefined) manifests.push(image);
  }
  return { mediaType: parsed.mediaType, manifests };
}

function platformOf(image: ImageRecord): string | null {
  return image.platform === undefined ? null : formatPlatform(image.platform);
}

function compressedSize(image: ImageRecord): number {
  return image.manifest.size + image.config.size + image.layers.reduce((n, l) => n + l.size, 0);
}

export async function listImages(store: ImageStore): Promise<ImageList> {
  const [images, references] = await Promise.all([store.listImages(), store.listReferences()]);
  const byDigest = new Map<string, ImageRecord>(images.map((i) => [i.manifest.digest, i]));
  const referencedBy = new Map<string, string[]>();
  const refs: ReferenceSummary[] = [];
  for (const r of references.sort((a, b) =>
    a.reference < b.reference ? -1 : a.reference > b.reference ? 1 : 0,
  )) {
    const resolved = await resolve(store, r.digest, byDigest);
    const digests = (resolved?.manifests ?? []).map((i) => i.manifest.digest);
    for (const d of digests) referencedBy.set(d, [...(referencedBy.get(d) ?? []), r.reference]);
    refs.push({ reference: r.reference, digest: r.digest, updatedAt: r.updatedAt, images: digests });
  }
  const summaries = images
    .map((i): ImageSummary => ({
      manifestDigest: i.manifest.digest,
      platform: platformOf(i),
      configDigest: i.config.digest,
      layers: i.layers.length,
      compressedSize: compressedSize(i),
      createdAt: i.createdAt,
      references: referencedBy.get(i.manifest.digest) ?? [],
    }))
    .sort((a, b) => (a.manifestDigest < b.manifestDigest ? -1 : 1));
  return { references: refs, images: summaries };
}

function layerDetail(layer: ImageRecord['layers'][number], record: LayerRecord): LayerDetail {
  const s = record.stats;
  return {
    digest: layer.digest,
    diffID: layer.diffID,
    mediaType: layer.mediaType,
    size: layer.size,
    uncompressedSize: record.size,
    files: s.files,
    objects: s.objects,
    objectsWritten: s.objectsWritten,
    objectsReused: s.objectsReused,
    bytesWritten: s.bytesWritten,
    bytesReused: s.bytesReused,
    bytesStored: s.bytesStored,
    splitstreamBytes: s.splitstreamBytes,
  };
}

async function imageDetail(store: ImageStore, image: ImageRecord): Promise<ImageDetail> {
  const layers = await Promise.all(
    image.layers.map(async (l) => {
      const record = await store.getLayer(l.diffID);
      if (record === undefined) {
        throw new Error(`image ${image.manifest.digest}: layer ${l.diffID} has no layer record in the store`);
      }
      return layerDetail(l, record);
    }),
  );
  const sum = (f: (l: LayerDetail) => number): number => layers.reduce((n, l) => n + f(l), 0);
  const uncompressed = sum((l) => l.uncompressedSize);
  const stored = sum((l) => l.bytesStored + l.splitstreamBytes);
  return {
    manifest: { ...image.manifest },
    config: { ...image.config },
    platform: platformOf(image),
    createdAt: image.createdAt,
    layers,
    sizes: { compressed: compressedSize(image), uncompressed, stored },
    dedup: {
      objectsWritten: sum((l) => l.objectsWritten),
      objectsReused: sum((l) => l.objectsReused),
      bytesWritten: sum((l) => l.bytesWritten),
      bytesReused: sum((l) => l.bytesReused),
      ratio: stored === 0 ? null : uncompressed / stored,
    },
  };
}

/** One reference or digest in detail; undefined when the store does not have it. */
export async function describeImage(store: ImageStore, input: string): Promise<ImageLookup | undefined> {
  const target = parseImageTarget(input);
  let digest: Digest;
  if (target.kind === 'tag') {
    const record = await store.getReference(target.ref);
    if (record === undefined) return undefined;
    digest = record.digest;
  } else {
    digest = target.digest;
  }
  const resolved = await resolve(store, digest, undefined);
  if (resolved === undefined) return undefined;
  return {
    reference: target.kind === 'tag' ? target.name : null,
    digest,
    mediaType: resolved.mediaType,
    images: await Promise.all(resolved.manifests.map((m) => imageDetail(store, m))),
  };
}

/**
 * Removes a reference: a tag, or the digest reference a pull by digest keeps (`repo@sha256:…`);
 * the images, layers and blobs stay until garbage collection (`stevedore gc`). A reference with both a tag and a
 * digest is the tag's (the store's rule). Returns the normalised reference, or undefined when there
 * was no such reference; a bare digest names no reference and is refused.
 */
export async function deleteReference(store: ImageStore, input: string): Promise<string | undefined> {
  const target = parseImageTarget(input);
  if (target.ref === undefined) {
    throw new BadRequestError(
      `cannot delete "${input}": a bare digest is not a reference; name its repository (repo@sha256:…)`,
    );
  }
  if ((await store.getReference(target.ref)) === undefined) return undefined;
  await store.deleteReference(target.ref);
  return target.name;
}
