/**
 * Client behaviours the real registry cannot be made to show (no `Accept-Ranges`, chunked bodies
 * without Content-Length, bad Content-Range), against a scripted node:http server. Everything a
 * real registry does is tested in tests/registry.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { matchesHostPattern, nextLink, RegistryClient } from './client.ts';
import { Digester, digestOf } from './digest.ts';
import { ManifestTooLargeError, SizeMismatchError } from './errors.ts';
import { MAX_MANIFEST_BYTES } from './manifest.ts';
import { parseReference } from './reference.ts';

describe('matchesHostPattern', () => {
  const patterns = ['localhost', 'localhost:*', '127.0.0.1:*', 'reg.example:5000'];
  it.each([
    { host: 'localhost', want: true },
    { host: 'localhost:5000', want: true },
    { host: 'LOCALHOST:80', want: true },
    { host: '127.0.0.1:1', want: true },
    { host: '127.0.0.1', want: true },
    { host: '127.0.0.10:5000', want: false },
    { host: 'localhost.evil.example', want: false },
    { host: 'localhost:5000x', want: false },
    { host: 'reg.example:5000', want: true },
    { host: 'reg.example:5001', want: false },
    { host: 'reg.example', want: false },
  ])('$host → $want', ({ host, want }) => {
    expect(matchesHostPattern(host, patterns)).toBe(want);
  });
});

describe('nextLink', () => {
  const base = new URL('http://r.example/v2/a/tags/list?n=2');
  it.each([
    { value: undefined, want: undefined },
    { value: '</v2/a/tags/list?last=b&n=2>; rel="next"', want: 'http://r.example/v2/a/tags/list?last=b&n=2' },
    { value: '<https://o.example/x>; rel=next', want: 'https://o.example/x' },
    { value: '</prev>; rel="prev", </next>; rel="next"', want: 'http://r.example/next' },
    { value: '</other>; rel="nextish"', want: undefined },
  ])('$value', ({ value, want }) => {
    expect(nextLink(value, base)?.href).toBe(want);
  });
});

describe('RegistryClient.baseUrl', () => {
  it.each([
    { registry: 'docker.io', insecure: undefined, want: 'https://registry-1.docker.io/' },
    { registry: 'localhost:5000', insecure: undefined, want: 'http://localhost:5000/' },
    { registry: '127.0.0.1:8080', insecure: undefined, want: 'http://127.0.0.1:8080/' },
    { registry: 'ghcr.io', insecure: undefined, want: 'https://ghcr.io/' },
    { registry: 'localhost:5000', insecure: [], want: 'https://localhost:5000/' },
    { registry: 'reg.lan:5000', insecure: ['reg.lan:*'], want: 'http://reg.lan:5000/' },
  ])('$registry with $insecure', ({ registry, insecure, want }) => {
    const c = new RegistryClient(insecure === undefined ? {} : { insecureRegistries: insecure });
    expect(c.baseUrl(registry).href).toBe(want);
  });
});

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

describe('against a scripted server', () => {
  let server: Server;
  let host: string;
  let handler: Handler;
  let seen: { method: string; url: string; range: string | undefined }[];
  const blob = Buffer.alloc(100_000, 7);
  blob.write('head', 0);
  blob.write('tail', blob.length - 4);
  const digest = digestOf(blob);
  const repo = () => ({ registry: host, repository: 'r' });
  const fast = { attempts: 3, baseDelayMs: 1, maxDelayMs: 2 };

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', range: req.headers.range });
      handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    seen = [];
  });

  async function drain(stream: NodeJS.ReadableStream): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  it('restarts from byte 0 when the server does not do ranges, skipping what was delivered', async () => {
    let calls = 0;
    handler = (_req, res) => {
      calls++;
      res.writeHead(200, { 'content-length': blob.length, connection: 'close' });
      if (calls === 1) {
        res.write(blob.subarray(0, 30_000), () => res.socket?.destroy());
      } else {
        res.end(blob);
      }
    };
    const got = await drain(
      new RegistryClient({ retry: fast }).fetchBlob(repo(), { digest, size: blob.length }),
    );
    expect(got.equals(blob)).toBe(true);
    expect(seen.map((s) => s.range)).toEqual([undefined, undefined]);
  });

  it('continues from an offset with the caller digester', async () => {
    handler = (req, res) => {
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1]);
      res.writeHead(206, {
        'content-length': blob.length - start,
        'content-range': `bytes ${start}-${blob.length - 1}/${blob.length}`,
      });
      res.end(blob.subarray(start));
    };
    const digester = new Digester();
    digester.update(blob.subarray(0, 60_000));
    const stream = new RegistryClient({ retry: fast }).fetchBlob(
      repo(),
      { digest, size: blob.length },
      { offset: 60_000, digester },
    );
    const got = await drain(stream);
    expect(got.equals(blob.subarray(60_000))).toBe(true);
    expect(seen.map((s) => s.range)).toEqual(['bytes=60000-']);
    expect(stream.bytesReceived).toBe(blob.length);
  });

  it.each([
    {
      name: 'offset without digester',
      options: { offset: 5 },
      message: 'offset 5 needs the digester of the bytes before it',
    },
    {
      name: 'offset beyond size',
      options: { offset: 100_001 },
      message: 'offset 100001 is outside 0..100000',
    },
  ])('refuses $name', ({ options, message }) => {
    expect(() => new RegistryClient().fetchBlob(repo(), { digest, size: blob.length }, options)).toThrow(
      message,
    );
  });

  it('fails a 206 that does not continue where asked', async () => {
    let calls = 0;
    handler = (_req, res) => {
      calls++;
      if (calls === 1) {
        res.writeHead(200, { 'content-length': blob.length, 'accept-ranges': 'bytes', connection: 'close' });
        res.write(blob.subarray(0, 10_000), () => res.socket?.destroy());
        return;
      }
      res.writeHead(206, { 'content-range': `bytes 0-${blob.length - 1}/${blob.length}` });
      res.end(blob);
    };
    const err = await drain(
      new RegistryClient({ retry: fast }).fetchBlob(repo(), { digest, size: blob.length }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SizeMismatchError);
    expect((err as Error).message).toBe(
      `fetch blob ${host}/r@${digest}: Content-Range "bytes 0-99999/100000" does not continue at byte 10000 to the end (100000 bytes)`,
    );
  });

  it('fails a body longer than the descriptor without Content-Length', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'transfer-encoding': 'chunked' });
      res.write(blob);
      res.end(Buffer.from('extra'));
    };
    const err = await drain(
      new RegistryClient({ retry: fast }).fetchBlob(repo(), { digest, size: blob.length }),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SizeMismatchError);
    expect((err as Error).message).toBe(
      `fetch blob ${host}/r@${digest}: body is longer than the expected size 100000`,
    );
  });

  it('stops the download when the signal aborts', async () => {
    handler = (_req, res) => {
      res.writeHead(200, { 'content-length': blob.length });
      res.write(blob.subarray(0, 1000));
      // Never finishes: only the abort ends this download.
    };
    const controller = new AbortController();
    const stream = new RegistryClient({ retry: fast }).fetchBlob(
      repo(),
      { digest, size: blob.length },
      { signal: controller.signal },
    );
    stream.once('data', () => controller.abort(new Error('job cancelled')));
    await expect(drain(stream)).rejects.toThrow('job cancelled');
  });

  it('refuses a manifest that grows past the limit without Content-Length', async () => {
    const piece = Buffer.alloc(1024 * 1024, 0x20);
    handler = (_req, res) => {
      res.writeHead(200, {
        'transfer-encoding': 'chunked',
        'content-type': 'application/vnd.oci.image.manifest.v1+json',
      });
      const write = (left: number): void => {
        if (left === 0) {
          res.end();
          return;
        }
        if (res.write(piece)) write(left - 1);
        else res.once('drain', () => write(left - 1));
      };
      write(MAX_MANIFEST_BYTES / piece.length + 1);
    };
    const err = await new RegistryClient({ retry: fast })
      .getManifest(parseReference(`${host}/r:big`))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestTooLargeError);
    expect((err as Error).message).toBe(
      `get manifest ${host}/r:big: manifest too large, more bytes exceeds the limit of ${MAX_MANIFEST_BYTES}`,
    );
  });
});
