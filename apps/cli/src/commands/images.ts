/**
 * `stevedore images`, `stevedore inspect REF`, `stevedore rm REF`: what the store holds. They
 * read the store named by the environment (STEVEDORE_STORE and the S3 variables), as workers do.
 * References are tags (`registry/repo:tag`) and the digest references pulls by digest keep
 * (`registry/repo@sha256:…`): both are listed and removed alike.
 */
import { parseEnv } from '@stevedore/config';
import { digestHex, formatPlatform, parseManifest, parseReference, type Digest } from '@stevedore/oci/spec';
import { openConfiguredStore, WORKER_ENV } from '@stevedore/pipeline/store-config';
import type { ImageRecord, Store } from '@stevedore/store';

const MB = 1000 * 1000;

/** Runs `use` on the store the environment names, and closes it. */
export async function withStore<T>(use: (store: Store) => Promise<T>): Promise<T> {
  const store = await openConfiguredStore(parseEnv(WORKER_ENV));
  try {
    return await use(store);
  } finally {
    await store.close();
  }
}

/** The image records a stored digest stands for: itself, or an index's platform images. */
export async function imagesOf(store: Store, digest: Digest): Promise<ImageRecord[]> {
  const direct = await store.getImage(digest);
  if (direct !== undefined) return [direct];
  if (!(await store.hasBlob(digest))) return [];
  const parsed = parseManifest(await store.getBlobBytes(digest));
  if (parsed.kind !== 'index') return [];
  const out: ImageRecord[] = [];
  for (const entry of parsed.index.manifests) {
    const image = await store.getImage(entry.digest);
    if (image !== undefined) out.push(image);
  }
  return out;
}

function platformOf(image: ImageRecord): string {
  return image.platform === undefined ? '-' : formatPlatform(image.platform);
}

export async function imagesCommand(
  json: boolean,
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  return withStore(async (store) => {
    const rows: { reference: string; digest: string; platforms: string[]; size: number; layers: number }[] =
      [];
    for (const ref of await store.listReferences()) {
      const images = await imagesOf(store, ref.digest);
      rows.push({
        reference: ref.reference,
        digest: ref.digest,
        platforms: images.map(platformOf),
        size: images.reduce((n, i) => n + i.layers.reduce((m, l) => m + l.size, 0), 0),
        layers: images.reduce((n, i) => n + i.layers.length, 0),
      });
    }
    rows.sort((a, b) => a.reference.localeCompare(b.reference));
    if (json) {
      out.write(`${JSON.stringify(rows)}\n`);
      return 0;
    }
    const width = Math.max(10, ...rows.map((r) => r.reference.length));
    out.write(`${'REFERENCE'.padEnd(width)}  DIGEST        PLATFORM          LAYERS  SIZE\n`);
    for (const r of rows) {
      out.write(
        `${r.reference.padEnd(width)}  ${digestHex(r.digest as Digest).slice(0, 12)}  ${r.platforms.join(',').padEnd(16)}  ${String(r.layers).padStart(6)}  ${(r.size / MB).toFixed(1)} MB\n`,
      );
    }
    return 0;
  });
}

export async function inspectCommand(
  ref: string,
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  const parsed = parseReference(ref);
  return withStore(async (store) => {
    const digest = parsed.digest ?? (await store.getReference(parsed))?.digest;
    if (digest === undefined) {
      process.stderr.write(`Error: No such image: ${ref}\n`);
      return 1;
    }
    const images = await imagesOf(store, digest);
    if (images.length === 0) {
      process.stderr.write(`Error: No such image: ${ref}\n`);
      return 1;
    }
    const detailed = [];
    for (const image of images) {
      const config = JSON.parse((await store.getBlobBytes(image.config.digest)).toString('utf8')) as unknown;
      const layers = [];
      for (const layer of image.layers) {
        const record = await store.getLayer(layer.diffID);
        layers.push({ ...layer, uncompressedSize: record?.size, stored: record?.stats });
      }
      detailed.push({ manifest: image.manifest, platform: image.platform, config, layers });
    }
    out.write(`${JSON.stringify({ reference: ref, digest, images: detailed }, null, 2)}\n`);
    return 0;
  });
}

export async function rmCommand(refs: readonly string[]): Promise<number> {
  return withStore(async (store) => {
    let code = 0;
    for (const ref of refs) {
      const parsed = parseReference(ref);
      if ((await store.getReference(parsed)) === undefined) {
        process.stderr.write(`Error: No such image: ${ref}\n`);
        code = 1;
        continue;
      }
      await store.deleteReference(parsed);
      process.stdout.write(`Untagged: ${ref}\n`);
    }
    return code;
  });
}
