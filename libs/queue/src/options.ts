/** Default job options and deterministic job ids. */
import type { DefaultJobOptions } from 'bullmq';
import { digestHex, digestOf } from '@stevedore/oci';

/** Transient failures (registry 5xx, S3 hiccups) retry this many times in all. */
export const DEFAULT_ATTEMPTS = 6;
/** First retry after 1 s, doubling: 1, 2, 4, 8, 16 s covers a registry restart. */
const BACKOFF_DELAY_MS = 1_000;
/** Completed jobs stay a day (the CLI and Bull Board show them), at most this many per queue. */
const KEEP_COMPLETED = { age: 24 * 60 * 60, count: 5_000 };
/** Failed jobs stay a week, for the operator to read and retry. */
const KEEP_FAILED = { age: 7 * 24 * 60 * 60 };

export const DEFAULT_JOB_OPTIONS: DefaultJobOptions = {
  attempts: DEFAULT_ATTEMPTS,
  backoff: { type: 'exponential', delay: BACKOFF_DELAY_MS },
  removeOnComplete: KEEP_COMPLETED,
  removeOnFail: KEEP_FAILED,
};

/**
 * A digest as a job id component: BullMQ custom job ids must not contain `:`, so
 * `sha256:ab…` becomes `sha256-ab…`.
 */
export function encodeDigest(digest: string): string {
  return digest.replace(':', '-');
}

/** A short stable hash of text, for ids derived from references. */
export function shortHash(text: string): string {
  // Ids only need to be unique among live jobs; 16 hex characters (64 bits) is plenty.
  return digestHex(digestOf(text)).slice(0, 16);
}

/**
 * A new pull's id: a pull is a request, not content, so two submissions are two pulls (each
 * blob is still fetched once, by the locks). Its children's ids derive from it and the content,
 * so a retried resolve step re-adds the same children instead of duplicating them.
 */
export function newPullId(ref: string, platform: string, now = Date.now()): string {
  return `pull-${shortHash(`${ref}|${platform}`)}-${now.toString(36)}`;
}

export function childJobId(pullId: string, kind: string, digest: string): string {
  return `${pullId}.${kind}.${encodeDigest(digest)}`;
}
