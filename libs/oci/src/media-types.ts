/**
 * Media types of manifests, image configs and layers (OCI image spec media-types.md, Docker image
 * manifest v2 schema 2).
 *
 * `MediaType` is a branded string made only by {@link parseMediaType} (or the constants below, which
 * are already in canonical form): lowercase `type/subtype`, parameters removed.
 */

declare const mediaTypeBrand: unique symbol;
/** A media type in canonical form: lowercase `type/subtype`, without parameters. */
export type MediaType = string & { readonly [mediaTypeBrand]: true };

export class InvalidMediaTypeError extends Error {
  override readonly name = 'InvalidMediaTypeError';
}

/** A well-formed media type this code cannot handle (unknown layer type, Docker schema 1, …). */
export class UnsupportedMediaTypeError extends Error {
  override readonly name = 'UnsupportedMediaTypeError';
  readonly mediaType: string;

  constructor(mediaType: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.mediaType = mediaType;
  }
}

const mt = (s: string): MediaType => s as MediaType;

// Manifests and indexes.
export const DOCKER_MANIFEST = mt('application/vnd.docker.distribution.manifest.v2+json');
export const DOCKER_MANIFEST_LIST = mt('application/vnd.docker.distribution.manifest.list.v2+json');
export const OCI_MANIFEST = mt('application/vnd.oci.image.manifest.v1+json');
export const OCI_INDEX = mt('application/vnd.oci.image.index.v1+json');
/** Docker image manifest schema 1 (unsigned): known only so it can be rejected clearly. */
export const DOCKER_MANIFEST_V1 = mt('application/vnd.docker.distribution.manifest.v1+json');
/** Docker image manifest schema 1 (signed): known only so it can be rejected clearly. */
export const DOCKER_MANIFEST_V1_SIGNED = mt('application/vnd.docker.distribution.manifest.v1+prettyjws');

// Image configs.
export const DOCKER_CONFIG = mt('application/vnd.docker.container.image.v1+json');
export const OCI_CONFIG = mt('application/vnd.oci.image.config.v1+json');
/** The OCI empty descriptor's type (`{}`), used as config of artifacts. */
export const OCI_EMPTY = mt('application/vnd.oci.empty.v1+json');

// Layers.
export const OCI_LAYER = mt('application/vnd.oci.image.layer.v1.tar');
export const OCI_LAYER_GZIP = mt('application/vnd.oci.image.layer.v1.tar+gzip');
export const OCI_LAYER_ZSTD = mt('application/vnd.oci.image.layer.v1.tar+zstd');
export const OCI_LAYER_NONDISTRIBUTABLE = mt('application/vnd.oci.image.layer.nondistributable.v1.tar');
export const OCI_LAYER_NONDISTRIBUTABLE_GZIP = mt(
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
);
export const OCI_LAYER_NONDISTRIBUTABLE_ZSTD = mt(
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
);
export const DOCKER_LAYER_GZIP = mt('application/vnd.docker.image.rootfs.diff.tar.gzip');
export const DOCKER_FOREIGN_LAYER_GZIP = mt('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip');

/** How a layer blob is compressed. */
export type LayerCompression = 'gzip' | 'zstd' | 'none';

const LAYERS: ReadonlyMap<string, { compression: LayerCompression; nonDistributable: boolean }> = new Map([
  [OCI_LAYER, { compression: 'none', nonDistributable: false }],
  [OCI_LAYER_GZIP, { compression: 'gzip', nonDistributable: false }],
  [OCI_LAYER_ZSTD, { compression: 'zstd', nonDistributable: false }],
  [OCI_LAYER_NONDISTRIBUTABLE, { compression: 'none', nonDistributable: true }],
  [OCI_LAYER_NONDISTRIBUTABLE_GZIP, { compression: 'gzip', nonDistributable: true }],
  [OCI_LAYER_NONDISTRIBUTABLE_ZSTD, { compression: 'zstd', nonDistributable: true }],
  [DOCKER_LAYER_GZIP, { compression: 'gzip', nonDistributable: false }],
  [DOCKER_FOREIGN_LAYER_GZIP, { compression: 'gzip', nonDistributable: true }],
]);

/**
 * The Accept list for manifest requests: every manifest and index type this code parses, so the
 * registry never falls back to converting to Docker schema 1. Join with `, ` for the header
 * ({@link MANIFEST_ACCEPT_HEADER}).
 */
export const MANIFEST_ACCEPT: readonly MediaType[] = Object.freeze([
  OCI_INDEX,
  OCI_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST,
]);
/** {@link MANIFEST_ACCEPT} as an HTTP `Accept` header value. */
export const MANIFEST_ACCEPT_HEADER = MANIFEST_ACCEPT.join(', ');

/** RFC 6838 restricted-name, used for both the type and the subtype. */
const RESTRICTED_NAME = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/;

/**
 * Parses a media type or a `Content-Type` value: drops parameters (`; charset=utf-8`), trims and
 * lowercases (media types are case-insensitive). Throws {@link InvalidMediaTypeError} quoting the
 * input when it is not `type/subtype`.
 */
export function parseMediaType(input: string): MediaType {
  const semicolon = input.indexOf(';');
  const bare = (semicolon < 0 ? input : input.slice(0, semicolon)).trim().toLowerCase();
  const slash = bare.indexOf('/');
  if (slash < 0) throw new InvalidMediaTypeError(`invalid media type "${input}": missing "/"`);
  const type = bare.slice(0, slash);
  const subtype = bare.slice(slash + 1);
  if (!RESTRICTED_NAME.test(type) || !RESTRICTED_NAME.test(subtype)) {
    throw new InvalidMediaTypeError(`invalid media type "${input}": expected "type/subtype" (RFC 6838)`);
  }
  return bare as MediaType;
}

/** True for single-image manifest types (OCI image manifest, Docker schema 2); false for indexes. */
export function isManifestType(mediaType: MediaType): boolean {
  return mediaType === OCI_MANIFEST || mediaType === DOCKER_MANIFEST;
}

/** True for multi-platform types (OCI image index, Docker manifest list). */
export function isIndexType(mediaType: MediaType): boolean {
  return mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST;
}

/** True for Docker image manifest schema 1 types, which are unsupported. */
export function isSchema1Type(mediaType: MediaType): boolean {
  return mediaType === DOCKER_MANIFEST_V1 || mediaType === DOCKER_MANIFEST_V1_SIGNED;
}

/** True for every layer type listed above. */
export function isLayerType(mediaType: MediaType): boolean {
  return LAYERS.has(mediaType);
}

function layerInfo(mediaType: MediaType): { compression: LayerCompression; nonDistributable: boolean } {
  const info = LAYERS.get(mediaType);
  if (info === undefined) {
    throw new UnsupportedMediaTypeError(mediaType, `unsupported layer media type "${mediaType}"`);
  }
  return info;
}

/**
 * Compression of a layer type. Throws {@link UnsupportedMediaTypeError} naming the type when it is
 * not a known layer type.
 */
export function layerCompression(mediaType: MediaType): LayerCompression {
  return layerInfo(mediaType).compression;
}

/**
 * True for non-distributable ("foreign") layers, whose blobs registries may refuse to store and
 * which are fetched from the descriptor's `urls`. Throws like {@link layerCompression}.
 */
export function isNonDistributable(mediaType: MediaType): boolean {
  return layerInfo(mediaType).nonDistributable;
}
