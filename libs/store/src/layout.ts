/**
 * Where everything lives in the backend's key space (docs/store-format.md "Layout"):
 *
 *     stevedore-store.json                      format marker and parameters
 *     blobs/<alg>/<hex>                         manifests, configs, compressed layers (by policy)
 *     packs/<id>.pack                           packed small objects (random 128-bit id)
 *     index/<ms timestamp>-<sha256 hex>.idx     where objects are (one file per import)
 *     splitstreams/<id>.split                   zstd-compressed splitstreams (random id)
 *     layers/<alg>/<hex>.json                   layer records, by diffID
 *     layer-blobs/<alg>/<hex>.json              compressed layer digest -> diffID
 *     images/<alg>/<hex>.json                   image records, by manifest digest
 *     refs/<registry>/<repository>/_tags/<tag>.json             tag references
 *     refs/<registry>/<repository>/_digests/<alg>/<hex>.json    digest references (pulls by digest)
 *     layer-variants/<alg>/<hex>/<recipe>.json  a layer's recompressed digest and size (variants.ts)
 *     exports/<id>.tar[.gz|.zst], <id>.json     export archives written by export jobs
 */
import { digestAlgorithm, digestHex, type Digest, type Reference } from '@stevedore/oci/spec';

export const FORMAT_KEY = 'stevedore-store.json';
export const PREFIX = {
  blobs: 'blobs/',
  packs: 'packs/',
  index: 'index/',
  splitstreams: 'splitstreams/',
  layers: 'layers/',
  layerBlobs: 'layer-blobs/',
  images: 'images/',
  refs: 'refs/',
  layerVariants: 'layer-variants/',
  exports: 'exports/',
} as const;

/** Index file names start with a fixed-width millisecond timestamp, so they list in time order. */
const TIMESTAMP_DIGITS = 13;
/**
 * Index files published within this window before the newest one already loaded are listed again
 * on refresh (a writer may publish an older-named index late, or run on a skewed clock). Missing
 * one only costs a duplicate object write, never correctness.
 */
export const INDEX_RELIST_WINDOW_MS = 10 * 60 * 1000;

const path = (prefix: string, d: Digest, ext = ''): string =>
  `${prefix}${digestAlgorithm(d)}/${digestHex(d)}${ext}`;

export const blobKey = (d: Digest): string => path(PREFIX.blobs, d);
export const layerKey = (diffID: Digest): string => path(PREFIX.layers, diffID, '.json');
export const layerBlobKey = (d: Digest): string => path(PREFIX.layerBlobs, d, '.json');
export const imageKey = (manifest: Digest): string => path(PREFIX.images, manifest, '.json');
export const packKey = (id: string): string => `${PREFIX.packs}${id}.pack`;
export const splitstreamKey = (id: string): string => `${PREFIX.splitstreams}${id}.split`;

export function indexKey(timeMs: number, hashHex: string): string {
  return `${PREFIX.index}${String(timeMs).padStart(TIMESTAMP_DIGITS, '0')}-${hashHex}.idx`;
}

/** The timestamp and content hash in an index key, or undefined if the key is not one. */
export function parseIndexKey(key: string): { timeMs: number; hashHex: string } | undefined {
  const m = /^index\/(\d{13})-([0-9a-f]{64})\.idx$/.exec(key);
  return m === null ? undefined : { timeMs: Number(m[1]), hashHex: m[2]! };
}

/** The first key to list from to see every index newer than `timeMs` minus the relist window. */
export function indexListCursor(timeMs: number): string {
  const from = Math.max(0, timeMs - INDEX_RELIST_WINDOW_MS);
  return `${PREFIX.index}${String(from).padStart(TIMESTAMP_DIGITS, '0')}`;
}

/**
 * Tags live under `_tags/`, digests under `_digests/`: no repository path component can start with
 * `_`, so neither can be taken for part of a repository name.
 */
const TAGS_DIR = '_tags';
const DIGESTS_DIR = '_digests';

/**
 * Key of a reference: `registry/repository:tag` under `_tags/<tag>.json`, a digest reference
 * `registry/repository@<alg>:<hex>` (no tag: what a pull by digest keeps) under
 * `_digests/<alg>/<hex>.json`. A reference with both a tag and a digest is its tag's reference (the
 * tag is the name that moves; the digest only pins what it must point at). Throws when the
 * reference has neither.
 */
export function referenceKey(ref: Reference): string {
  const repository = `${PREFIX.refs}${ref.registry}/${ref.repository}/`;
  if (ref.tag !== undefined) return `${repository}${TAGS_DIR}/${ref.tag}.json`;
  if (ref.digest !== undefined) return path(`${repository}${DIGESTS_DIR}/`, ref.digest, '.json');
  throw new Error(`reference ${ref.registry}/${ref.repository} has neither tag nor digest`);
}

/**
 * The name a reference record carries (the `reference` field), for the same key as
 * {@link referenceKey}: `registry/repository:tag`, or `registry/repository@<alg>:<hex>`.
 */
export function referenceName(ref: Reference): string {
  const repository = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) return `${repository}:${ref.tag}`;
  if (ref.digest !== undefined) return `${repository}@${ref.digest}`;
  throw new Error(`reference ${repository} has neither tag nor digest`);
}
