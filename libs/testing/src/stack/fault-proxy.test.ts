import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Digest } from '@stevedore/oci';
import { startFaultProxy, type FaultProxy, type FaultRule } from './fault-proxy.ts';
import { startRegistry, type RegistryServer, type TokenRegistryServer } from './registry.ts';
import { fetchToken, pushBlob, rawRequest } from './test-support.ts';

/** 1000 bytes with byte i = i % 256, so a position in the body is recognizable. */
const BLOB = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 256));
const REPO = 'faults/blob';

describe('startFaultProxy', () => {
  let registry: RegistryServer;
  let proxy: FaultProxy;
  let digest: Digest;
  let blobUrl: string;
  let blobPath: RegExp;
  beforeAll(async () => {
    registry = await startRegistry();
    proxy = await startFaultProxy({ upstream: registry.url });
    digest = await pushBlob(registry.url, REPO, BLOB);
    blobUrl = `${proxy.url}/v2/${REPO}/blobs/${digest}`;
    blobPath = new RegExp(`/blobs/${digest}$`);
  });
  afterEach(() => {
    proxy.clearRules();
    proxy.resetCounters();
  });
  afterAll(async () => {
    await proxy.stop();
    await registry.stop();
  });

  it('forwards and counts requests and bytes per method and path', async () => {
    const get = await rawRequest(blobUrl);
    expect(get.status).toBe(200);
    expect(get.body).toEqual(BLOB);
    const head = await rawRequest(blobUrl, { method: 'HEAD' });
    expect(head.headers['content-length']).toBe('1000');
    expect(head.headers['docker-content-digest']).toBe(digest);
    expect(proxy.requests().map((r) => [r.server, r.method, r.path, r.status, r.bytes, r.fault])).toEqual([
      ['proxy', 'GET', `/v2/${REPO}/blobs/${digest}`, 200, 1000, undefined],
      ['proxy', 'HEAD', `/v2/${REPO}/blobs/${digest}`, 200, 0, undefined],
    ]);
    expect(proxy.requests({ method: 'head' })).toHaveLength(1);
    expect(proxy.bytesServed(blobPath)).toBe(1000);
    expect(proxy.bytesServed(blobPath, 'HEAD')).toBe(0);
    expect(proxy.bytesServed(/manifests/)).toBe(0);
  });

  it('streams uploads through and points Location back at the proxy', async () => {
    const body = Buffer.from('pushed through the proxy');
    const pushed = await pushBlob(proxy.url, 'faults/upload', body);
    const uploads = proxy.requests({ path: /\/blobs\/uploads\// });
    expect(uploads.map((r) => [r.method, r.status])).toEqual([
      ['POST', 202],
      ['PUT', 201],
    ]);
    const res = await rawRequest(`${registry.url}/v2/faults/upload/blobs/${pushed}`);
    expect(res.body).toEqual(body);
    const start = await rawRequest(`${proxy.url}/v2/faults/upload/blobs/uploads/`, { method: 'POST' });
    expect(start.headers.location).toMatch(new RegExp(`^${proxy.url}/v2/faults/upload/blobs/uploads/`));
  });

  it.each([
    [{ status: 503 }, 503, {}],
    [{ status: 500 }, 500, {}],
    [{ status: 502 }, 502, {}],
    [{ status: 429, retryAfter: 7 }, 429, { 'retry-after': '7' }],
  ] as const)(
    'answers %o the given number of times, then passes through',
    async (action, status, headers) => {
      proxy.setRules([{ method: 'GET', path: blobPath, times: 2, ...action }]);
      const results = [await rawRequest(blobUrl), await rawRequest(blobUrl), await rawRequest(blobUrl)];
      expect(results.map((r) => r.status)).toEqual([status, status, 200]);
      expect(results[0]!.headers).toMatchObject(headers);
      expect(JSON.parse(results[0]!.body.toString())).toEqual({
        errors: [
          {
            code: status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE',
            message: 'fault injected by the stevedore test proxy',
          },
        ],
      });
      expect(results[2]!.body).toEqual(BLOB);
      const errorBytes = results[0]!.body.length;
      expect(proxy.requests().map((r) => [r.status, r.bytes])).toEqual([
        [status, errorBytes],
        [status, errorBytes],
        [200, 1000],
      ]);
    },
  );

  it('matches the method: a HEAD rule leaves GETs alone', async () => {
    proxy.setRules([{ method: 'HEAD', path: blobPath, times: 1, status: 503 }]);
    expect((await rawRequest(blobUrl)).status).toBe(200);
    expect((await rawRequest(blobUrl, { method: 'HEAD' })).status).toBe(503);
    expect((await rawRequest(blobUrl, { method: 'HEAD' })).status).toBe(200);
  });

  it('truncateAfter: full Content-Length, N bytes, then the connection closes', async () => {
    proxy.setRules([{ path: blobPath, times: 1, truncateAfter: 100 }]);
    const cut = await rawRequest(blobUrl);
    expect(cut.status).toBe(200);
    expect(cut.headers['content-length']).toBe('1000');
    expect(cut.body).toEqual(BLOB.subarray(0, 100));
    expect(cut.error).toBeDefined();
    expect(proxy.bytesServed(blobPath)).toBe(100);
    expect(proxy.requests()[0]!.fault).toBe('truncateAfter 100');
    expect((await rawRequest(blobUrl)).body).toEqual(BLOB);
  });

  it('corruptByteAt: same length, one byte flipped', async () => {
    proxy.setRules([{ path: blobPath, times: 1, corruptByteAt: 777 }]);
    const res = await rawRequest(blobUrl);
    expect(res.error).toBeUndefined();
    expect(res.body.length).toBe(1000);
    const expected = Buffer.from(BLOB);
    expected[777] = BLOB[777]! ^ 0xff;
    expect(res.body).toEqual(expected);
    expect(proxy.bytesServed(blobPath)).toBe(1000);
  });

  it('contentLength below the real length: a short, complete body', async () => {
    proxy.setRules([{ path: blobPath, times: 1, contentLength: 50 }]);
    const res = await rawRequest(blobUrl);
    expect(res.headers['content-length']).toBe('50');
    expect(res.body).toEqual(BLOB.subarray(0, 50));
    expect(res.error).toBeUndefined();
    expect(proxy.bytesServed(blobPath)).toBe(50);
  });

  it('contentLength above the real length: the whole body, then the connection closes', async () => {
    proxy.setRules([{ path: blobPath, times: 1, contentLength: 2000 }]);
    const res = await rawRequest(blobUrl);
    expect(res.headers['content-length']).toBe('2000');
    expect(res.body).toEqual(BLOB);
    expect(res.error).toBeDefined();
    expect(proxy.bytesServed(blobPath)).toBe(1000);
  });

  it('resetConnection: the client sees ECONNRESET', async () => {
    proxy.setRules([{ path: blobPath, times: 1, resetConnection: true }]);
    const res = await rawRequest(blobUrl);
    expect(res.status).toBeUndefined();
    expect(res.error?.code).toBe('ECONNRESET');
    expect(proxy.requests().map((r) => [r.status, r.bytes, r.fault])).toEqual([
      [undefined, 0, 'resetConnection'],
    ]);
    expect((await rawRequest(blobUrl)).status).toBe(200);
  });

  it('delayMs: answers intact, after the delay', async () => {
    proxy.setRules([{ path: blobPath, times: 1, delayMs: 150 }]);
    const started = performance.now();
    const res = await rawRequest(blobUrl);
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
    expect(res.body).toEqual(BLOB);
  });

  it('applies the first matching rule with faults left; rules can be added and replaced', async () => {
    const rules: FaultRule[] = [
      { path: blobPath, times: 1, status: 500 },
      { path: blobPath, times: 1, status: 502 },
    ];
    proxy.setRules(rules);
    proxy.addRule({ path: /./, times: 1, status: 503 });
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await rawRequest(blobUrl)).status);
    expect(statuses).toEqual([500, 502, 503, 200]);
    proxy.setRules(rules);
    expect((await rawRequest(blobUrl)).status).toBe(500);
  });
});

describe('startFaultProxy with redirectBlobs', () => {
  let registry: TokenRegistryServer;
  let proxy: FaultProxy;
  let digest: Digest;
  let token: string;
  const bytes = Buffer.from('served by the object store\n');
  beforeAll(async () => {
    registry = await startRegistry({ auth: 'token' });
    proxy = await startFaultProxy({ upstream: registry.url, redirectBlobs: true });
    const credentials = { user: registry.username, password: registry.password };
    token = (await fetchToken(registry.realm, registry.service, 'repository:r/blob:pull,push', credentials))
      .body.token;
    digest = await pushBlob(registry.url, 'r/blob', bytes, `Bearer ${token}`);
  });
  afterAll(async () => {
    await proxy.stop();
    await registry.stop();
  });

  it('passes the registry challenge through unchanged', async () => {
    const res = await rawRequest(`${proxy.url}/v2/`);
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe(
      `Bearer realm="${registry.realm}",service="${registry.service}"`,
    );
  });

  it('answers an authorized blob GET with a 307 to the object store, which serves the bytes', async () => {
    const blobPath = `/v2/r/blob/blobs/${digest}`;
    const redirect = await rawRequest(`${proxy.url}${blobPath}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(redirect.status).toBe(307);
    const location = redirect.headers.location!;
    expect(location).toMatch(new RegExp(`^${proxy.objectStoreUrl}/objects/${digest}\\?ticket=[0-9a-f]{32}$`));
    expect(proxy.objectStoreUrl).not.toBe(proxy.url);

    const object = await rawRequest(location, { headers: { 'user-agent': 'test' } });
    expect(object.status).toBe(200);
    expect(object.body).toEqual(bytes);
    const seen = proxy.requests({ server: 'object-store' });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.headers.authorization).toBeUndefined();
    expect(seen[0]!.headers['user-agent']).toBe('test');
    expect(proxy.bytesServed(new RegExp(digest))).toBe(bytes.length);
  });

  it('relays a 401 without redirecting when the client has no token', async () => {
    const res = await rawRequest(`${proxy.url}/v2/r/blob/blobs/${digest}`);
    expect(res.status).toBe(401);
    expect(res.headers.location).toBeUndefined();
  });

  it('applies rules on object-store paths to the redirected download', async () => {
    proxy.setRules([{ path: /^\/objects\//, times: 1, truncateAfter: 5 }]);
    const redirect = await rawRequest(`${proxy.url}/v2/r/blob/blobs/${digest}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const cut = await rawRequest(redirect.headers.location!);
    expect(cut.body).toEqual(bytes.subarray(0, 5));
    expect(cut.error).toBeDefined();
    const again = await rawRequest(redirect.headers.location!);
    expect(again.body).toEqual(bytes);
  });

  it('answers 404 for an unknown ticket', async () => {
    const res = await rawRequest(`${proxy.objectStoreUrl}/objects/${digest}?ticket=00`);
    expect(res.status).toBe(404);
  });
});
