/**
 * The JSON records of the store (docs/store-format.md "Records"): layer records, layer blob links
 * (compressed digest → diffID), image records and references. Every record has `schemaVersion: 1`;
 * decoding validates every field and names the key on failure.
 */
import {
  parseDiffID,
  parseDigest,
  parseMediaType,
  parseReference,
  type DiffID,
  type Digest,
  type MediaType,
  type Platform,
} from '@stevedore/oci/spec';
import { InvalidFormatError } from './errors.ts';

export const SCHEMA_VERSION = 1;

/** What an import did (also kept in the layer record). */
export interface ImportStats {
  /** Tar entries (a PAX or GNU long-name header counts with its entry). */
  entries: number;
  /** Entries whose content is stored as objects (larger than the inline limit). */
  files: number;
  /** Object references in the splitstream (a chunked file counts each chunk). */
  objects: number;
  /** New objects stored by this import. */
  objectsWritten: number;
  /** References to objects already stored (earlier imports, or earlier in this layer). */
  objectsReused: number;
  /** Content bytes of new objects (before compression). */
  bytesWritten: number;
  /** Bytes the new objects take in the store (after zstd where it paid). */
  bytesStored: number;
  /** Content bytes of reused objects. */
  bytesReused: number;
  /** Tar bytes kept inline in the splitstream (headers, padding, small files). */
  inlineBytes: number;
  packsWritten: number;
  /** Stored (compressed) size of the splitstream. */
  splitstreamBytes: number;
}

export function emptyStats(): ImportStats {
  return {
    entries: 0,
    files: 0,
    objects: 0,
    objectsWritten: 0,
    objectsReused: 0,
    bytesWritten: 0,
    bytesStored: 0,
    bytesReused: 0,
    inlineBytes: 0,
    packsWritten: 0,
    splitstreamBytes: 0,
  };
}

/** Where a layer's splitstream is, and the sha256 and size of its stored (compressed) bytes. */
export interface SplitstreamRef {
  readonly key: string;
  readonly digest: Digest;
  readonly size: number;
}

/** `layers/<alg>/<hex>.json`: a split layer, keyed by diffID. */
export interface LayerRecord {
  readonly schemaVersion: 1;
  readonly diffID: DiffID;
  /** Uncompressed tar size. */
  readonly size: number;
  readonly splitstream: SplitstreamRef;
  readonly stats: ImportStats;
  readonly createdAt: string;
}

/** `layer-blobs/<alg>/<hex>.json`: a compressed layer blob and the layer it decompresses to. */
export interface LayerBlobRecord {
  readonly schemaVersion: 1;
  readonly digest: Digest;
  readonly diffID: DiffID;
  /** Compressed size. */
  readonly size: number;
  readonly mediaType: MediaType;
  readonly createdAt: string;
}

export interface ImageLayer {
  readonly digest: Digest;
  readonly diffID: DiffID;
  readonly size: number;
  readonly mediaType: MediaType;
}

export interface BlobDescriptor {
  readonly digest: Digest;
  readonly size: number;
  readonly mediaType: MediaType;
}

/** `images/<alg>/<hex>.json`: one platform image, keyed by its manifest digest. */
export interface ImageRecord {
  readonly schemaVersion: 1;
  readonly manifest: BlobDescriptor;
  readonly config: BlobDescriptor;
  readonly platform?: Platform;
  readonly layers: readonly ImageLayer[];
  readonly createdAt: string;
}

/**
 * A tag and the manifest it points at (`refs/<registry>/<repository>/_tags/<tag>.json`), or a
 * digest reference kept by a pull by digest (`refs/<registry>/<repository>/_digests/<alg>/<hex>.json`,
 * pointing at its own digest).
 */
export interface ReferenceRecord {
  readonly schemaVersion: 1;
  /** `registry/repository:tag`, or `registry/repository@<alg>:<hex>` for a digest reference. */
  readonly reference: string;
  /** Manifest (or index) digest. */
  readonly digest: Digest;
  readonly updatedAt: string;
}

type Json = Record<string, unknown>;

class Reader {
  readonly key: string;
  constructor(key: string) {
    this.key = key;
  }
  fail(what: string, cause?: unknown): never {
    throw new InvalidFormatError(`record ${this.key}: ${what}`, cause === undefined ? undefined : { cause });
  }
  object(v: unknown, at: string): Json {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(`${at} must be an object`);
    return v as Json;
  }
  string(o: Json, name: string): string {
    const v = o[name];
    if (typeof v !== 'string') this.fail(`${name} must be a string`);
    return v;
  }
  count(o: Json, name: string): number {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      this.fail(`${name} must be a non-negative integer`);
    return v;
  }
  parse<T>(o: Json, name: string, parser: (s: string) => T): T {
    const s = this.string(o, name);
    try {
      return parser(s);
    } catch (err) {
      this.fail(`${name}: ${err instanceof Error ? err.message : String(err)}`, err);
    }
  }
  version(o: Json): 1 {
    if (o.schemaVersion !== SCHEMA_VERSION)
      this.fail(`unsupported schemaVersion ${JSON.stringify(o.schemaVersion)}`);
    return SCHEMA_VERSION;
  }
}

function parseJson(bytes: Uint8Array, r: Reader): Json {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8'));
  } catch (err) {
    r.fail('invalid JSON', err);
  }
  return r.object(v, 'record');
}

export function encodeRecord(record: object): Buffer {
  return Buffer.from(`${JSON.stringify(record, null, 2)}\n`, 'utf8');
}

const STATS_FIELDS = Object.keys(emptyStats()) as (keyof ImportStats)[];

export function decodeLayerRecord(bytes: Uint8Array, key: string): LayerRecord {
  const r = new Reader(key);
  const o = parseJson(bytes, r);
  const ss = r.object(o.splitstream, 'splitstream');
  const st = r.object(o.stats, 'stats');
  const stats = emptyStats();
  for (const f of STATS_FIELDS) stats[f] = r.count(st, f);
  return {
    schemaVersion: r.version(o),
    diffID: r.parse(o, 'diffID', parseDiffID),
    size: r.count(o, 'size'),
    splitstream: {
      key: r.string(ss, 'key'),
      digest: r.parse(ss, 'digest', parseDigest),
      size: r.count(ss, 'size'),
    },
    stats,
    createdAt: r.string(o, 'createdAt'),
  };
}

export function decodeLayerBlobRecord(bytes: Uint8Array, key: string): LayerBlobRecord {
  const r = new Reader(key);
  const o = parseJson(bytes, r);
  return {
    schemaVersion: r.version(o),
    digest: r.parse(o, 'digest', parseDigest),
    diffID: r.parse(o, 'diffID', parseDiffID),
    size: r.count(o, 'size'),
    mediaType: r.parse(o, 'mediaType', parseMediaType),
    createdAt: r.string(o, 'createdAt'),
  };
}

function decodeDescriptor(r: Reader, v: unknown, at: string): BlobDescriptor {
  const o = r.object(v, at);
  return {
    digest: r.parse(o, 'digest', parseDigest),
    size: r.count(o, 'size'),
    mediaType: r.parse(o, 'mediaType', parseMediaType),
  };
}

export function decodeImageRecord(bytes: Uint8Array, key: string): ImageRecord {
  const r = new Reader(key);
  const o = parseJson(bytes, r);
  if (!Array.isArray(o.layers)) r.fail('layers must be an array');
  const layers = (o.layers as unknown[]).map((v, i) => {
    const l = r.object(v, `layers[${i}]`);
    return {
      digest: r.parse(l, 'digest', parseDigest),
      diffID: r.parse(l, 'diffID', parseDiffID),
      size: r.count(l, 'size'),
      mediaType: r.parse(l, 'mediaType', parseMediaType),
    };
  });
  let platform: Platform | undefined;
  if (o.platform !== undefined) {
    const p = r.object(o.platform, 'platform');
    platform = {
      ...(p as unknown as Platform),
      os: r.string(p, 'os'),
      architecture: r.string(p, 'architecture'),
    };
  }
  const record: ImageRecord = {
    schemaVersion: r.version(o),
    manifest: decodeDescriptor(r, o.manifest, 'manifest'),
    config: decodeDescriptor(r, o.config, 'config'),
    layers,
    createdAt: r.string(o, 'createdAt'),
  };
  return platform === undefined ? record : { ...record, platform };
}

export function decodeReferenceRecord(bytes: Uint8Array, key: string): ReferenceRecord {
  const r = new Reader(key);
  const o = parseJson(bytes, r);
  const reference = r.string(o, 'reference');
  r.parse(o, 'reference', parseReference);
  return {
    schemaVersion: r.version(o),
    reference,
    digest: r.parse(o, 'digest', parseDigest),
    updatedAt: r.string(o, 'updatedAt'),
  };
}
