/**
 * The images the pull benchmark pulls: two images sharing a base layer, built from real
 * directories (the full set) or from generated trees (`--quick`), gzip-compressed.
 *
 * Layer files are cached in `<os tmpdir>/stevedore-bench-cache/<key>/`, where the key is a hash of
 * everything the bytes depend on: the set's spec, zlib's version (gzip output depends on it) and,
 * for directories, a fingerprint of every entry (path, type, mode, size, mtime). A rerun with the
 * same inputs reuses the files; a changed /usr (a package installed) builds a new set. `set.json`
 * is written last, under a temporary name then renamed, so an interrupted build is never reused.
 */
import { Stats } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  Digester,
  digestHex,
  digestOf,
  parseDiffID,
  parseDigest,
  type Descriptor,
  type Digest,
} from '@stevedore/oci';
import { INLINE_MAX } from '@stevedore/store';
import {
  buildImage,
  directoryTarEntries,
  generateTree,
  ociLayerMediaType,
  treeTarEntries,
  writeLayerFile,
  type Compression,
  type EntryBody,
  type FixtureImage,
  type GenerateTreeOptions,
  type Layer,
  type SkippedEntry,
  type TarEntry,
} from '@stevedore/testing';

/** Bump when the way layers are built changes, so old cache entries are not reused. */
const CACHE_FORMAT = 1;
export const DEFAULT_CACHE_ROOT = join(tmpdir(), 'stevedore-bench-cache');
const SET_FILE = 'set.json';
/** Cache keys are sha256 hex; this many characters name the directory (collisions: 2^-64). */
const KEY_CHARS = 16;
/** Fixed mtime and owner of directory layers: the tar depends on the files, not on install time. */
const LAYER_MTIME = 1_704_067_200;
const ROOT_OWNER = { uid: 0, gid: 0 } as const;

export type LayerSource =
  | { readonly kind: 'directory'; readonly path: string; readonly prefix: string }
  | { readonly kind: 'generated'; readonly tree: GenerateTreeOptions };

export interface LayerSpec {
  readonly name: string;
  readonly source: LayerSource;
}

export interface ImageSpec {
  /** `repository:tag`, pushed to and pulled from the benchmark's registry. */
  readonly ref: string;
  /** Layer names, bottom first. */
  readonly layers: readonly string[];
}

export interface ImageSetSpec {
  readonly name: string;
  readonly compression: Compression;
  readonly layers: readonly LayerSpec[];
  readonly images: readonly ImageSpec[];
}

/** issue 4: a base from /usr/share, one image adds /usr/include, the other /usr/bin. */
export const USR_SET: ImageSetSpec = {
  name: 'usr',
  compression: 'gzip',
  layers: [
    { name: 'usr-share', source: { kind: 'directory', path: '/usr/share', prefix: 'usr/share' } },
    { name: 'usr-include', source: { kind: 'directory', path: '/usr/include', prefix: 'usr/include' } },
    { name: 'usr-bin', source: { kind: 'directory', path: '/usr/bin', prefix: 'usr/bin' } },
  ],
  images: [
    { ref: 'bench/usr-include:1', layers: ['usr-share', 'usr-include'] },
    { ref: 'bench/usr-bin:1', layers: ['usr-share', 'usr-bin'] },
  ],
};

/**
 * `--set usr-share`: the base of {@link USR_SET} alone as one image, the image issue 4's time
 * target names (a 250 MB gzip image of 50,000 files).
 */
export const USR_SHARE_SET: ImageSetSpec = {
  name: 'usr-share',
  compression: 'gzip',
  layers: [{ name: 'usr-share', source: { kind: 'directory', path: '/usr/share', prefix: 'usr/share' } }],
  images: [{ ref: 'bench/usr-share:1', layers: ['usr-share'] }],
};

/** `--quick`: the same shape from small generated trees (a few MB), built in about a second. */
export const QUICK_SET: ImageSetSpec = {
  name: 'quick',
  compression: 'gzip',
  layers: [
    { name: 'base', source: { kind: 'generated', tree: { seed: 41, files: 600, largeFiles: 2 } } },
    { name: 'app-a', source: { kind: 'generated', tree: { seed: 42, files: 200, root: 'app' } } },
    { name: 'app-b', source: { kind: 'generated', tree: { seed: 43, files: 200, root: 'tools' } } },
  ],
  images: [
    { ref: 'bench/quick-a:1', layers: ['base', 'app-a'] },
    { ref: 'bench/quick-b:1', layers: ['base', 'app-b'] },
  ],
};

export interface SetLayer {
  readonly name: string;
  readonly layer: Layer;
  /** Regular files in the layer. */
  readonly files: number;
}

export interface ImageSet {
  readonly spec: ImageSetSpec;
  /** Where the layer files are. */
  readonly dir: string;
  /** True when the layer files came from the cache. */
  readonly cached: boolean;
  readonly layers: readonly SetLayer[];
  readonly images: readonly { readonly ref: string; readonly image: FixtureImage }[];
  /** Layer and config blobs, each once: what an ideal puller fetches from the registry. */
  readonly uniqueBlobBytes: number;
  /** Compressed layer blobs, each once. */
  readonly uniqueLayerBytes: number;
  /** Uncompressed tars of the unique layers: what is split. */
  readonly uniqueTarBytes: number;
  /** Regular files over the inline limit, each distinct content once (by sha256). */
  readonly uniqueFileContentBytes: number;
  readonly files: number;
  /** Entries that could not be read while building (reported, not fatal). */
  readonly skipped: readonly SkippedEntry[];
}

/** What `set.json` holds. */
interface CachedSet {
  readonly format: number;
  readonly key: string;
  readonly layers: readonly {
    readonly name: string;
    readonly compression: Compression;
    readonly digest: string;
    readonly size: number;
    readonly diffId: string;
    readonly uncompressedSize: number;
    readonly file: string;
    readonly files: number;
  }[];
  readonly uniqueFileContentBytes: number;
  readonly skipped: readonly SkippedEntry[];
}

function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * A digest of every entry under `root`: relative path, type, mode, size and mtime, in sorted
 * order. Cheap (lstat only) and changes whenever a file is added, removed or rewritten.
 */
export async function directoryFingerprint(root: string): Promise<Digest> {
  const digester = new Digester();
  const walk = async (dir: string, rel: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(dir)).sort(byName);
    } catch (err) {
      digester.update(Buffer.from(`${rel}\0unreadable:${(err as NodeJS.ErrnoException).code}\n`));
      return;
    }
    // lstat a directory's entries at once (the walk is I/O bound), then hash them in order.
    const stats = await Promise.all(
      names.map((name) => lstat(join(dir, name)).catch((err: NodeJS.ErrnoException) => err)),
    );
    for (const [i, name] of names.entries()) {
      const s = stats[i]!;
      if (!(s instanceof Stats)) {
        digester.update(Buffer.from(`${rel}/${name}\0unreadable:${s.code}\n`));
        continue;
      }
      digester.update(Buffer.from(`${rel}/${name}\0${s.mode}\0${s.size}\0${s.mtimeMs}\n`));
      if (s.isDirectory()) await walk(join(dir, name), `${rel}/${name}`);
    }
  };
  await walk(root, '');
  return digester.digest();
}

/** The cache key of a set: a sha256 over its spec, zlib's version and the directories' fingerprints. */
export async function cacheKey(spec: ImageSetSpec): Promise<string> {
  const fingerprints: Record<string, string> = {};
  for (const l of spec.layers) {
    if (l.source.kind === 'directory') fingerprints[l.name] = await directoryFingerprint(l.source.path);
  }
  const inputs = JSON.stringify({
    format: CACHE_FORMAT,
    zlib: process.versions.zlib,
    spec,
    fingerprints,
  });
  return digestHex(digestOf(inputs)).slice(0, KEY_CHARS);
}

/** Wraps file bodies so that each file's content is hashed as the packer reads it. */
async function* hashingEntries(
  entries: Iterable<TarEntry> | AsyncIterable<TarEntry>,
  onFile: (digest: Digest, size: number) => void,
): AsyncGenerator<TarEntry> {
  for await (const entry of entries) {
    const body = entry.body;
    if (body === undefined) {
      yield entry;
      continue;
    }
    const hashed: EntryBody = () =>
      (async function* () {
        const digester = new Digester();
        for await (const chunk of body()) {
          digester.update(chunk);
          yield chunk;
        }
        onFile(digester.digest(), digester.size);
      })();
    yield { header: entry.header, body: hashed };
  }
}

function layerOf(entry: CachedSet['layers'][number], dir: string): Layer {
  const descriptor: Descriptor = {
    mediaType: ociLayerMediaType(entry.compression),
    digest: parseDigest(entry.digest),
    size: entry.size,
  };
  return {
    compression: entry.compression,
    descriptor,
    diffId: parseDiffID(entry.diffId),
    uncompressedSize: entry.uncompressedSize,
    content: { kind: 'file', path: join(dir, entry.file) },
  };
}

/** The cached set in `dir`, if complete: `set.json` present and every layer file of its size. */
async function loadCached(dir: string, key: string): Promise<CachedSet | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, SET_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`reading the cached image set ${dir} failed`, { cause: err });
  }
  const cached = JSON.parse(text) as CachedSet;
  if (cached.format !== CACHE_FORMAT || cached.key !== key) return undefined;
  for (const l of cached.layers) {
    try {
      if ((await stat(join(dir, l.file))).size !== l.size) return undefined;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new Error(`checking cached layer ${l.file} failed`, { cause: err });
    }
  }
  return cached;
}

async function buildSet(spec: ImageSetSpec, dir: string, key: string): Promise<CachedSet> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const contents = new Map<Digest, number>();
  const skipped: SkippedEntry[] = [];
  const layers: CachedSet['layers'][number][] = [];
  for (const l of spec.layers) {
    let files = 0;
    const onFile = (digest: Digest, size: number): void => {
      files++;
      if (size > INLINE_MAX) contents.set(digest, size);
    };
    const entries =
      l.source.kind === 'directory'
        ? directoryTarEntries(
            l.source.path,
            { prefix: l.source.prefix, mtime: LAYER_MTIME, owner: ROOT_OWNER },
            skipped,
          )
        : treeTarEntries(generateTree(l.source.tree));
    const layer = await writeLayerFile(hashingEntries(entries, onFile), dir, {
      compression: spec.compression,
    });
    if (layer.content.kind !== 'file') throw new Error(`layer ${l.name} was not written to a file`);
    layers.push({
      name: l.name,
      compression: layer.compression,
      digest: layer.descriptor.digest,
      size: layer.descriptor.size,
      diffId: layer.diffId,
      uncompressedSize: layer.uncompressedSize,
      file: layer.content.path.slice(dir.length + 1),
      files,
    });
  }
  const set: CachedSet = {
    format: CACHE_FORMAT,
    key,
    layers,
    uniqueFileContentBytes: [...contents.values()].reduce((a, b) => a + b, 0),
    skipped,
  };
  const temporary = join(dir, `.${SET_FILE}.tmp`);
  await writeFile(temporary, `${JSON.stringify(set, null, 2)}\n`);
  await rename(temporary, join(dir, SET_FILE));
  return set;
}

/**
 * Removes the set's older cache entries (other keys of the same set name): a key changes when the
 * source files do, and an old key's layers would only fill the temp dir.
 */
async function pruneOtherKeys(root: string, name: string, keep: string): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch (err) {
    throw new Error(`listing the benchmark cache ${root} failed`, { cause: err });
  }
  // Exactly `<name>-<key>`: the usr set must not take the usr-share set's entries for its own.
  const ours = new RegExp(`^${name.replace(/[^a-z0-9]/g, '\\$&')}-[0-9a-f]{${KEY_CHARS}}$`);
  for (const entry of entries) {
    const path = join(root, entry);
    if (ours.test(entry) && path !== keep) await rm(path, { recursive: true, force: true });
  }
}

export interface PrepareOptions {
  /** Default {@link DEFAULT_CACHE_ROOT}. */
  readonly cacheRoot?: string;
  /** Told before a build starts (about two minutes for the /usr set). */
  readonly onBuild?: (dir: string) => void;
}

/** The layer files and images of `spec`, from the cache or built now. */
export async function prepareImageSet(spec: ImageSetSpec, options: PrepareOptions = {}): Promise<ImageSet> {
  const root = options.cacheRoot ?? DEFAULT_CACHE_ROOT;
  const key = await cacheKey(spec);
  const dir = join(root, `${spec.name}-${key}`);
  let set = await loadCached(dir, key);
  const cached = set !== undefined;
  if (set === undefined) {
    options.onBuild?.(dir);
    set = await buildSet(spec, dir, key);
    await pruneOtherKeys(root, spec.name, dir);
  }
  const layers = new Map<string, SetLayer>(
    set.layers.map((l) => [l.name, { name: l.name, layer: layerOf(l, dir), files: l.files }]),
  );
  const images = spec.images.map((img) => ({
    ref: img.ref,
    image: buildImage({
      layers: img.layers.map((name) => {
        const l = layers.get(name);
        if (l === undefined) throw new Error(`image ${img.ref} names the unknown layer ${name}`);
        return l.layer;
      }),
    }),
  }));
  const blobs = new Map<string, number>();
  for (const { image } of images) {
    blobs.set(image.config.descriptor.digest, image.config.descriptor.size);
    for (const d of image.layerDescriptors) blobs.set(d.digest, d.size);
  }
  const setLayers = [...layers.values()];
  // Two layer specs could give the same bytes: count each blob once.
  const distinct = [...new Map(setLayers.map((l) => [l.layer.descriptor.digest, l.layer])).values()];
  return {
    spec,
    dir,
    cached,
    layers: setLayers,
    images,
    uniqueBlobBytes: [...blobs.values()].reduce((a, b) => a + b, 0),
    uniqueLayerBytes: distinct.reduce((n, l) => n + l.descriptor.size, 0),
    uniqueTarBytes: distinct.reduce((n, l) => n + l.uncompressedSize, 0),
    uniqueFileContentBytes: set.uniqueFileContentBytes,
    files: setLayers.reduce((n, l) => n + l.files, 0),
    skipped: set.skipped,
  };
}
