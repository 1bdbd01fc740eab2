/**
 * A reverse proxy (node:http) in front of a registry, for failure tests and for counting: it
 * forwards everything, streaming both ways, counts requests and response bytes, and applies
 * fault rules matched by method and path. With `redirectBlobs` it also plays the registry whose
 * blob GETs redirect (307) to object storage on another host, like registries backed by S3/GCS.
 *
 * Rules are matched on the server that receives the request: blob GETs to the proxy are
 * `/v2/NAME/blobs/DIGEST`; redirected downloads to the object store are `/objects/DIGEST?ticket=…`.
 */
import { randomBytes } from 'node:crypto';
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { LOOPBACK } from './ports.ts';

/** What a rule does to a matching request. */
export type FaultAction =
  /** Answer 429 without asking upstream, with `Retry-After: retryAfter` seconds when given. */
  | { readonly status: 429; readonly retryAfter?: number }
  /** Answer this status without asking upstream. */
  | { readonly status: 500 | 502 | 503 }
  /** Send upstream's headers (full Content-Length), then N body bytes, then close the socket. */
  | { readonly truncateAfter: number }
  /** Flip every bit of the body byte at offset N (same length); no-op if the body is shorter. */
  | { readonly corruptByteAt: number }
  /**
   * Announce `Content-Length: N`. N below the real length: send N bytes and end (the client sees
   * a short, complete body). N above: send the whole body, then close the socket.
   */
  | { readonly contentLength: number }
  /** Reset the TCP connection (RST) instead of answering. */
  | { readonly resetConnection: true }
  /** Wait this long, then forward normally. */
  | { readonly delayMs: number };

export type FaultRule = FaultAction & {
  /** HTTP method to match (`GET`, `HEAD`, `PUT`…); any method when absent. */
  readonly method?: string;
  /** Matched against the request target (path and query string). */
  readonly path: RegExp;
  /** Matching requests that get the fault; later ones pass through. `Infinity` for always. */
  readonly times: number;
};

/** One request as a server of the proxy saw it. Filled in while the response is sent. */
export interface ProxiedRequest {
  readonly server: 'proxy' | 'object-store';
  readonly method: string;
  /** Path and query string, as received. */
  readonly path: string;
  /** The request headers as received (lower-case names). */
  readonly headers: IncomingHttpHeaders;
  /** Status sent to the client; undefined when the connection was reset or nothing was sent. */
  status: number | undefined;
  /** Response body bytes written to the client. */
  bytes: number;
  /** The fault applied, described (`'status 503'`, `'truncateAfter 10'`…), or undefined. */
  fault: string | undefined;
}

export interface RequestFilter {
  readonly server?: 'proxy' | 'object-store';
  readonly method?: string;
  readonly path?: RegExp;
}

export interface FaultProxyOptions {
  /** The registry to forward to, `http://127.0.0.1:PORT`. */
  readonly upstream: string;
  readonly rules?: readonly FaultRule[];
  /**
   * Answer blob GETs that upstream would serve (200) with a 307 to a second loopback server,
   * the "object store", which serves the bytes it fetches from upstream. The redirect URL
   * carries a ticket standing for the client's credentials (like a presigned URL), so the
   * client must not send its Authorization header there; the object store records the headers
   * it received (`requests({ server: 'object-store' })`).
   */
  readonly redirectBlobs?: boolean;
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT`: use it in place of the upstream registry. */
  readonly url: string;
  /** `127.0.0.1:PORT` */
  readonly host: string;
  /** The object store's `http://127.0.0.1:PORT` when `redirectBlobs` is on. */
  readonly objectStoreUrl: string | undefined;
  /** Replaces the rules (and their remaining counts). */
  setRules(rules: readonly FaultRule[]): void;
  addRule(rule: FaultRule): void;
  clearRules(): void;
  /** Recorded requests, oldest first, optionally filtered. */
  requests(filter?: RequestFilter): ProxiedRequest[];
  /** Response body bytes sent to clients for requests whose path matches (and method, if given). */
  bytesServed(path: RegExp, method?: string): number;
  /** Forgets recorded requests. */
  resetCounters(): void;
  stop(): Promise<void>;
}

/** Headers that describe one connection, not the message (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);
/** A blob GET (not an upload): `/v2/NAME/blobs/DIGEST`. */
const BLOB_PATH = /^\/v2\/(.+)\/blobs\/([a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)(?:\?.*)?$/;
const OBJECT_PATH = /^\/objects\/([^/?]+)\?ticket=([0-9a-f]+)$/;
const TICKET_BYTES = 16;
/** Flips every bit of a corrupted byte, so the result always differs. */
const CORRUPT_MASK = 0xff;

interface ActiveRule {
  readonly rule: FaultRule;
  remaining: number;
}

interface Ticket {
  readonly path: string;
  readonly authorization: string | undefined;
}

/** Starts the proxy (and the object store when asked) on free loopback ports. */
export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const upstream = new URL(opts.upstream);
  if (upstream.protocol !== 'http:') throw new Error(`fault proxy: upstream ${opts.upstream} is not http://`);
  const upstreamOrigin = upstream.origin;
  const agent = new Agent({ keepAlive: true });
  let rules: ActiveRule[] = [];
  const setRules = (next: readonly FaultRule[]): void => {
    rules = next.map((rule) => ({ rule, remaining: rule.times }));
  };
  setRules(opts.rules ?? []);
  let records: ProxiedRequest[] = [];
  const tickets = new Map<string, Ticket>();

  const takeFault = (method: string, path: string): FaultAction | undefined => {
    for (const active of rules) {
      if (active.remaining <= 0) continue;
      if (active.rule.method !== undefined && active.rule.method.toUpperCase() !== method) continue;
      if (!active.rule.path.test(path)) continue;
      active.remaining--;
      return active.rule;
    }
    return undefined;
  };

  /** One request to upstream; resolves with its response head. */
  const forward = (
    method: string,
    path: string,
    headers: OutgoingHttpHeaders,
    body: Readable | undefined,
    signal: AbortSignal,
  ): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const upstreamRequest = httpRequest({
        host: upstream.hostname,
        port: upstream.port,
        method,
        path,
        headers: { ...headers, host: upstream.host },
        agent,
        signal,
      });
      upstreamRequest.once('response', resolve);
      upstreamRequest.once('error', reject);
      if (body === undefined) upstreamRequest.end();
      // Upstream may answer before the body is sent (a 401 to a PUT): the response then stands.
      else pipeline(body, upstreamRequest, { signal }).catch(reject);
    });

  /** Upstream's response headers for the client: hop-by-hop removed, upstream URLs pointed at `origin`. */
  const clientHeaders = (headers: IncomingHttpHeaders, origin: string): OutgoingHttpHeaders => {
    const out: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      out[name] = name === 'location' || name === 'www-authenticate' ? rewrite(value, origin) : value;
    }
    return out;
  };
  const rewrite = (value: string | string[], origin: string): string | string[] =>
    Array.isArray(value)
      ? value.map((v) => v.replaceAll(upstreamOrigin, origin))
      : value.replaceAll(upstreamOrigin, origin);

  /** Streams upstream's response to the client, applying a body fault. */
  const relay = async (
    upstreamResponse: IncomingMessage,
    res: ServerResponse,
    record: ProxiedRequest,
    fault: FaultAction | undefined,
    origin: string,
    signal: AbortSignal,
  ): Promise<void> => {
    const headers = clientHeaders(upstreamResponse.headers, origin);
    let limit = Infinity;
    let closeAfter = false;
    let corruptAt = -1;
    if (fault !== undefined && 'truncateAfter' in fault) {
      limit = fault.truncateAfter;
      closeAfter = true;
    } else if (fault !== undefined && 'contentLength' in fault) {
      headers['content-length'] = String(fault.contentLength);
      limit = fault.contentLength;
      closeAfter = true;
    } else if (fault !== undefined && 'corruptByteAt' in fault) {
      corruptAt = fault.corruptByteAt;
    }
    // Without this, Node would keep the connection for the next request after a short body.
    if (closeAfter) headers.connection = 'close';
    const status = upstreamResponse.statusCode ?? 502;
    res.writeHead(status, headers);
    record.status = status;
    let offset = 0;
    await pipeline(
      upstreamResponse,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const input of source) {
          let chunk = input.length > limit - offset ? input.subarray(0, limit - offset) : input;
          if (corruptAt >= offset && corruptAt < offset + chunk.length) {
            chunk = Buffer.from(chunk);
            chunk[corruptAt - offset]! ^= CORRUPT_MASK;
          }
          offset += chunk.length;
          record.bytes += chunk.length;
          if (chunk.length > 0) yield chunk;
          if (offset >= limit) break;
        }
      },
      res,
      { signal },
    );
    // A body cut short of its Content-Length ends with the connection, so the client sees it.
    if (closeAfter) res.socket?.destroy();
  };

  const sendStatus = (
    res: ServerResponse,
    record: ProxiedRequest,
    fault: { status: number; retryAfter?: number },
  ): void => {
    const code = fault.status === 429 ? 'TOOMANYREQUESTS' : 'UNAVAILABLE';
    const body = JSON.stringify({
      errors: [{ code, message: `fault injected by the stevedore test proxy` }],
    });
    const headers: OutgoingHttpHeaders = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    if (fault.retryAfter !== undefined) headers['retry-after'] = String(fault.retryAfter);
    res.writeHead(fault.status, headers);
    record.status = fault.status;
    record.bytes += Buffer.byteLength(body);
    res.end(body);
  };

  const sendLocal = (res: ServerResponse, record: ProxiedRequest, status: number, message: string): void => {
    const body = JSON.stringify({ errors: [{ code: 'PROXY', message }] });
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    record.status = status;
    record.bytes += Buffer.byteLength(body);
    res.end(body);
  };

  const handle = async (
    server: ProxiedRequest['server'],
    req: IncomingMessage,
    res: ServerResponse,
    record: ProxiedRequest,
    origin: string,
  ): Promise<void> => {
    const { method, path } = record;
    const fault = takeFault(method, path);
    record.fault = fault === undefined ? undefined : describeFault(fault);
    const controller = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) controller.abort(new Error(`client closed ${method} ${path}`));
    });
    const { signal } = controller;

    if (fault !== undefined && 'resetConnection' in fault) {
      req.socket.resetAndDestroy();
      return;
    }
    if (fault !== undefined && 'status' in fault) {
      req.resume();
      sendStatus(res, record, fault);
      return;
    }
    if (fault !== undefined && 'delayMs' in fault) await delay(fault.delayMs, undefined, { signal });

    if (server === 'object-store') {
      const match = OBJECT_PATH.exec(path);
      const ticket = match === null ? undefined : tickets.get(match[2]!);
      req.resume();
      if (ticket === undefined) return sendLocal(res, record, 404, `no object at ${path}`);
      const headers: OutgoingHttpHeaders = {};
      if (ticket.authorization !== undefined) headers.authorization = ticket.authorization;
      if (req.headers.range !== undefined) headers.range = req.headers.range;
      const upstreamResponse = await forward(method, ticket.path, headers, undefined, signal);
      return relay(upstreamResponse, res, record, fault, origin, signal);
    }

    const headers: OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name) && name !== 'host') headers[name] = value;
    }
    const hasBody =
      req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    if (hasBody && req.headers['transfer-encoding'] !== undefined) headers['transfer-encoding'] = 'chunked';
    const upstreamResponse = await forward(method, path, headers, hasBody ? req : undefined, signal);
    if (!hasBody) req.resume();
    const blob = BLOB_PATH.exec(path);
    if (
      objectStoreOrigin !== undefined &&
      method === 'GET' &&
      blob !== null &&
      upstreamResponse.statusCode === 200
    ) {
      upstreamResponse.destroy();
      const ticket = randomBytes(TICKET_BYTES).toString('hex');
      tickets.set(ticket, { path, authorization: req.headers.authorization });
      res.writeHead(307, {
        location: `${objectStoreOrigin}/objects/${blob[2]!}?ticket=${ticket}`,
        'content-length': 0,
      });
      record.status = 307;
      res.end();
      return;
    }
    return relay(upstreamResponse, res, record, fault, origin, signal);
  };

  const listen = async (server: ProxiedRequest['server']): Promise<{ http: Server; origin: string }> => {
    let origin = '';
    const http = createServer((req, res) => {
      const record: ProxiedRequest = {
        server,
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        headers: req.headers,
        status: undefined,
        bytes: 0,
        fault: undefined,
      };
      records.push(record);
      handle(server, req, res, record, origin).catch((err: unknown) => {
        if (!res.headersSent) {
          // Upstream unreachable or the request failed before an answer: say so, as a gateway would.
          sendLocal(res, record, 502, `${record.method} ${record.path}: ${String(err)}`);
        } else {
          res.destroy(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen({ host: LOOPBACK, port: 0 }, resolve);
    });
    origin = `http://${LOOPBACK}:${(http.address() as AddressInfo).port}`;
    return { http, origin };
  };

  const proxy = await listen('proxy');
  const objectStore = opts.redirectBlobs === true ? await listen('object-store') : undefined;
  const objectStoreOrigin = objectStore?.origin;

  const matches = (r: ProxiedRequest, filter: RequestFilter): boolean =>
    (filter.server === undefined || r.server === filter.server) &&
    (filter.method === undefined || r.method === filter.method.toUpperCase()) &&
    (filter.path === undefined || filter.path.test(r.path));

  let stopped: Promise<void> | undefined;
  return {
    url: proxy.origin,
    host: proxy.origin.slice('http://'.length),
    objectStoreUrl: objectStoreOrigin,
    setRules,
    addRule: (rule) => rules.push({ rule, remaining: rule.times }),
    clearRules: () => setRules([]),
    requests: (filter = {}) => records.filter((r) => matches(r, filter)).map((r) => ({ ...r })),
    bytesServed: (path, method) =>
      records.filter((r) => matches(r, { path, method })).reduce((sum, r) => sum + r.bytes, 0),
    resetCounters: () => {
      records = [];
    },
    stop: () =>
      (stopped ??= (async () => {
        await Promise.all(
          [proxy.http, ...(objectStore === undefined ? [] : [objectStore.http])].map(closeServer),
        );
        agent.destroy();
      })()),
  };
}

/** A short description of a fault for request records. */
export function describeFault(fault: FaultAction): string {
  if ('status' in fault) {
    return 'retryAfter' in fault && fault.retryAfter !== undefined
      ? `status ${fault.status} retryAfter ${fault.retryAfter}`
      : `status ${fault.status}`;
  }
  if ('truncateAfter' in fault) return `truncateAfter ${fault.truncateAfter}`;
  if ('corruptByteAt' in fault) return `corruptByteAt ${fault.corruptByteAt}`;
  if ('contentLength' in fault) return `contentLength ${fault.contentLength}`;
  if ('resetConnection' in fault) return 'resetConnection';
  return `delayMs ${fault.delayMs}`;
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((err) => (err ? reject(err) : resolve()));
    server.closeAllConnections();
  });
}
