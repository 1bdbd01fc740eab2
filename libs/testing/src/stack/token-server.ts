import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LOOPBACK } from './ports.ts';
import {
  grantAccess,
  parseBasicAuthorization,
  parseScope,
  signToken,
  tokenClaims,
  type ResourceActions,
} from './token-auth.ts';

export interface TokenServerOptions {
  /** The `service` the registry names in its challenge; tokens are audience-bound to it. */
  readonly service: string;
  readonly issuer: string;
  readonly username: string;
  readonly password: string;
  /** `expires_in` of issued tokens, seconds. */
  readonly expiresIn: number;
  /** PEM files made by openssl: the EC P-256 signing key and its self-signed certificate. */
  readonly keyPath: string;
  readonly certPath: string;
}

/** One request to the token endpoint, as the token server saw it. */
export interface TokenRequestRecord {
  /** The user from Basic credentials; undefined when anonymous. */
  readonly user: string | undefined;
  readonly scopes: readonly string[];
  readonly status: number;
  /** What the issued token grants (empty when none was issued). */
  readonly granted: readonly ResourceActions[];
}

export interface TokenServer {
  /** The realm: `http://127.0.0.1:PORT/token`. */
  readonly realm: string;
  /** Requests to the token endpoint so far, whatever their outcome. */
  tokenRequests(): number;
  tokenRequestLog(): readonly TokenRequestRecord[];
  stop(): Promise<void>;
}

const BASIC_CHALLENGE = 'Basic realm="stevedore test token server"';

/**
 * A Docker token server (node:http, port 0 on 127.0.0.1) for distribution's `auth.token`:
 * `GET /token?service=S&scope=repository:NAME:pull,push` with optional Basic credentials.
 * Valid credentials get the requested actions; anonymous requests get `pull` on `public/*`;
 * invalid credentials get 401. Tokens are ES256 JWTs carrying the certificate in `x5c`.
 */
export async function startTokenServer(opts: TokenServerOptions): Promise<TokenServer> {
  const key = createPrivateKey(await readFile(opts.keyPath));
  const certificateDer = new X509Certificate(await readFile(opts.certPath)).raw;
  const log: TokenRequestRecord[] = [];

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', `http://${LOOPBACK}`);
    if (url.pathname !== '/token')
      return sendJson(res, 404, { errors: [{ code: 'NOT_FOUND', message: url.pathname }] });
    if (req.method !== 'GET') {
      res.setHeader('Allow', 'GET');
      return sendJson(res, 405, { errors: [{ code: 'UNSUPPORTED', message: `${req.method} /token` }] });
    }
    const scopes = url.searchParams.getAll('scope').flatMap((s) => s.split(' ').filter((x) => x !== ''));
    const authorization = req.headers.authorization;
    const credentials = parseBasicAuthorization(authorization);
    const record = (status: number, granted: readonly ResourceActions[] = []): void => {
      log.push({ user: credentials?.user, scopes, status, granted });
    };

    if (authorization !== undefined) {
      if (credentials?.user !== opts.username || credentials.password !== opts.password) {
        record(401);
        res.setHeader('WWW-Authenticate', BASIC_CHALLENGE);
        return sendJson(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'invalid credentials' }] });
      }
    }
    const service = url.searchParams.get('service');
    if (service !== opts.service) {
      record(400);
      return sendJson(res, 400, {
        errors: [{ code: 'INVALID_REQUEST', message: `unknown service "${service}"` }],
      });
    }
    const requested: ResourceActions[] = [];
    for (const scope of scopes) {
      const parsed = parseScope(scope);
      if (parsed === undefined) {
        record(400);
        return sendJson(res, 400, {
          errors: [{ code: 'INVALID_REQUEST', message: `malformed scope "${scope}"` }],
        });
      }
      requested.push(parsed);
    }
    const granted = grantAccess(requested, credentials !== undefined);
    const issuedAt = Math.floor(Date.now() / 1000);
    const claims = tokenClaims({
      issuer: opts.issuer,
      service: opts.service,
      subject: credentials?.user ?? '',
      access: granted,
      issuedAt,
      expiresIn: opts.expiresIn,
    });
    const token = signToken(claims, key, certificateDer);
    record(200, granted);
    sendJson(res, 200, {
      token,
      access_token: token,
      expires_in: opts.expiresIn,
      issued_at: new Date(issuedAt * 1000).toISOString(),
    });
  };

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: LOOPBACK, port: 0 }, resolve);
  });
  const { port } = server.address() as AddressInfo;
  let stopped: Promise<void> | undefined;
  return {
    realm: `http://${LOOPBACK}:${port}/token`,
    tokenRequests: () => log.length,
    tokenRequestLog: () => [...log],
    stop: () =>
      (stopped ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      })),
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
