/**
 * @stevedore/export: stored images out as docker-archive and OCI archives, streamed in one pass
 * (layers rebuilt and compressed concurrently, tar, compression and sha256 on the way out). The
 * formats, what is one pass and the errors are specified in docs/export.md.
 */
export * from './errors.ts';
export * from './options.ts';
export {
  BLOCKS_IN_FLIGHT,
  BlockCompressor,
  COMPRESS_SLOTS,
  GZIP_BLOCK_BYTES,
  GZIP_LEVEL,
  ZSTD_BLOCK_BYTES,
  ZSTD_LEVEL,
  compressorFor,
  recipeOf,
} from './codec.ts';
export {
  parsePlatformChoice,
  resolveTargets,
  type ExportStore,
  type ExportTarget,
  type PlatformChoice,
  type ResolvedTarget,
} from './resolve.ts';
export {
  blobName,
  CONTAINERD_NAME_ANNOTATION,
  DEFAULT_CONCURRENCY,
  IMAGE_LAYOUT_VERSION,
  planExport,
  recordVariant,
  REF_NAME_ANNOTATION,
  type BytesMember,
  type ExportPlan,
  type ExportRequest,
  type LayerMember,
  type LayerSource,
  type Member,
  type PlanOptions,
  type PlannedImage,
} from './plan.ts';
export { tarSize, memberBytes } from './tar-layout.ts';
export {
  LOOKAHEAD_BYTES,
  writeArchive,
  type ArchiveResult,
  type WriteOptions,
  type WrittenLayer,
} from './writer.ts';
export { temporaryPathFor, writeArchiveFile } from './file.ts';
export {
  EXPORTS_PREFIX,
  expireStoredExports,
  exportId,
  exportToStore,
  findStoredExport,
  isExportId,
  listStoredExportRecords,
  openStoredExport,
  removeStoredExport,
  type ExpireExportsOptions,
  type ExpireExportsResult,
  type PinnedExport,
  type StoredExportRecord,
} from './stored.ts';
