/**
 * @stevedore/store: the content-addressed store. Blobs, split layers (file objects in packs and
 * splitstreams) and records on a directory or S3. Layout and formats: docs/store-format.md; data
 * model: libs/store/README.md.
 */
export {
  openS3Backend,
  openStore,
  Store,
  type BackendConfig,
  type BlobInfo,
  type BlobPolicy,
  type LayerBlob,
  type NewImage,
  type ReindexResult,
  type StoreConfig,
} from './store.ts';
export type { ImportOptions, ImportResult, LayerInput } from './import.ts';
export {
  DEFAULT_COMPACT_MIN_AGE_MS,
  IndexCompactionConflictError,
  MERGED_INDEX_MAX_BYTES,
  type CompactOptions,
  type CompactResult,
} from './compaction.ts';
export {
  DEFAULT_ORPHAN_MIN_AGE_MS,
  type Removed,
  type RemoveOrphansOptions,
  type RemoveOrphansResult,
} from './orphans.ts';
export type { LayerBlock } from './layer-reader.ts';
export type { ZlibWriteArgs } from './worker.ts';
export { INLINE_MAX } from './import.ts';
export { mapLimited } from './map-limited.ts';
export { CHUNK_SIZE, PACK_TARGET } from './objects.ts';
export type {
  BlobDescriptor,
  ImageLayer,
  ImageRecord,
  ImportStats,
  LayerBlobRecord,
  LayerRecord,
  ReferenceRecord,
  SplitstreamRef,
} from './records.ts';
export {
  countBytes,
  diffStats,
  listAll,
  newStats,
  snapshotStats,
  type Backend,
  type BackendStats,
  type ByteRange,
  type GetOptions,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type PutOptions,
  type RequestKind,
} from './backend/backend.ts';
export {
  layerVariantKey,
  recipeName,
  type LayerVariantRecord,
  type VariantCompression,
  type VariantRecipe,
} from './variants.ts';
export { DirectoryBackend } from './backend/directory.ts';
export {
  alignUp,
  DIRECT_ALIGN,
  DIRECT_WRITE_SLACK,
  openDirect,
  probeAlignment,
  writeAll,
} from './direct-io.ts';
export { DirectFileWriter } from './direct-file-writer.ts';
export { drained, type DrainableSink } from './drained.ts';
export type { ChecksumMode, S3BackendConfig } from './backend/s3.ts';
export {
  compileCacheEnv,
  Limiter,
  sharedLimiter,
  STREAM_CHUNK_BYTES,
  type LimiterOptions,
} from './limiter.ts';
export { StreamHasher } from './hashing.ts';
export {
  DEFAULT_GC_PACE_ABOVE_BYTES,
  GC_PACE_BYTES,
  SERVICE_GC_PACE_ABOVE_BYTES,
  setGcPaceAbove,
  STREAMING_V8_FLAGS,
  tuneHeapForStreaming,
} from './heap-tuning.ts';
export {
  CorruptObjectError,
  DigestMismatchError,
  InvalidFormatError,
  MalformedTarError,
  MissingDependencyError,
  ObjectNotFoundError,
} from './errors.ts';
export { verifyStore, type VerifyOptions, type VerifyProblem, type VerifyResult } from './verify.ts';
export { DEFAULT_REPACK_BELOW, type Collected, type CollectOptions, type CollectResult } from './gc.ts';
