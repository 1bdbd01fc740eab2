/**
 * The pipeline's view of `@stevedore/store`, and opening the store from the service config.
 *
 * Visibility in the store: a layer's record (keyed by diffID) is published by the split, after
 * its objects and splitstream; the committer records which compressed blob is that layer (and
 * applies the blob policy), then the image record, then the reference.
 */
import type { Readable } from 'node:stream';
import { parseManifest, parseMediaType, parsePlatform, parseReference } from '@stevedore/oci/spec';
import { openStore, type BackendConfig, type Store } from '@stevedore/store';
import type { PipelineStore } from './ports.ts';
import type { WorkerConfig } from './service-config.ts';

type BackendEnv = Pick<
  WorkerConfig,
  | 'STEVEDORE_STORE'
  | 'STEVEDORE_S3_ENDPOINT'
  | 'STEVEDORE_S3_REGION'
  | 'STEVEDORE_S3_FORCE_PATH_STYLE'
  | 'STEVEDORE_S3_CHECKSUM'
>;
type StoreEnv = BackendEnv & Pick<WorkerConfig, 'STEVEDORE_BLOB_POLICY' | 'STEVEDORE_GC_PACE_ABOVE_MIB'>;

const CHECKSUM_MODE = { when_supported: 'WHEN_SUPPORTED', when_required: 'WHEN_REQUIRED' } as const;

/** `s3://bucket/prefix` → S3; `file:///path` or a plain path → a directory. */
export function backendFromConfig(config: BackendEnv): BackendConfig {
  const where = config.STEVEDORE_STORE;
  if (where.startsWith('s3://')) {
    const rest = where.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/\/+$/, '');
    if (bucket === '') throw new Error(`STEVEDORE_STORE "${where}" names no bucket`);
    const mode = CHECKSUM_MODE[config.STEVEDORE_S3_CHECKSUM];
    return {
      kind: 's3',
      bucket,
      ...(prefix === '' ? {} : { prefix }),
      ...(config.STEVEDORE_S3_ENDPOINT === undefined ? {} : { endpoint: config.STEVEDORE_S3_ENDPOINT }),
      region: config.STEVEDORE_S3_REGION,
      forcePathStyle: config.STEVEDORE_S3_FORCE_PATH_STYLE,
      requestChecksumCalculation: mode,
      responseChecksumValidation: mode,
    };
  }
  const path = where.startsWith('file://') ? new URL(where).pathname : where;
  return { kind: 'directory', path };
}

export async function openConfiguredStore(config: StoreEnv): Promise<Store> {
  return openStore({
    backend: backendFromConfig(config),
    blobPolicy: config.STEVEDORE_BLOB_POLICY,
    gcPaceAboveBytes: config.STEVEDORE_GC_PACE_ABOVE_MIB * 1024 * 1024,
  });
}

export function pipelineStore(store: Store): PipelineStore {
  return {
    blobPolicy: store.blobPolicy,
    hasBlob: (digest) => store.hasBlob(digest),
    // Blobs are verified content-addressed writes: whoever publishes one publishes the same bytes,
    // so fencing (options.beforePublish) matters only for the layer record, in importLayer.
    async putBlob(digest, size, body, options = {}) {
      await store.putBlob(digest, body, {
        size,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        ...(options.verifiedBySource === true ? { verifiedBySource: true } : {}),
      });
    },
    async putBlobBytes(digest, bytes) {
      await store.putBlob(digest, bytes);
    },
    async getBlobBytes(digest, maxBytes) {
      const bytes = await store.getBlobBytes(digest);
      if (bytes.length > maxBytes)
        throw new Error(`blob ${digest} is ${bytes.length} bytes, over the ${maxBytes}-byte limit`);
      return bytes;
    },
    openBlob: (digest, options = {}): Promise<Readable> => store.getBlob(digest, options),
    deleteBlob: (digest) => store.deleteBlob(digest),
    hasLayer: (diffID) => store.hasLayer(diffID),
    hasLayerContent: (diffID) => store.hasLayer(diffID),
    async importLayer(tar, expectedDiffID, options = {}) {
      const result = await store.importLayer(tar, {
        expectedDiffID,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        ...(options.beforePublish === undefined ? {} : { beforePublish: options.beforePublish }),
      });
      return {
        diffID: result.diffID,
        size: result.size,
        objectsWritten: result.stats.objectsWritten,
        objectsReused: result.stats.objectsReused,
        bytesWritten: result.stats.bytesWritten,
      };
    },
    async commitLayer(record) {
      await store.commitLayer({
        digest: record.compressed.digest,
        diffID: record.diffID,
        size: record.compressed.size,
        mediaType: parseMediaType(record.compressed.mediaType),
      });
    },
    async commitImage(record) {
      const manifestBytes = await store.getBlobBytes(record.manifestDigest);
      const parsed = parseManifest(manifestBytes);
      if (parsed.kind !== 'manifest')
        throw new Error(`blob ${record.manifestDigest} is an index, not an image manifest`);
      const { config, layers } = parsed.manifest;
      await store.putImage({
        manifest: { digest: record.manifestDigest, size: manifestBytes.length, mediaType: parsed.mediaType },
        config: { digest: record.configDigest, size: config.size, mediaType: config.mediaType },
        platform: parsePlatform(record.platform),
        layers: layers.map((layer, i) => {
          const diffID = record.diffIDs[i];
          if (diffID === undefined)
            throw new Error(`image ${record.manifestDigest}: no diffID for layer ${i}`);
          return { digest: layer.digest, diffID, size: layer.size, mediaType: layer.mediaType };
        }),
      });
    },
    async setReference(reference, digest) {
      await store.setReference(parseReference(reference), digest);
    },
  };
}
