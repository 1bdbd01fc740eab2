import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { childJobId, encodeDigest, newPullId } from './options.ts';
import { InvalidJobDataError, validateJobData } from './schema.ts';

const DIGEST = 'sha256:' + 'a'.repeat(64);
const DIFF_ID = 'sha256:' + 'b'.repeat(64);
const layer = {
  pullId: 'pull-1',
  repository: '127.0.0.1:5000/demo/app',
  digest: DIGEST,
  mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
  size: 1234,
  diffID: DIFF_ID,
};

const EXPORT = {
  exportId: 'export-0123456789abcdef',
  refs: ['registry.test/app:1', DIGEST],
  digests: [DIGEST, DIGEST],
  format: 'oci',
  compression: 'zstd',
  archiveCompression: 'none',
  platform: 'default',
};

describe('validateJobData', () => {
  it.each([
    ['pull', { ref: 'docker.io/library/alpine:3.19', platform: 'linux/amd64' }],
    ['fetch-blob', layer],
    ['split-layer', layer],
    ['commit-layer', layer],
    [
      'commit-image',
      {
        pullId: 'p',
        ref: 'r',
        resolvedDigest: DIGEST,
        manifestDigest: DIGEST,
        configDigest: DIFF_ID,
        platform: 'linux/amd64',
      },
    ],
    ['commit-reference', { pullId: 'p', ref: 'r', resolvedDigest: DIGEST }],
    ['export', EXPORT],
  ] as const)('accepts a valid %s payload', (name, data) => {
    expect(validateJobData(name, data, 'j1')).toBe(data);
  });

  it.each([
    ['pull', null, 'job j1 (pull): data must be an object'],
    [
      'pull',
      { ref: '' },
      'job j1 (pull): invalid data: ref must be a non-empty string; platform must be a non-empty string',
    ],
    [
      'fetch-blob',
      { ...layer, digest: 'sha256:xyz', size: -1 },
      'job j1 (fetch-blob): invalid data: digest must be a digest (sha256:…); size must be a size in bytes',
    ],
    [
      'commit-layer',
      { ...layer, password: 'hunter2' },
      'job j1 (commit-layer): invalid data: unexpected field password',
    ],
    [
      'export',
      { ...EXPORT, exportId: 'export-x', refs: [], digests: ['sha256:x'], format: 'zip', compression: 'xz' },
      'job j1 (export): invalid data: exportId must be an export id; refs must be a non-empty list of references; digests must be a non-empty list of digests; format must be one of docker, oci; compression must be one of original, none, gzip, zstd',
    ],
    [
      'export',
      { ...EXPORT, archiveCompression: 'bzip2' },
      'job j1 (export): invalid data: archiveCompression must be one of none, gzip, zstd',
    ],
  ] as const)('rejects %s payload %j', (name, data, message) => {
    expect(() => validateJobData(name, data, 'j1')).toThrowError(new InvalidJobDataError(message));
  });

  it('fails unrecoverably, so BullMQ does not retry a bad payload', () => {
    expect(() => validateJobData('pull', {}, 'j1')).toThrow(UnrecoverableError);
  });
});

describe('job ids', () => {
  it('never contain a colon', () => {
    expect(encodeDigest(DIGEST)).toBe('sha256-' + 'a'.repeat(64));
    expect(childJobId('pull-x', 'fetch', DIGEST)).toBe('pull-x.fetch.sha256-' + 'a'.repeat(64));
  });

  it('are new per pull submission and stable per reference', () => {
    const a = newPullId('docker.io/library/alpine:3.19', 'linux/amd64', 1_700_000_000_000);
    expect(a).toBe('pull-' + a.slice(5, 21) + '-loyw3v28');
    expect(a).toMatch(/^pull-[0-9a-f]{16}-[0-9a-z]+$/);
    expect(newPullId('docker.io/library/alpine:3.19', 'linux/amd64', 1_700_000_000_001)).not.toBe(a);
    expect(
      newPullId('docker.io/library/alpine:3.19', 'linux/arm64/v8', 1_700_000_000_000).slice(0, 21),
    ).not.toBe(a.slice(0, 21));
  });
});
