/**
 * One-layer images committed the way the pipeline commits them (blobs, layer, layer blob, image,
 * reference), for the suites that need whole images in a store (verify, gc).
 */
import {
  digestOf,
  parseDiffID,
  parseMediaType,
  parseReference,
  type Digest,
  type DiffID,
} from '@stevedore/oci';
import { gzipSync } from 'node:zlib';
import { listAll, type Store } from '../src/index.ts';
import { chunked, packTar, type PackEntry } from './fixtures.ts';

export const LAYER_GZIP = parseMediaType('application/vnd.oci.image.layer.v1.tar+gzip');
export const MANIFEST = parseMediaType('application/vnd.oci.image.manifest.v1+json');
export const INDEX = parseMediaType('application/vnd.oci.image.index.v1+json');
export const CONFIG = parseMediaType('application/vnd.oci.image.config.v1+json');

export interface Committed {
  readonly ref: string;
  readonly manifest: Digest;
  readonly config: Digest;
  readonly layer: { readonly digest: Digest; readonly diffID: DiffID; readonly tarBytes: number };
  readonly tar: Buffer;
  /** The layer record's splitstream key. */
  readonly splitstream: string;
  /** Pack keys the layer's import wrote. */
  readonly packs: string[];
}

export async function keysUnder(store: Store, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const { key } of listAll(store.backend, prefix)) out.push(key);
  return out.sort();
}

/**
 * Commits a one-layer image of `entries` (gzip). With `image: false` it stops where a pull stands
 * between its layer and image commits: blobs, layer and layer blob stored, no image record and no
 * reference.
 */
export async function commitImage(
  store: Store,
  ref: string,
  entries: readonly PackEntry[],
  options: { image?: boolean } = {},
): Promise<Committed> {
  const tar = await packTar(entries);
  const diffID = parseDiffID(digestOf(tar));
  const blob = gzipSync(tar);
  const digest = digestOf(blob);
  const config = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffID] } }),
  );
  const configDigest = digestOf(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST,
      config: { mediaType: CONFIG, digest: configDigest, size: config.length },
      layers: [{ mediaType: LAYER_GZIP, digest, size: blob.length }],
    }),
  );
  const manifestDigest = digestOf(manifest);
  const packsBefore = new Set(await keysUnder(store, 'packs/'));
  await store.putBlob(digest, blob);
  const imported = await store.importLayer(chunked(tar));
  const packs = (await keysUnder(store, 'packs/')).filter((k) => !packsBefore.has(k));
  await store.commitLayer({ digest, diffID, size: blob.length, mediaType: LAYER_GZIP });
  await store.putBlob(configDigest, config);
  await store.putBlob(manifestDigest, manifest);
  if (options.image !== false) {
    await store.putImage({
      manifest: { digest: manifestDigest, size: manifest.length, mediaType: MANIFEST },
      config: { digest: configDigest, size: config.length, mediaType: CONFIG },
      platform: { os: 'linux', architecture: 'amd64' },
      layers: [{ digest, diffID, size: blob.length, mediaType: LAYER_GZIP }],
    });
    await store.setReference(parseReference(ref), manifestDigest);
  }
  return {
    ref,
    manifest: manifestDigest,
    config: configDigest,
    layer: { digest, diffID, tarBytes: tar.length },
    tar,
    splitstream: imported.record.splitstream.key,
    packs,
  };
}
