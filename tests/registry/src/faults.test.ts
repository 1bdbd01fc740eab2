import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import {
  basicCredential,
  digestOf,
  DigestMismatchError,
  ManifestTooLargeError,
  MAX_MANIFEST_BYTES,
  RegistryError,
  SizeMismatchError,
  StaticCredentials,
  type Digest,
} from '@stevedore/oci';
import { pushImage, startFaultProxy, type FaultProxy } from '@stevedore/testing';
import {
  blob,
  client,
  collect,
  FAST_RETRY,
  RecordingLogger,
  ref,
  smallImage,
  uniqueRepository,
} from './support.ts';

const stack = inject('stack');

/** Blob GETs of the proxy (not uploads). */
const BLOB_GET = /^\/v2\/.+\/blobs\/sha256:/;
const MANIFEST_GET = /^\/v2\/.+\/manifests\//;

describe('faults between the client and the registry', () => {
  let proxy: FaultProxy;
  const repository = uniqueRepository('faults');
  const content = blob(31, 200_000);
  let repo: { registry: string; repository: string };
  let manifestDigest: Digest;

  beforeAll(async () => {
    proxy = await startFaultProxy({ upstream: stack.registry.url });
    repo = { registry: proxy.host, repository };
    const c = client();
    await c.pushBlob({ registry: stack.registry.host, repository }, content.bytes, content);
    manifestDigest = await pushImage(c, ref(stack.registry.host, repository, ':v1'), await smallImage(32));
  });
  afterAll(async () => {
    await proxy.stop();
  });
  beforeEach(() => {
    proxy.clearRules();
    proxy.resetCounters();
  });

  it('fails a blob corrupted mid-stream with DigestMismatchError, after delivering the bytes', async () => {
    proxy.setRules([{ method: 'GET', path: BLOB_GET, corruptByteAt: 150_000, times: Infinity }]);
    const corrupted = Buffer.from(content.bytes);
    corrupted[150_000]! ^= 0xff;
    const stream = client().fetchBlob(repo, content);
    const err = await collect(stream).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DigestMismatchError);
    expect((err as Error).message).toBe(
      `fetch blob ${proxy.host}/${repository}@${content.digest}: digest mismatch, expected ${content.digest}, got ${digestOf(corrupted)}`,
    );
    expect((err as DigestMismatchError).temporary).toBe(false);
    expect(stream.bytesReceived).toBe(content.size);
    // Permanent: not retried.
    expect(proxy.requests({ path: BLOB_GET }).length).toBe(1);
  });

  it('resumes a truncated body with Range and continues the same digest', async () => {
    proxy.setRules([{ method: 'GET', path: BLOB_GET, truncateAfter: 70_000, times: 1 }]);
    const logger = new RecordingLogger();
    const bytes = await collect(client({ logger }).fetchBlob(repo, content));
    expect(digestOf(bytes)).toBe(content.digest);
    expect(
      proxy.requests({ path: BLOB_GET }).map((r) => [r.headers.range, r.status, r.bytes, r.fault]),
    ).toEqual([
      [undefined, 200, 70_000, 'truncateAfter 70000'],
      ['bytes=70000-', 206, 130_000, undefined],
    ]);
    expect(logger.lines.filter((l) => l.startsWith('warn resuming fetch blob')).length).toBe(1);
  });

  it('gives up on a body truncated on every attempt with a clear error', async () => {
    proxy.setRules([{ method: 'GET', path: BLOB_GET, truncateAfter: 50_000, times: Infinity }]);
    const err = await collect(client().fetchBlob(repo, content)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SizeMismatchError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^fetch blob ${proxy.host}/${repository}@${content.digest}: transfer broke after 150000 of 200000 bytes: .+ \\(after 3 attempts\\)$`,
      ),
    );
    expect((err as SizeMismatchError).temporary).toBe(true);
    expect(proxy.requests({ path: BLOB_GET }).map((r) => r.headers.range)).toEqual([
      undefined,
      'bytes=50000-',
      'bytes=100000-',
    ]);
  });

  it.each([
    { name: 'shorter', contentLength: content.size - 10 },
    { name: 'longer', contentLength: content.size + 10 },
  ])('fails a $name Content-Length at once', async ({ contentLength }) => {
    proxy.setRules([{ method: 'GET', path: BLOB_GET, contentLength, times: Infinity }]);
    const err = await collect(client().fetchBlob(repo, content)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SizeMismatchError);
    expect((err as Error).message).toBe(
      `fetch blob ${proxy.host}/${repository}@${content.digest}: Content-Length ${contentLength} does not match the expected size ${content.size}`,
    );
    expect((err as SizeMismatchError).temporary).toBe(false);
    expect(proxy.requests({ path: BLOB_GET }).length).toBe(1);
  });

  it('refuses an oversized manifest by its Content-Length', async () => {
    const size = MAX_MANIFEST_BYTES + 1;
    proxy.setRules([{ method: 'GET', path: MANIFEST_GET, contentLength: size, times: Infinity }]);
    const err = await client()
      .getManifest(ref(proxy.host, repository, ':v1'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestTooLargeError);
    expect((err as Error).message).toBe(
      `get manifest ${proxy.host}/${repository}:v1: manifest too large, ${size} bytes exceeds the limit of ${MAX_MANIFEST_BYTES}`,
    );
  });

  it('waits for Retry-After after a 429, then succeeds', async () => {
    proxy.setRules([{ method: 'GET', path: MANIFEST_GET, status: 429, retryAfter: 1, times: 1 }]);
    const logger = new RecordingLogger();
    const started = performance.now();
    const result = await client({ logger }).getManifest(ref(proxy.host, repository, ':v1'));
    const elapsed = performance.now() - started;
    expect(result.digest).toBe(manifestDigest);
    expect(proxy.requests({ path: MANIFEST_GET }).map((r) => r.status)).toEqual([429, 200]);
    // FAST_RETRY's backoff is at most 50 ms: only Retry-After explains a one-second wait (less
    // the millisecond by which libuv's loop clock may lag performance.now()).
    expect(elapsed).toBeGreaterThanOrEqual(999);
    expect(logger.lines.filter((l) => l.startsWith('warn retrying get manifest'))).toEqual([
      `warn retrying get manifest ${proxy.host}/${repository}:v1 {"attempt":1,"of":3,"status":429,"waitMs":1000}`,
    ]);
  });

  it('fails after repeated 5xx, having made every attempt', async () => {
    proxy.setRules([{ method: 'GET', path: MANIFEST_GET, status: 503, times: Infinity }]);
    const err = await client()
      .getManifest(ref(proxy.host, repository, ':v1'))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as Error).message).toBe(
      `get manifest ${proxy.host}/${repository}:v1: HTTP 503 UNAVAILABLE: fault injected by the stevedore test proxy (after ${FAST_RETRY.attempts} attempts)`,
    );
    expect([(err as RegistryError).status, (err as RegistryError).temporary]).toEqual([503, true]);
    expect(proxy.requests({ path: MANIFEST_GET }).length).toBe(FAST_RETRY.attempts);
  });

  it('retries a reset connection', async () => {
    proxy.setRules([{ method: 'GET', path: BLOB_GET, resetConnection: true, times: 1 }]);
    const bytes = await collect(client().fetchBlob(repo, content));
    expect(digestOf(bytes)).toBe(content.digest);
    expect(proxy.requests({ path: BLOB_GET }).map((r) => r.status)).toEqual([undefined, 200]);
  });

  it('retries a 5xx in the middle of a push', async () => {
    const fresh = blob(33, 50_000);
    proxy.setRules([{ method: 'PUT', path: /\/blobs\/uploads\//, status: 500, times: 1 }]);
    await client().pushBlob(repo, fresh.bytes, fresh);
    expect(proxy.requests({ path: /\/blobs\// }).map((r) => `${r.method} ${r.status}`)).toEqual([
      'HEAD 404',
      'POST 202',
      'PUT 500',
      'POST 202',
      'PUT 201',
    ]);
    expect(digestOf(await collect(client().fetchBlob(repo, fresh)))).toBe(fresh.digest);
  });
});

describe('blob redirects to another host', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    proxy = await startFaultProxy({ upstream: stack.tokenRegistry.url, redirectBlobs: true });
  });
  afterAll(async () => {
    await proxy.stop();
  });

  it('follows the redirect without the Authorization header', async () => {
    const reg = stack.tokenRegistry;
    const credentials = new StaticCredentials({ [proxy.host]: basicCredential(reg.username, reg.password) });
    const c = client({ credentials });
    const repository = uniqueRepository('redirect');
    const content = blob(34, 100_000);
    await c.pushBlob({ registry: proxy.host, repository }, content.bytes, content);
    proxy.resetCounters();

    const bytes = await collect(c.fetchBlob({ registry: proxy.host, repository }, content));
    expect(digestOf(bytes)).toBe(content.digest);
    const atRegistry = proxy.requests({ server: 'proxy', method: 'GET' });
    expect(atRegistry.map((r) => [r.status, r.headers.authorization?.startsWith('Bearer ')])).toEqual([
      [307, true],
    ]);
    const atStore = proxy.requests({ server: 'object-store' });
    expect(atStore.map((r) => [r.status, r.headers.authorization, r.headers.host])).toEqual([
      [200, undefined, new URL(proxy.objectStoreUrl!).host],
    ]);
  });

  it('resumes a broken download from the object store with Range', async () => {
    const reg = stack.tokenRegistry;
    const credentials = new StaticCredentials({ [proxy.host]: basicCredential(reg.username, reg.password) });
    const c = client({ credentials });
    const repository = uniqueRepository('redirect');
    const content = blob(35, 100_000);
    await c.pushBlob({ registry: proxy.host, repository }, content.bytes, content);
    proxy.resetCounters();
    proxy.setRules([{ path: /^\/objects\//, truncateAfter: 40_000, times: 1 }]);

    expect(digestOf(await collect(c.fetchBlob({ registry: proxy.host, repository }, content)))).toBe(
      content.digest,
    );
    // The resume asks the registry again (a fresh redirect would be needed once a signed URL
    // expires); the proxy answers a Range request itself with 206 instead of redirecting.
    expect(
      proxy
        .requests()
        .map((r) => [
          r.server,
          r.status,
          r.headers.range,
          r.headers.authorization?.replace(/^(Bearer) .*$/, '$1 …'),
        ]),
    ).toEqual([
      ['proxy', 307, undefined, 'Bearer …'],
      ['object-store', 200, undefined, undefined],
      ['proxy', 206, 'bytes=40000-', 'Bearer …'],
    ]);
  });
});
