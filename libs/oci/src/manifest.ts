/**
 * Manifests, indexes and image configs, named as in the OCI image spec (manifest.md, image-index.md,
 * descriptor.md, config.md). Docker schema 2 manifests and manifest lists have the same shape and
 * parse into the same types; Docker schema 1 is refused.
 *
 * Parsers validate strictly and build fresh objects holding only the fields below, so the bytes a
 * caller got from the registry (and digested) stay the only source of truth for re-pushing.
 */
import { digestOf, InvalidDigestError, parseDigest, type Digest } from './digest.ts';
import {
  InvalidMediaTypeError,
  isIndexType,
  isLayerType,
  isManifestType,
  isSchema1Type,
  OCI_INDEX,
  OCI_MANIFEST,
  parseMediaType,
  UnsupportedMediaTypeError,
  type MediaType,
} from './media-types.ts';

/**
 * Largest manifest accepted (4 MiB, the limit distribution and containerd apply to manifests). The
 * registry client enforces it while reading the body; {@link parseManifest} checks it again.
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

declare const diffIdBrand: unique symbol;
/** Digest of an uncompressed layer tar (config `rootfs.diff_ids`), as opposed to a blob digest. */
export type DiffID = Digest & { readonly [diffIdBrand]: true };

export class InvalidManifestError extends Error {
  override readonly name = 'InvalidManifestError';
}

export class InvalidImageConfigError extends Error {
  override readonly name = 'InvalidImageConfigError';
}

/** Platform of an index entry or image (image-index.md). */
export interface Platform {
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  features?: string[];
}

/** A typed pointer to content (descriptor.md). `digest` is of the bytes as stored (compressed). */
export interface Descriptor {
  mediaType: MediaType;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: MediaType;
}

/** An image manifest (OCI) or Docker schema 2 manifest. */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: MediaType;
  artifactType?: MediaType;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** An image index (OCI) or Docker manifest list. */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: MediaType;
  artifactType?: MediaType;
  manifests: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** The execution parameters of an image config (config.md `config`). */
export interface ImageExecutionConfig {
  User?: string;
  ExposedPorts?: Record<string, object>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Volumes?: Record<string, object>;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
}

export interface History {
  created?: string;
  author?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
}

/** An image config (config.md); `rootfs.diff_ids` lists the uncompressed layer digests in order. */
export interface ImageConfig {
  created?: string;
  author?: string;
  architecture: string;
  os: string;
  'os.version'?: string;
  'os.features'?: string[];
  variant?: string;
  config?: ImageExecutionConfig;
  rootfs: { type: 'layers'; diff_ids: DiffID[] };
  history?: History[];
}

/** A parsed manifest: a single image or an index of them. */
export type ParsedManifest =
  | { kind: 'manifest'; mediaType: MediaType; manifest: ImageManifest }
  | { kind: 'index'; mediaType: MediaType; index: ImageIndex };

/** Parses a diffID (a digest of uncompressed content); throws InvalidDigestError like parseDigest. */
export function parseDiffID(input: string): DiffID {
  return parseDigest(input) as DiffID;
}

type ErrorFactory = (message: string, cause?: unknown) => Error;
type JsonObject = Record<string, unknown>;

/** Field-by-field validation that names the JSON path of whatever is wrong. */
class Reader {
  readonly #fail: ErrorFactory;

  constructor(fail: ErrorFactory) {
    this.#fail = fail;
  }

  fail(path: string, message: string, cause?: unknown): never {
    throw this.#fail(`${path} ${message}`, cause);
  }

  object(value: unknown, path: string): JsonObject {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.fail(path, `must be an object, got ${describe(value)}`);
    }
    return value as JsonObject;
  }

  string(value: unknown, path: string): string {
    if (typeof value !== 'string') this.fail(path, `must be a string, got ${describe(value)}`);
    return value;
  }

  optionalString(value: unknown, path: string): string | undefined {
    return value === undefined ? undefined : this.string(value, path);
  }

  stringArray(value: unknown, path: string): string[] {
    return this.array(value, path).map((v, i) => this.string(v, `${path}[${i}]`));
  }

  array(value: unknown, path: string): unknown[] {
    if (!Array.isArray(value)) this.fail(path, `must be an array, got ${describe(value)}`);
    return value;
  }

  stringMap(value: unknown, path: string): Record<string, string> {
    const o = this.object(value, path);
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(o)) out[k] = this.string(v, `${path}[${JSON.stringify(k)}]`);
    return out;
  }

  objectMap(value: unknown, path: string): Record<string, object> {
    const o = this.object(value, path);
    const out: Record<string, object> = {};
    for (const [k, v] of Object.entries(o)) out[k] = this.object(v, `${path}[${JSON.stringify(k)}]`);
    return out;
  }

  size(value: unknown, path: string): number {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
      this.fail(path, `must be a non-negative safe integer, got ${describe(value)}`);
    }
    return value;
  }

  digest(value: unknown, path: string): Digest {
    try {
      return parseDigest(this.string(value, path));
    } catch (err) {
      if (err instanceof InvalidDigestError) this.fail(path, `is not a valid digest: ${err.message}`, err);
      throw err;
    }
  }

  mediaType(value: unknown, path: string): MediaType {
    try {
      return parseMediaType(this.string(value, path));
    } catch (err) {
      if (err instanceof InvalidMediaTypeError)
        this.fail(path, `is not a valid media type: ${err.message}`, err);
      throw err;
    }
  }

  platform(value: unknown, path: string): Platform {
    const o = this.object(value, path);
    const p: Platform = {
      architecture: this.string(o.architecture, `${path}.architecture`),
      os: this.string(o.os, `${path}.os`),
    };
    const osVersion = this.optionalString(o['os.version'], `${path}["os.version"]`);
    if (osVersion !== undefined) p['os.version'] = osVersion;
    if (o['os.features'] !== undefined)
      p['os.features'] = this.stringArray(o['os.features'], `${path}["os.features"]`);
    const variant = this.optionalString(o.variant, `${path}.variant`);
    if (variant !== undefined) p.variant = variant;
    if (o.features !== undefined) p.features = this.stringArray(o.features, `${path}.features`);
    return p;
  }

  descriptor(value: unknown, path: string): Descriptor {
    const o = this.object(value, path);
    const d: Descriptor = {
      mediaType: this.mediaType(o.mediaType, `${path}.mediaType`),
      digest: this.digest(o.digest, `${path}.digest`),
      size: this.size(o.size, `${path}.size`),
    };
    if (o.urls !== undefined) d.urls = this.stringArray(o.urls, `${path}.urls`);
    if (o.annotations !== undefined) d.annotations = this.stringMap(o.annotations, `${path}.annotations`);
    if (o.platform !== undefined) d.platform = this.platform(o.platform, `${path}.platform`);
    if (o.artifactType !== undefined) d.artifactType = this.mediaType(o.artifactType, `${path}.artifactType`);
    return d;
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${value}`;
  return typeof value;
}

function decodeJson(bytes: Uint8Array, fail: ErrorFactory, what: string): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw fail(`${what} is not valid UTF-8`, err);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw fail(`${what} is not valid JSON`, err);
  }
}

/**
 * `Content-Type` values that say nothing about the manifest kind (some registries and static file
 * servers send them): treated as absent.
 */
const GENERIC_CONTENT_TYPES: ReadonlySet<string> = new Set([
  'application/json',
  'application/octet-stream',
  'text/plain',
]);

function schema1Error(mediaType: string): UnsupportedMediaTypeError {
  return new UnsupportedMediaTypeError(
    mediaType,
    `unsupported manifest: Docker image manifest schema 1 ("${mediaType}") is deprecated and not supported`,
  );
}

/**
 * Parses and validates a manifest or index.
 *
 * The media type comes from the body's `mediaType` field or from `contentType` (the HTTP
 * `Content-Type`, or the descriptor's media type); when both are present they must agree. Generic
 * content types (`application/json`, `application/octet-stream`, `text/plain`) count as absent.
 * Throws {@link InvalidManifestError} naming the field that is wrong, or
 * {@link UnsupportedMediaTypeError} for Docker schema 1, unknown manifest types and unknown layer
 * types.
 */
/**
 * The type of a manifest that names none and came without a Content-Type (a stored blob): OCI
 * manifests and indexes only SHOULD carry `mediaType` (image-spec manifest.md, image-index.md),
 * and podman and skopeo push OCI manifests without it. Docker's types always carry it. The kind is
 * then told by the fields, as containerd does: `manifests` makes an index, `config` and `layers`
 * an image manifest; both or neither is an error.
 */
function kindFromFields(o: JsonObject, fail: ErrorFactory): MediaType {
  const index = o.manifests !== undefined;
  const manifest = o.config !== undefined || o.layers !== undefined;
  if (index && !manifest) return OCI_INDEX;
  if (manifest && !index) return OCI_MANIFEST;
  throw fail(
    index
      ? 'no mediaType field and no Content-Type, and it has both manifests and config or layers'
      : 'no mediaType field and no Content-Type, and neither manifests nor config and layers to tell its kind',
  );
}

export function parseManifest(bytes: Uint8Array, contentType?: string): ParsedManifest {
  const fail: ErrorFactory = (message, cause) =>
    new InvalidManifestError(`invalid manifest: ${message}`, cause === undefined ? undefined : { cause });
  if (bytes.byteLength > MAX_MANIFEST_BYTES) {
    throw fail(`${bytes.byteLength} bytes is more than the ${MAX_MANIFEST_BYTES} bytes allowed`);
  }

  let headerType: MediaType | undefined;
  if (contentType !== undefined && contentType.trim() !== '') {
    try {
      headerType = parseMediaType(contentType);
    } catch (err) {
      throw fail(`Content-Type ${JSON.stringify(contentType)} is not a media type`, err);
    }
    if (GENERIC_CONTENT_TYPES.has(headerType)) headerType = undefined;
  }
  if (headerType !== undefined && isSchema1Type(headerType)) throw schema1Error(headerType);

  const r = new Reader(fail);
  const o = r.object(decodeJson(bytes, fail, 'body'), 'body');
  if (o.schemaVersion === 1) throw schema1Error(headerType ?? 'schemaVersion 1');
  if (o.schemaVersion !== 2) r.fail('schemaVersion', `must be 2, got ${describe(o.schemaVersion)}`);

  const bodyType = o.mediaType === undefined ? undefined : r.mediaType(o.mediaType, 'mediaType');
  if (bodyType !== undefined && headerType !== undefined && bodyType !== headerType) {
    throw fail(`mediaType "${bodyType}" disagrees with Content-Type "${headerType}"`);
  }
  const mediaType = bodyType ?? headerType ?? kindFromFields(o, fail);
  if (isSchema1Type(mediaType)) throw schema1Error(mediaType);

  const artifactType = o.artifactType === undefined ? undefined : r.mediaType(o.artifactType, 'artifactType');
  const subject = o.subject === undefined ? undefined : r.descriptor(o.subject, 'subject');
  const annotations = o.annotations === undefined ? undefined : r.stringMap(o.annotations, 'annotations');

  if (isManifestType(mediaType)) {
    if (o.manifests !== undefined)
      r.fail('manifests', `must be absent from an image manifest (${mediaType})`);
    const manifest: ImageManifest = {
      schemaVersion: 2,
      config: r.descriptor(o.config, 'config'),
      layers: r.array(o.layers, 'layers').map((layer, i) => {
        const d = r.descriptor(layer, `layers[${i}]`);
        if (!isLayerType(d.mediaType)) {
          throw new UnsupportedMediaTypeError(
            d.mediaType,
            `invalid manifest: layers[${i}].mediaType "${d.mediaType}" is not a supported layer type`,
          );
        }
        return d;
      }),
    };
    if (bodyType !== undefined) manifest.mediaType = bodyType;
    if (artifactType !== undefined) manifest.artifactType = artifactType;
    if (subject !== undefined) manifest.subject = subject;
    if (annotations !== undefined) manifest.annotations = annotations;
    return { kind: 'manifest', mediaType, manifest };
  }

  if (isIndexType(mediaType)) {
    for (const field of ['config', 'layers'] as const) {
      if (o[field] !== undefined) r.fail(field, `must be absent from an index (${mediaType})`);
    }
    const index: ImageIndex = {
      schemaVersion: 2,
      manifests: r.array(o.manifests, 'manifests').map((m, i) => r.descriptor(m, `manifests[${i}]`)),
    };
    if (bodyType !== undefined) index.mediaType = bodyType;
    if (artifactType !== undefined) index.artifactType = artifactType;
    if (subject !== undefined) index.subject = subject;
    if (annotations !== undefined) index.annotations = annotations;
    return { kind: 'index', mediaType, index };
  }

  throw new UnsupportedMediaTypeError(mediaType, `unsupported manifest media type "${mediaType}"`);
}

/**
 * Parses and validates an image config (Docker or OCI). Throws {@link InvalidImageConfigError}
 * naming the field that is wrong.
 */
export function parseImageConfig(bytes: Uint8Array): ImageConfig {
  const fail: ErrorFactory = (message, cause) =>
    new InvalidImageConfigError(
      `invalid image config: ${message}`,
      cause === undefined ? undefined : { cause },
    );
  const r = new Reader(fail);
  const o = r.object(decodeJson(bytes, fail, 'body'), 'body');

  const rootfs = r.object(o.rootfs, 'rootfs');
  if (rootfs.type !== 'layers') r.fail('rootfs.type', `must be "layers", got ${describe(rootfs.type)}`);
  const diffIds = r.array(rootfs.diff_ids, 'rootfs.diff_ids').map((d, i) => {
    return r.digest(d, `rootfs.diff_ids[${i}]`) as DiffID;
  });

  const config: ImageConfig = {
    architecture: r.string(o.architecture, 'architecture'),
    os: r.string(o.os, 'os'),
    rootfs: { type: 'layers', diff_ids: diffIds },
  };
  for (const key of ['created', 'author', 'os.version', 'variant'] as const) {
    const v = r.optionalString(o[key], key);
    if (v !== undefined) config[key] = v;
  }
  if (o['os.features'] !== undefined)
    config['os.features'] = r.stringArray(o['os.features'], '"os.features"');
  // Docker writes `"config": null` for images built FROM scratch without settings.
  if (o.config !== undefined && o.config !== null) config.config = executionConfig(r, o.config);
  if (o.history !== undefined) {
    config.history = r.array(o.history, 'history').map((h, i) => history(r, h, `history[${i}]`));
  }
  return config;
}

function executionConfig(r: Reader, value: unknown): ImageExecutionConfig {
  const o = r.object(value, 'config');
  const c: ImageExecutionConfig = {};
  for (const key of ['User', 'WorkingDir', 'StopSignal'] as const) {
    const v = r.optionalString(o[key], `config.${key}`);
    if (v !== undefined) c[key] = v;
  }
  // Docker writes null for unset lists and maps.
  if (o.Env !== undefined && o.Env !== null) c.Env = r.stringArray(o.Env, 'config.Env');
  for (const key of ['Entrypoint', 'Cmd'] as const) {
    if (o[key] === null) c[key] = null;
    else if (o[key] !== undefined) c[key] = r.stringArray(o[key], `config.${key}`);
  }
  for (const key of ['ExposedPorts', 'Volumes'] as const) {
    if (o[key] !== undefined && o[key] !== null) c[key] = r.objectMap(o[key], `config.${key}`);
  }
  if (o.Labels !== undefined && o.Labels !== null) c.Labels = r.stringMap(o.Labels, 'config.Labels');
  return c;
}

function history(r: Reader, value: unknown, path: string): History {
  const o = r.object(value, path);
  const h: History = {};
  for (const key of ['created', 'author', 'created_by', 'comment'] as const) {
    const v = r.optionalString(o[key], `${path}.${key}`);
    if (v !== undefined) h[key] = v;
  }
  if (o.empty_layer !== undefined) {
    if (typeof o.empty_layer !== 'boolean')
      r.fail(`${path}.empty_layer`, `must be a boolean, got ${describe(o.empty_layer)}`);
    h.empty_layer = o.empty_layer;
  }
  return h;
}

/**
 * Canonical JSON bytes of a manifest, index or config: `JSON.stringify` without whitespace, UTF-8.
 * These bytes are what gets digested and pushed; build objects with fields in the order wanted.
 */
export function serializeManifest(value: ImageManifest | ImageIndex | ImageConfig): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(value));
}

/** A descriptor for `bytes` stored as `mediaType` (digest sha256 of the bytes, size in bytes). */
export function descriptorFor(mediaType: MediaType, bytes: Uint8Array): Descriptor {
  return { mediaType, digest: digestOf(bytes), size: bytes.byteLength };
}
