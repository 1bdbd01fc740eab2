/**
 * Payload validation at the worker boundary: a job whose data does not match its kind's schema
 * fails at once (unrecoverable), naming the job and the field.
 */
import { UnrecoverableError } from 'bullmq';
import { isDigest } from '@stevedore/oci';
import type { JobName, JobOf } from './contract.ts';

export class InvalidJobDataError extends UnrecoverableError {
  override readonly name = 'InvalidJobDataError';
}

type Check = (value: unknown) => string | undefined;

const string: Check = (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'a non-empty string');
const digest: Check = (v) => (typeof v === 'string' && isDigest(v) ? undefined : 'a digest (sha256:…)');
const size: Check = (v) => (Number.isSafeInteger(v) && (v as number) >= 0 ? undefined : 'a size in bytes');
/** A non-empty list whose items all pass `item`. */
const listOf =
  (item: Check, what: string): Check =>
  (v) =>
    Array.isArray(v) && v.length > 0 && v.every((x) => item(x) === undefined)
      ? undefined
      : `a non-empty list of ${what}`;
const oneOf =
  (...values: readonly string[]): Check =>
  (v) =>
    typeof v === 'string' && values.includes(v) ? undefined : `one of ${values.join(', ')}`;

const layer = {
  pullId: string,
  repository: string,
  digest,
  mediaType: string,
  size,
  diffID: digest,
} as const;

const SCHEMAS: { readonly [N in JobName]: { readonly [K in keyof JobOf<N>]-?: Check } } = {
  pull: { ref: string, platform: string },
  'fetch-blob': layer,
  'split-layer': layer,
  'commit-layer': layer,
  'commit-image': {
    pullId: string,
    ref: string,
    resolvedDigest: digest,
    manifestDigest: digest,
    configDigest: digest,
    platform: string,
  },
  'commit-reference': { pullId: string, ref: string, resolvedDigest: digest },
  export: {
    exportId: (v) => (typeof v === 'string' && /^export-[0-9a-f]{16}$/.test(v) ? undefined : 'an export id'),
    refs: listOf(string, 'references'),
    digests: listOf(digest, 'digests'),
    format: oneOf('docker', 'oci'),
    compression: oneOf('original', 'none', 'gzip', 'zstd'),
    archiveCompression: oneOf('none', 'gzip', 'zstd'),
    platform: string,
  },
};

/** Returns `data` typed as job kind `name`'s payload, or throws {@link InvalidJobDataError}. */
export function validateJobData<N extends JobName>(name: N, data: unknown, jobId = '?'): JobOf<N> {
  const schema: Readonly<Record<string, Check>> | undefined = SCHEMAS[name];
  if (schema === undefined) throw new InvalidJobDataError(`job ${jobId}: unknown job kind "${String(name)}"`);
  if (typeof data !== 'object' || data === null) {
    throw new InvalidJobDataError(`job ${jobId} (${name}): data must be an object`);
  }
  const record = data as Record<string, unknown>;
  const problems: string[] = [];
  for (const [field, check] of Object.entries(schema)) {
    const problem = check(record[field]);
    if (problem !== undefined) problems.push(`${field} must be ${problem}`);
  }
  for (const field of Object.keys(record)) {
    if (!(field in schema)) problems.push(`unexpected field ${field}`);
  }
  if (problems.length > 0) {
    throw new InvalidJobDataError(`job ${jobId} (${name}): invalid data: ${problems.join('; ')}`);
  }
  return data as JobOf<N>;
}
