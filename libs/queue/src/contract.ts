/**
 * The queue contract: every queue, every job kind and its payload. Queue and job names are
 * persisted in Redis: renaming one is a migration. Payloads carry references (digests, refs),
 * never data and never credentials. The flows are specified in docs/queues.md.
 */

/** BullMQ key prefix of every stevedore queue. */
export const QUEUE_PREFIX = 'stevedore';

export const QUEUES = {
  /** fetcher: resolve a reference, store manifest and config, fan out the layers. */
  pull: 'pull',
  /** fetcher: stream one blob from a registry into the store. */
  fetch: 'fetch',
  /** hasher/compressor: split a layer into file objects and a splitstream. */
  split: 'split',
  /** committer: layer and image records, then references. */
  commit: 'commit',
  /** hasher/compressor: write an export archive of stored images into the store (docs/export.md). */
  export: 'export',
} as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];
export const ALL_QUEUES: readonly QueueName[] = Object.values(QUEUES);

/** `stevedore pull REF`: the root of a pull. Its child is the commit-reference job. */
export interface PullJob {
  readonly ref: string;
  /** `os/arch[/variant]`, or `all` for every platform of an index. */
  readonly platform: string;
}

/** The layer as the manifest and config describe it. */
export interface LayerRef {
  /** `registry/repository` to fetch from. */
  readonly repository: string;
  /** Compressed digest (the blob in the registry). */
  readonly digest: string;
  readonly mediaType: string;
  readonly size: number;
  /** Uncompressed digest, from the image config's rootfs.diff_ids. */
  readonly diffID: string;
}

export interface FetchBlobJob extends LayerRef {
  readonly pullId: string;
}
export type SplitLayerJob = FetchBlobJob;
export type CommitLayerJob = FetchBlobJob;

export interface CommitImageJob {
  readonly pullId: string;
  /** The reference as the user wrote it, normalised (`registry/repository:tag` or `@digest`). */
  readonly ref: string;
  /** The digest the reference resolved to (an index for multi-platform images). */
  readonly resolvedDigest: string;
  readonly manifestDigest: string;
  readonly configDigest: string;
  readonly platform: string;
}

/** Publishes the reference once every image of the pull is committed. */
export interface CommitReferenceJob {
  readonly pullId: string;
  /**
   * The normalised reference: `registry/repository:tag` publishes the tag, `registry/repository@digest`
   * (a pull by digest) the digest reference.
   */
  readonly ref: string;
  readonly resolvedDigest: string;
}

/**
 * An export for later download: the archive is written into the store (`exports/<exportId>.tar…`)
 * and fetched with GET /v1/exports/<exportId>/archive. The references are pinned to the digests
 * they pointed at when the export was requested; `exportId` derives from all of it.
 */
export interface ExportJob {
  readonly exportId: string;
  /** References (or digests) as asked. */
  readonly refs: readonly string[];
  /** What each reference pointed at when the export was queued (same order). */
  readonly digests: readonly string[];
  readonly format: 'docker' | 'oci';
  readonly compression: 'original' | 'none' | 'gzip' | 'zstd';
  readonly archiveCompression: 'none' | 'gzip' | 'zstd';
  /** `os/arch[/variant]`, `all`, or `default` (all stored platforms for oci, one for docker). */
  readonly platform: string;
}

export const JOBS = {
  pull: 'pull',
  fetchBlob: 'fetch-blob',
  splitLayer: 'split-layer',
  commitLayer: 'commit-layer',
  commitImage: 'commit-image',
  commitReference: 'commit-reference',
  export: 'export',
} as const;
export type JobName = (typeof JOBS)[keyof typeof JOBS];

/** Which queue each job kind runs on, and its payload. */
export interface JobContract {
  pull: { queue: 'pull'; data: PullJob };
  'fetch-blob': { queue: 'fetch'; data: FetchBlobJob };
  'split-layer': { queue: 'split'; data: SplitLayerJob };
  'commit-layer': { queue: 'commit'; data: CommitLayerJob };
  'commit-image': { queue: 'commit'; data: CommitImageJob };
  'commit-reference': { queue: 'commit'; data: CommitReferenceJob };
  export: { queue: 'export'; data: ExportJob };
}
export type JobOf<N extends JobName> = JobContract[N]['data'];
export type AnyJobData = JobOf<JobName>;

export const JOB_QUEUE: { readonly [N in JobName]: JobContract[N]['queue'] } = {
  pull: 'pull',
  'fetch-blob': 'fetch',
  'split-layer': 'split',
  'commit-layer': 'commit',
  'commit-image': 'commit',
  'commit-reference': 'commit',
  export: 'export',
};

/** Progress of a fetch-blob job: bytes of the blob, and how the blob was obtained. */
export interface FetchProgress {
  readonly bytes: number;
  readonly total: number;
  readonly outcome: 'waiting' | 'fetching' | 'fetched' | 'reused' | 'waited';
}

/** Result values, returned by the processors and read by the CLI and the API. */
export interface FetchResult {
  readonly outcome: 'fetched' | 'reused' | 'waited';
  readonly bytesFetched: number;
  /** True when this fetch also split the layer (a process with the fetcher and hasher roles). */
  readonly splitWhileFetching?: boolean;
}
export interface SplitResult {
  readonly outcome: 'split' | 'reused';
  readonly objectsWritten: number;
  readonly objectsReused: number;
  readonly bytesWritten: number;
}
export interface CommitImageResult {
  readonly manifestDigest: string;
  readonly platform: string;
  readonly layers: number;
}
export interface CommitReferenceResult {
  /**
   * The reference published: `registry/repository:tag`, or `registry/repository@digest` for a pull
   * by digest (undefined in results a committer wrote before pulls by digest published one).
   */
  readonly reference: string | undefined;
  readonly resolvedDigest: string;
  readonly images: readonly CommitImageResult[];
}
export interface ExportResult {
  readonly exportId: string;
  /** Where the archive is in the store. */
  readonly key: string;
  /** sha256 and size of the archive. */
  readonly digest: string;
  readonly size: number;
  readonly contentType: string;
  /** The API path that streams it. */
  readonly path: string;
  /** False when an earlier run had already written it. */
  readonly written: boolean;
}
export interface PullResult {
  readonly ref: string;
  readonly resolvedDigest: string;
  readonly images: readonly CommitImageResult[];
}
