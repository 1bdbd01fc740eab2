/**
 * From what the user asked for (references, digests) to the image records to export, before any
 * byte is written: unknown references, images still being committed and impossible requests fail
 * here with a message naming the reference.
 */
import {
  familiarReference,
  formatPlatform,
  formatReference,
  hostPlatform,
  InvalidDigestError,
  InvalidReferenceError,
  MAX_MANIFEST_BYTES,
  parseDigest,
  parseManifest,
  parsePlatform,
  parseReference,
  platformMatches,
  type Digest,
  type ImageIndex,
  type MediaType,
  type Platform,
  type Reference,
} from '@stevedore/oci/spec';
import type { ImageRecord, Store } from '@stevedore/store';
import { ExportRequestError, IncompleteImageError, UnknownReferenceError } from './errors.ts';
import type { ExportFormat } from './options.ts';

/** What the export reads from the store. */
export type ExportStore = Pick<
  Store,
  | 'blobPolicy'
  | 'limiter'
  | 'backend'
  | 'getReference'
  | 'getImage'
  | 'hasBlob'
  | 'getBlob'
  | 'getBlobBytes'
  | 'getLayer'
  | 'openLayer'
  | 'openLayerBlocks'
  | 'prepareReads'
  | 'getLayerVariant'
  | 'putLayerVariant'
>;

/** One thing to export, as asked. */
export interface ExportTarget {
  /** A reference (`alpine:3.20`, `host/repo:tag`, `repo@sha256:…`) or a bare digest. */
  readonly input: string;
  /** Export this digest under the reference's name instead of what the reference points at now. */
  readonly digest?: Digest;
}

/** Platform images to export: `all` stored ones, one platform, or the default (see below). */
export type PlatformChoice = Platform | 'all' | undefined;

/** `os/arch[/variant]`, `all`, or `default`/absent; throws InvalidPlatformError. */
export function parsePlatformChoice(input: string | undefined): PlatformChoice {
  if (input === undefined || input === 'default') return undefined;
  return input === 'all' ? 'all' : parsePlatform(input);
}

/** A target resolved against the store. */
export interface ResolvedTarget {
  readonly input: string;
  /** `registry/repository:tag`, or undefined when the target names a digest only. */
  readonly name: string | undefined;
  /** The short name `docker save` writes in RepoTags (`alpine:3.20`, `host:5000/app:1`). */
  readonly familiarName: string | undefined;
  /** What the target points at: an image manifest or an index. */
  readonly digest: Digest;
  /** Set when `digest` is an index (or Docker manifest list). */
  readonly index?: { readonly mediaType: MediaType; readonly bytes: Buffer; readonly index: ImageIndex };
  /** The platform images selected, in index order. */
  readonly images: readonly ImageRecord[];
}

function parseTarget(input: string): { ref: Reference | undefined; digest: Digest | undefined } {
  if (!input.includes('/') && !input.includes('@') && input.includes(':')) {
    try {
      return { ref: undefined, digest: parseDigest(input) };
    } catch (err) {
      if (!(err instanceof InvalidDigestError)) throw err;
      // Not a digest: `alpine:3.20` is a reference.
    }
  }
  try {
    const ref = parseReference(input);
    return { ref, digest: ref.digest };
  } catch (err) {
    if (err instanceof InvalidReferenceError) throw new ExportRequestError(err.message, { cause: err });
    throw err;
  }
}

function platformOf(image: ImageRecord): string {
  return image.platform === undefined ? '(no platform)' : formatPlatform(image.platform);
}

/**
 * The platform images to export. By default an OCI archive takes every stored platform; a docker
 * archive holds one image per tag, so it takes the only one, else the host's.
 */
function selectImages(
  input: string,
  stored: readonly ImageRecord[],
  platform: PlatformChoice,
  format: ExportFormat,
): ImageRecord[] {
  const list = (): string => stored.map(platformOf).join(', ');
  if (platform === 'all' || (platform === undefined && format === 'oci')) {
    if (format === 'docker' && stored.length > 1) {
      throw new ExportRequestError(
        `"${input}" has ${stored.length} platform images (${list()}): a docker archive holds one image per tag; choose one with a platform, or export the OCI format`,
      );
    }
    return [...stored];
  }
  if (platform === undefined && stored.length === 1) return [...stored];
  const want = platform ?? hostPlatform();
  const matching = stored.filter((i) => i.platform !== undefined && platformMatches(want, i.platform));
  if (matching.length === 0) {
    throw new ExportRequestError(
      `"${input}" has no image for platform ${formatPlatform(want)} in the store (stored: ${list()})`,
    );
  }
  return matching.slice(0, 1);
}

async function resolveOne(
  store: ExportStore,
  target: ExportTarget,
  platform: PlatformChoice,
  format: ExportFormat,
  signal: AbortSignal | undefined,
): Promise<ResolvedTarget> {
  const { ref, digest: named } = parseTarget(target.input);
  const name = ref?.tag === undefined ? undefined : formatReference({ ...ref, digest: undefined });
  const familiarName = ref?.tag === undefined ? undefined : familiarReference({ ...ref, digest: undefined });
  let digest = target.digest ?? named;
  if (digest === undefined && ref !== undefined) {
    digest = (await store.getReference(ref, { signal }))?.digest;
  }
  if (digest === undefined) throw new UnknownReferenceError(target.input);
  const base = { input: target.input, name, familiarName, digest };

  const image = await store.getImage(digest, { signal });
  if (image !== undefined) return { ...base, images: [image] };
  if (!(await store.hasBlob(digest, { signal }))) {
    if (named !== undefined || target.digest !== undefined) throw new UnknownReferenceError(target.input);
    throw new IncompleteImageError(`"${target.input}" points at ${digest}, which is not in the store`);
  }
  const bytes = await store.getBlobBytes(digest, { signal });
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new ExportRequestError(
      `"${target.input}": blob ${digest} is not a manifest (${bytes.length} bytes)`,
    );
  }
  const parsed = parseManifest(bytes);
  if (parsed.kind === 'manifest') {
    throw new IncompleteImageError(
      `image ${digest} ("${target.input}") is not fully committed: no image record yet (a pull still running, or one that failed)`,
    );
  }
  const stored: ImageRecord[] = [];
  for (const entry of parsed.index.manifests) {
    const record = await store.getImage(entry.digest, { signal });
    // Platforms that were not pulled are listed in the index but not stored.
    if (record !== undefined) stored.push(record);
  }
  if (stored.length === 0) {
    throw new IncompleteImageError(
      `"${target.input}" is an index (${digest}) none of whose ${parsed.index.manifests.length} platform images is committed in the store`,
    );
  }
  return {
    ...base,
    index: { mediaType: parsed.mediaType, bytes, index: parsed.index },
    images: selectImages(target.input, stored, platform, format),
  };
}

/** Resolves every target, in order; the first problem throws. */
export async function resolveTargets(
  store: ExportStore,
  targets: readonly ExportTarget[],
  options: { platform?: PlatformChoice; format: ExportFormat; signal?: AbortSignal },
): Promise<ResolvedTarget[]> {
  if (targets.length === 0) throw new ExportRequestError('nothing to export: no reference given');
  const out: ResolvedTarget[] = [];
  for (const target of targets) {
    out.push(await resolveOne(store, target, options.platform, options.format, options.signal));
  }
  return out;
}
