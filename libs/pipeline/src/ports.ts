/**
 * What the pipeline needs from the store and the registry: narrow interfaces, so processors are
 * plain functions of (job, dependencies, signal) and unit tests can pass fakes. The real
 * implementations are `@stevedore/store` (adapted in store-adapter.ts) and `RegistryClient`.
 */
import type { Readable } from 'node:stream';
import type { Descriptor, DiffID, Digest, ParsedManifest, Reference } from '@stevedore/oci';
import type { ExportJob } from '@stevedore/queue';
import type { LayerInput } from '@stevedore/store';

export interface PublishOptions {
  readonly signal?: AbortSignal;
  /** Called right before the result becomes visible; throws to refuse (fencing). */
  readonly beforePublish?: () => Promise<void>;
  /** The body verifies its own digest and fails before its end on a mismatch (registry blob streams). */
  readonly verifiedBySource?: boolean;
}

export interface LayerImportStats {
  readonly diffID: DiffID;
  readonly size: number;
  readonly objectsWritten: number;
  readonly objectsReused: number;
  readonly bytesWritten: number;
}

export interface LayerRecordInput {
  readonly diffID: DiffID;
  readonly compressed: { readonly digest: Digest; readonly mediaType: string; readonly size: number };
}

export interface ImageRecordInput {
  readonly manifestDigest: Digest;
  readonly configDigest: Digest;
  readonly platform: string;
  readonly diffIDs: readonly DiffID[];
}

export interface PipelineStore {
  readonly blobPolicy: 'keep' | 'drop';
  hasBlob(digest: Digest): Promise<boolean>;
  /** Streams `body` in, verifying size and digest, and publishes it under `digest`. */
  putBlob(digest: Digest, size: number, body: Readable, options?: PublishOptions): Promise<void>;
  putBlobBytes(digest: Digest, bytes: Uint8Array): Promise<void>;
  getBlobBytes(digest: Digest, maxBytes: number): Promise<Uint8Array>;
  /**
   * A stored blob. `verify: false` skips the digest check, for a caller that verifies what it makes
   * of the bytes (the split checks the tar against the diffID).
   */
  openBlob(digest: Digest, options?: { signal?: AbortSignal; verify?: boolean }): Promise<Readable>;
  deleteBlob(digest: Digest): Promise<void>;
  /** True when the layer record for `diffID` is committed. */
  hasLayer(diffID: DiffID): Promise<boolean>;
  /** True when the layer's content (objects and splitstream) is stored, committed or not. */
  hasLayerContent(diffID: DiffID): Promise<boolean>;
  /** `tar` is read in place when it is an iterable (see the store's LayerInput). */
  importLayer(tar: LayerInput, expectedDiffID: DiffID, options?: PublishOptions): Promise<LayerImportStats>;
  commitLayer(record: LayerRecordInput): Promise<void>;
  commitImage(record: ImageRecordInput): Promise<void>;
  /** `registry/repository:tag`, or `registry/repository@digest` pointing at that same digest. */
  setReference(reference: string, digest: Digest): Promise<void>;
}

/** What an export job needs: write the archive into the store (idempotent) and say where it is. */
export interface PipelineExporter {
  run(
    job: ExportJob,
    signal?: AbortSignal,
  ): Promise<{ key: string; digest: string; size: number; contentType: string; written: boolean }>;
}

export interface FetchedManifest {
  readonly digest: Digest;
  readonly mediaType: string;
  readonly bytes: Uint8Array;
  readonly parsed: ParsedManifest;
}

export interface PipelineRegistry {
  getManifest(ref: Reference, options?: { signal?: AbortSignal }): Promise<FetchedManifest>;
  /** A verifying stream of the blob (errors at the end on a digest or size mismatch). */
  fetchBlob(
    repo: { registry: string; repository: string },
    descriptor: Pick<Descriptor, 'digest' | 'size'>,
    options?: { signal?: AbortSignal },
  ): Readable;
}
