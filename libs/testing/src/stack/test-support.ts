/** Small HTTP helpers for the stack's own tests (not exported from the package). */
import { request, type IncomingHttpHeaders } from 'node:http';
import { createServer, type Server } from 'node:net';
import { digestOf, type Digest } from '@stevedore/oci';

export function basicAuthorization(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

export interface TokenResponse {
  token: string;
  access_token: string;
  expires_in: number;
  issued_at: string;
}

/** GET realm?service=…&scope=… with optional Basic credentials; returns status and JSON body. */
export async function fetchToken(
  realm: string,
  service: string,
  scope: string,
  credentials?: { user: string; password: string },
): Promise<{ status: number; body: TokenResponse }> {
  const url = new URL(realm);
  url.searchParams.set('service', service);
  url.searchParams.set('scope', scope);
  const res = await fetch(url, {
    headers:
      credentials === undefined
        ? {}
        : { authorization: basicAuthorization(credentials.user, credentials.password) },
  });
  return { status: res.status, body: (await res.json()) as TokenResponse };
}

/** The claims of a JWT, unverified. */
export function jwtClaims(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
}

/** Monolithic blob upload (POST, then PUT ?digest=); returns the digest. */
export async function pushBlob(
  base: string,
  repository: string,
  bytes: Buffer,
  authorization?: string,
): Promise<Digest> {
  const headers: Record<string, string> = authorization === undefined ? {} : { authorization };
  const start = await fetch(`${base}/v2/${repository}/blobs/uploads/`, { method: 'POST', headers });
  if (start.status !== 202)
    throw new Error(`POST upload to ${repository}: ${start.status} ${await start.text()}`);
  const location = new URL(start.headers.get('location')!, base);
  const digest = digestOf(bytes);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, {
    method: 'PUT',
    headers: {
      ...headers,
      'content-type': 'application/octet-stream',
      'content-length': String(bytes.length),
    },
    body: bytes,
  });
  if (put.status !== 201)
    throw new Error(`PUT blob ${digest} to ${repository}: ${put.status} ${await put.text()}`);
  return digest;
}

export interface RawResponse {
  status: number | undefined;
  headers: IncomingHttpHeaders;
  /** The body bytes received before the end or the error. */
  body: Buffer;
  /** Set when the connection failed or ended before the body was complete. */
  error: NodeJS.ErrnoException | undefined;
}

/**
 * One request over node:http without retries or redirects, keeping what arrived even when the
 * connection breaks: what fault tests need to see exact bytes.
 */
export function rawRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<RawResponse> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const result: RawResponse = { status: undefined, headers: {}, body: Buffer.alloc(0), error: undefined };
    const finish = (error?: NodeJS.ErrnoException): void => {
      result.body = Buffer.concat(chunks);
      result.error ??= error;
      resolve(result);
    };
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      result.status = res.statusCode;
      result.headers = res.headers;
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.once('end', () => finish());
      res.once('aborted', () => finish(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })));
      res.once('error', (err) => finish(err));
    });
    req.once('error', (err) => finish(err));
    req.end(opts.body);
  });
}

/** Holds a loopback port so that a server started on it fails to bind. */
export async function occupyPort(): Promise<{ port: number; release: () => Promise<void> }> {
  const server: Server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return { port: address.port, release: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
