/**
 * Layer variants (docs/store-format.md "Layer variants"): what a stored layer compresses to with a
 * given deterministic recipe (codec, level, codec library version). An export must write a
 * recompressed layer's size in its tar header before the content, so it looks the size up here; the
 * first export (or whoever compresses the layer first) computes and records it.
 *
 *     layer-variants/<alg>/<diffID hex>/<compression>-<level>-<codec>.json
 *
 * The record is keyed by the whole recipe: a Node upgrade that bundles another zlib or zstd gives
 * new keys (and a new first-export pass), never a mismatch with an old record.
 */
import {
  digestAlgorithm,
  digestHex,
  parseDiffID,
  parseDigest,
  type DiffID,
  type Digest,
} from '@stevedore/oci/spec';
import { InvalidFormatError } from './errors.ts';
import { PREFIX } from './layout.ts';
import { SCHEMA_VERSION } from './records.ts';

/** The codecs a layer is recompressed with. */
export type VariantCompression = 'gzip' | 'zstd';

/** A deterministic compression recipe: the same recipe on the same tar gives the same bytes. */
export interface VariantRecipe {
  readonly compression: VariantCompression;
  readonly level: number;
  /** Codec library and version, e.g. `zlib 1.3.2.1-motley-8002e91` or `zstd 1.5.7`. */
  readonly codec: string;
}

/** `layer-variants/<alg>/<diffID hex>/<recipe>.json`: a layer compressed with a recipe. */
export interface LayerVariantRecord extends VariantRecipe {
  readonly schemaVersion: 1;
  readonly diffID: DiffID;
  /** Digest of the compressed bytes. */
  readonly digest: Digest;
  /** Compressed size. */
  readonly size: number;
  readonly createdAt: string;
}

/** Characters a recipe keeps in its key (safe on POSIX file systems and S3); others become `_`. */
const UNSAFE_KEY_CHARS = /[^A-Za-z0-9._-]/g;

/** `<compression>-<level>-<codec>` with unsafe characters replaced. */
export function recipeName(recipe: VariantRecipe): string {
  return `${recipe.compression}-${recipe.level}-${recipe.codec}`.replace(UNSAFE_KEY_CHARS, '_');
}

export function layerVariantKey(diffID: Digest, recipe: VariantRecipe): string {
  return `${PREFIX.layerVariants}${digestAlgorithm(diffID)}/${digestHex(diffID)}/${recipeName(recipe)}.json`;
}

function fail(key: string, what: string, cause?: unknown): never {
  throw new InvalidFormatError(`record ${key}: ${what}`, cause === undefined ? undefined : { cause });
}

export function decodeLayerVariantRecord(bytes: Uint8Array, key: string): LayerVariantRecord {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8')) as Record<
      string,
      unknown
    >;
  } catch (err) {
    fail(key, 'invalid JSON', err);
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) fail(key, 'record must be an object');
  if (o.schemaVersion !== SCHEMA_VERSION)
    fail(key, `unsupported schemaVersion ${JSON.stringify(o.schemaVersion)}`);
  const str = (name: string): string => {
    const v = o[name];
    if (typeof v !== 'string') fail(key, `${name} must be a string`);
    return v;
  };
  const count = (name: string): number => {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      fail(key, `${name} must be a non-negative integer`);
    return v;
  };
  const parse = <T>(name: string, parser: (s: string) => T): T => {
    try {
      return parser(str(name));
    } catch (err) {
      if (err instanceof InvalidFormatError) throw err;
      fail(key, `${name}: ${err instanceof Error ? err.message : String(err)}`, err);
    }
  };
  const compression = str('compression');
  if (compression !== 'gzip' && compression !== 'zstd') fail(key, `unknown compression "${compression}"`);
  return {
    schemaVersion: SCHEMA_VERSION,
    diffID: parse('diffID', parseDiffID),
    compression,
    level: count('level'),
    codec: str('codec'),
    digest: parse('digest', parseDigest),
    size: count('size'),
    createdAt: str('createdAt'),
  };
}
