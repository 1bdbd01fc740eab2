/**
 * Store verification (`stevedore verify`, like `git fsck` or `restic check`): reads back what the
 * store holds and checks it end to end, changing nothing.
 *
 * - references (tags, and the digest references pulls by digest keep): each points at an image
 *   record, or at a stored index with at least one of its platform images committed; a digest
 *   reference at its own digest;
 * - images: their manifest and config blobs are stored and hash to their digests, and every layer
 *   they list has a layer record;
 * - blobs: every blob checked is read whole and hashed (the compressed layer blobs a `keep` store
 *   holds too; a layer whose blob is absent is not a problem: it came from the same layer
 *   compressed another way, or the store drops blobs);
 * - layers: every layer is rebuilt from its splitstream and objects, each object checked against
 *   its sha256 and the whole tar against its diffID and size (the read path's own checks);
 * - layer-blob records (without references given): each names a layer record.
 *
 * With references given, only what they reach is checked; without, everything the store lists,
 * unreferenced images and layers included. Safe while workers pull: a record that disappears
 * between the listing and its check (a reference removed meanwhile) is skipped, not reported.
 * docs/store-format.md ("Verification") has the costs.
 */
import {
  parseManifest,
  MAX_MANIFEST_BYTES,
  formatReference,
  parseReference,
  type Digest,
  type DiffID,
  type Reference,
} from '@stevedore/oci/spec';
import { ObjectNotFoundError } from './errors.ts';
import type { ImageRecord, LayerRecord } from './records.ts';
import type { Store } from './store.ts';

export interface VerifyProblem {
  /** What is wrong: `reference <ref>`, `image <digest>`, `blob <digest>` or `layer <diffID>`. */
  readonly subject: string;
  readonly message: string;
}

export interface VerifyResult {
  readonly references: number;
  readonly images: number;
  /** Blobs read and hashed, and their bytes. */
  readonly blobs: { readonly count: number; readonly bytes: number };
  /** Layers rebuilt, and their tar bytes. */
  readonly layers: { readonly count: number; readonly bytes: number };
  readonly problems: readonly VerifyProblem[];
}

export interface VerifyOptions {
  /** Check only what these reach (each must be in the store); everything when absent. */
  readonly references?: readonly Reference[];
  readonly signal?: AbortSignal;
  /** Called as each problem is found (results come at the end). */
  readonly onProblem?: (problem: VerifyProblem) => void;
  /** Called after each layer is rebuilt: its diffID and tar bytes. */
  readonly onLayer?: (diffID: DiffID, bytes: number) => void;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Reads a stream to its end and counts its bytes; rejects with the stream's error. */
async function drain(stream: AsyncIterable<Uint8Array>): Promise<number> {
  let bytes = 0;
  for await (const chunk of stream) bytes += chunk.length;
  return bytes;
}

/** False when a listed reference was removed or moved since the listing (nothing to report). */
async function stillPointsAt(
  store: Store,
  ref: { name: string; digest: Digest },
  signal: AbortSignal | undefined,
): Promise<boolean> {
  const now = await store.getReference(parseReference(ref.name), { signal });
  return now?.digest === ref.digest;
}

export async function verifyStore(store: Store, options: VerifyOptions = {}): Promise<VerifyResult> {
  const { signal } = options;
  const problems: VerifyProblem[] = [];
  const problem = (subject: string, text: string): void => {
    const p = { subject, message: text };
    problems.push(p);
    options.onProblem?.(p);
  };
  const images = new Map<Digest, ImageRecord>();
  /** Blobs to read and hash: true when an image needs it (missing is a problem), false when optional. */
  const blobs = new Map<Digest, boolean>();
  const needBlob = (digest: Digest, required: boolean): void => {
    blobs.set(digest, (blobs.get(digest) ?? false) || required);
  };
  /** Blobs already read and hashed (an index read while resolving a reference). */
  const readBlobs = new Map<Digest, number>();
  /** Layers to rebuild, each with the problems to report if it has no record. */
  const neededLayers = new Map<DiffID, VerifyProblem[]>();
  const needLayer = (diffID: DiffID, ifMissing: VerifyProblem): void => {
    neededLayers.set(diffID, [...(neededLayers.get(diffID) ?? []), ifMissing]);
  };
  /** Layer records the store lists (without references given). */
  const listed = new Map<DiffID, LayerRecord>();
  const everything = options.references === undefined;

  // References: what each points at must be there.
  const refs: { name: string; digest: Digest }[] = [];
  if (options.references === undefined) {
    for (const r of await store.listReferences({ signal }))
      refs.push({ name: r.reference, digest: r.digest });
  } else {
    for (const ref of options.references) {
      const r = await store.getReference(ref, { signal });
      if (r === undefined) problem(`reference ${formatReference(ref)}`, 'not in the store');
      else refs.push({ name: r.reference, digest: r.digest });
    }
  }
  for (const ref of refs) {
    const subject = `reference ${ref.name}`;
    const pinned = parseReference(ref.name).digest;
    // Reported, and what it points at is still checked below.
    if (pinned !== undefined && pinned !== ref.digest)
      problem(subject, `points at ${ref.digest}, not at its own digest`);
    const image = await store.getImage(ref.digest, { signal });
    if (image !== undefined) {
      images.set(ref.digest, image);
      continue;
    }
    let bytes: Buffer;
    try {
      bytes = await store.getBlobBytes(ref.digest, { signal });
    } catch (err) {
      if (!(err instanceof ObjectNotFoundError)) problem(`blob ${ref.digest}`, message(err));
      else if (!everything || (await stillPointsAt(store, ref, signal)))
        problem(subject, `points at ${ref.digest}, which is not in the store`);
      continue;
    }
    readBlobs.set(ref.digest, bytes.length);
    needBlob(ref.digest, true);
    let parsed: ReturnType<typeof parseManifest>;
    try {
      if (bytes.length > MAX_MANIFEST_BYTES) throw new Error(`${bytes.length} bytes: not a manifest`);
      parsed = parseManifest(bytes);
    } catch (err) {
      problem(subject, `points at ${ref.digest}, which is not a manifest: ${message(err)}`);
      continue;
    }
    if (parsed.kind === 'manifest') {
      problem(subject, `points at manifest ${ref.digest}, which has no image record`);
      continue;
    }
    let found = 0;
    for (const entry of parsed.index.manifests) {
      const platformImage = await store.getImage(entry.digest, { signal });
      // Platforms that were not pulled are listed in the index but not stored.
      if (platformImage === undefined) continue;
      images.set(entry.digest, platformImage);
      found += 1;
    }
    if (found === 0) {
      problem(
        subject,
        `points at index ${ref.digest}, none of whose ${parsed.index.manifests.length} platform images is in the store`,
      );
    }
  }
  if (everything)
    for (const image of await store.listImages({ signal })) images.set(image.manifest.digest, image);

  // Images: their blobs, and a record for each of their layers (checked once per layer, below).
  for (const [digest, image] of images) {
    needBlob(image.manifest.digest, true);
    needBlob(image.config.digest, true);
    for (const layer of image.layers) {
      needBlob(layer.digest, false);
      needLayer(layer.diffID, {
        subject: `image ${digest}`,
        message: `layer ${layer.diffID} (blob ${layer.digest}) has no layer record`,
      });
    }
  }
  if (everything) {
    for (const blob of await store.listBlobs({ signal })) needBlob(blob.digest, false);
    for (const record of await store.listLayers({ signal })) listed.set(record.diffID, record);
    for (const record of await store.listLayerBlobs({ signal })) {
      needLayer(record.diffID, {
        subject: `blob ${record.digest}`,
        message: `its layer-blob record names layer ${record.diffID}, which has no layer record`,
      });
    }
  }

  // Blobs: read whole and hashed (getBlob checks the digest at the end of the stream).
  let blobCount = 0;
  let blobBytes = 0;
  for (const [digest, required] of blobs) {
    const already = readBlobs.get(digest);
    if (already !== undefined) {
      blobCount += 1;
      blobBytes += already;
      continue;
    }
    try {
      blobBytes += await drain(await store.getBlob(digest, { signal }));
      blobCount += 1;
    } catch (err) {
      if (signal?.aborted === true) throw err;
      // Absent: a problem only when an image needs it (a layer's blob may be absent, or deleted
      // by a `drop` store since the listing).
      if (err instanceof ObjectNotFoundError) {
        if (required) problem(`blob ${digest}`, 'an image needs it and it is not in the store');
        continue;
      }
      problem(`blob ${digest}`, message(err));
    }
  }

  // Layers: rebuilt, every object and the whole tar checked by the read path.
  let layerCount = 0;
  let layerBytes = 0;
  for (const diffID of new Set([...listed.keys(), ...neededLayers.keys()])) {
    const record = listed.get(diffID) ?? (await store.getLayer(diffID, { signal }));
    if (record === undefined) {
      for (const p of neededLayers.get(diffID) ?? []) problem(p.subject, p.message);
      continue;
    }
    try {
      const bytes = await drain(await store.openLayer(diffID, { signal }));
      if (bytes !== record.size) throw new Error(`rebuilt ${bytes} bytes, the record says ${record.size}`);
      layerCount += 1;
      layerBytes += bytes;
      options.onLayer?.(diffID, bytes);
    } catch (err) {
      if (signal?.aborted === true) throw err;
      problem(`layer ${diffID}`, message(err));
    }
  }

  return {
    references: refs.length,
    images: images.size,
    blobs: { count: blobCount, bytes: blobBytes },
    layers: { count: layerCount, bytes: layerBytes },
    problems,
  };
}
