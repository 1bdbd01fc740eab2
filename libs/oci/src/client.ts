/**
 * The OCI distribution client (OCI distribution spec v1.1: pull, push, content discovery aside).
 *
 *     RegistryClient ── http.ts (retries, capped error bodies) ── undici
 *          ├── auth.ts (challenges, token cache) ── credentials.ts
 *          └── blob-stream.ts (verifying, resuming blob downloads)
 *
 * Manifests are read whole (they are small and bounded by MAX_MANIFEST_BYTES); blobs are only ever
 * streamed. Registries are reached over https, except those matching `insecureRegistries` (loopback
 * by default), reached over http.
 */
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { Authenticator, repositoryScope } from './auth.ts';
import { BlobStream } from './blob-stream.ts';
import type { CredentialStore } from './credentials.ts';
import { digestAlgorithm, digesterFor, digestOf, isDigest, type Digest, type Digester } from './digest.ts';
import {
  DigestMismatchError,
  isTemporary,
  ManifestTooLargeError,
  RegistryError,
  UnsupportedManifestTypeError,
} from './errors.ts';
import {
  discard,
  errorFromResponse,
  header,
  headerValues,
  makeHttpContext,
  readCapped,
  send,
  type BodyFactory,
  type HttpContext,
  type HttpMethod,
  type HttpResult,
  type Logger,
} from './http.ts';
import {
  MAX_MANIFEST_BYTES,
  parseManifest,
  type Descriptor,
  type ImageManifest,
  type ParsedManifest,
  type Platform,
} from './manifest.ts';
import { MANIFEST_ACCEPT, parseMediaType, UnsupportedMediaTypeError, type MediaType } from './media-types.ts';
import { formatPlatform, selectManifests } from './platform.ts';
import { formatReference, registryEndpoint, withDigest, type Reference } from './reference.ts';
import { retryDelay, sleep, type RetryPolicy } from './retry.ts';
import { parseWwwAuthenticate, type AuthChallenge } from './www-authenticate.ts';

/** Registries reached over plain http unless told otherwise: loopback only. */
export const DEFAULT_INSECURE_REGISTRIES: readonly string[] = Object.freeze([
  'localhost',
  'localhost:*',
  '127.0.0.1',
  '127.0.0.1:*',
  '[::1]',
  '[::1]:*',
]);

/** Redirects followed at most for one blob request (registry → CDN → object store is two). */
const MAX_REDIRECTS = 5;
/** Tags asked for per page (distribution's default page is 100; fewer round trips). */
const TAGS_PAGE_SIZE = 1000;
/** Pages followed at most: a million tags, against a registry linking in circles. */
const MAX_TAG_PAGES = 1000;
/** Largest tag page read. */
const MAX_TAGS_PAGE_BYTES = 4 * 1024 * 1024;
/** Content type of blob uploads (distribution spec: pushing blobs). */
const OCTET_STREAM = 'application/octet-stream';

export interface RegistryClientOptions {
  /** Where credentials come from; anonymous when absent. See `defaultCredentialStore()`. */
  credentials?: CredentialStore;
  userAgent?: string;
  /** Attempts and backoff of temporary failures; defaults to `DEFAULT_RETRY_POLICY`. */
  retry?: Partial<RetryPolicy>;
  /**
   * Registries (host[:port], `host:*` for any port) reached over http. Replaces
   * {@link DEFAULT_INSECURE_REGISTRIES} (loopback); spread it to extend.
   */
  insecureRegistries?: readonly string[];
  logger?: Logger;
  /** undici dispatcher (connection pool, proxy); the global one when absent. */
  dispatcher?: Dispatcher;
  /** Time to wait for response headers (default 30 s). */
  headersTimeoutMs?: number;
  /** Longest silence while reading a body (default 60 s). */
  bodyTimeoutMs?: number;
  /** Source of jitter in [0, 1); tests pass a constant. */
  random?: () => number;
}

/** A repository on a registry. */
export interface RepositoryRef {
  readonly registry: string;
  readonly repository: string;
}

/** The answer of `GET /v2/`. */
export interface PingResult {
  /** 200 (no authentication needed) or 401. */
  status: number;
  /** The challenges of a 401; empty on 200. */
  challenges: AuthChallenge[];
}

/** A manifest or index as fetched: its bytes are the source of truth, `parsed` a view of them. */
export interface ManifestResult {
  /** The reference fetched, pinned to the digest. */
  reference: Reference;
  /** Digest computed over `bytes` (in the algorithm of the digest asked for, else sha256). */
  digest: Digest;
  mediaType: MediaType;
  bytes: Uint8Array;
  parsed: ParsedManifest;
}

export interface ManifestHead {
  digest: Digest;
  mediaType: MediaType | undefined;
  size: number;
}

/** One platform's image manifest, as selected by {@link RegistryClient.resolveImage}. */
export interface ResolvedManifest {
  reference: Reference;
  digest: Digest;
  mediaType: MediaType;
  bytes: Uint8Array;
  manifest: ImageManifest;
  /** The platform of the index entry; undefined when the reference named a manifest directly. */
  platform: Platform | undefined;
}

export interface ResolvedImage {
  /** What the reference pointed at: an index or a single manifest. */
  root: ManifestResult;
  /** The selected image manifests (one for a platform, every image for `'all'`). */
  manifests: ResolvedManifest[];
}

export interface FetchBlobOptions {
  signal?: AbortSignal;
  /**
   * Bytes the caller already has. Requires `digester`, holding the hash of exactly those bytes,
   * so the download still verifies the whole blob.
   */
  offset?: number;
  digester?: Digester;
}

interface CallRequest {
  registry: string;
  scopes: readonly string[];
  method: HttpMethod;
  /** A path under the registry (`/v2/…`) or an absolute URL (upload locations). */
  url: string | URL;
  headers?: Record<string, string>;
  body?: BodyFactory;
  signal?: AbortSignal | undefined;
  reference: string;
  operation: string;
  retry?: boolean;
}

function refString(ref: { registry: string; repository: string; tag?: string; digest?: string }): string {
  return formatReference(ref as Reference);
}

function blobRef(repo: RepositoryRef, digest: string): string {
  return `${repo.registry}/${repo.repository}@${digest}`;
}

function repoPath(repository: string): string {
  // Repository names are [a-z0-9._/-]: nothing to escape but keep the slashes.
  return `/v2/${repository}`;
}

/** True when `host` (host[:port]) matches one of the patterns (`host`, `host:port`, `host:*`). */
export function matchesHostPattern(host: string, patterns: readonly string[]): boolean {
  const h = host.toLowerCase();
  return patterns.some((pattern) => {
    const p = pattern.toLowerCase();
    if (p.endsWith(':*')) {
      const base = p.slice(0, -2);
      return h === base || (h.startsWith(`${base}:`) && /^\d+$/.test(h.slice(base.length + 1)));
    }
    return h === p;
  });
}

/**
 * Client of OCI distribution registries. One instance per process: it caches tokens, each
 * registry's auth challenge, and each registry's credentials (looked up once per client).
 */
export class RegistryClient {
  readonly #http: HttpContext;
  readonly #auth: Authenticator;
  readonly #insecure: readonly string[];

  constructor(options: RegistryClientOptions = {}) {
    this.#http = makeHttpContext(options);
    this.#insecure = options.insecureRegistries ?? DEFAULT_INSECURE_REGISTRIES;
    this.#auth = new Authenticator({
      http: this.#http,
      credentials: options.credentials,
      isInsecure: (host) => matchesHostPattern(host, this.#insecure),
    });
  }

  /** Requests made to token servers so far. */
  get tokenRequests(): number {
    return this.#auth.tokenRequests;
  }

  /** `https://host` or, for insecure registries, `http://host` (Docker Hub: its API host). */
  baseUrl(registry: string): URL {
    const host = registryEndpoint(registry);
    return new URL(`${matchesHostPattern(host, this.#insecure) ? 'http' : 'https'}://${host}`);
  }

  /** `GET /v2/`: whether the registry answers, and how it wants clients to authenticate. */
  async ping(registry: string, options: { signal?: AbortSignal } = {}): Promise<PingResult> {
    const req = { reference: registry, operation: 'ping' };
    const { response, attempts } = await send(this.#http, {
      ...req,
      url: new URL('/v2/', this.baseUrl(registry)),
      method: 'GET',
      signal: options.signal,
    });
    if (response.statusCode === 200) {
      await discard(response);
      return { status: 200, challenges: [] };
    }
    if (response.statusCode === 401) {
      await discard(response);
      const values = headerValues(response, 'www-authenticate');
      try {
        return { status: 401, challenges: parseWwwAuthenticate(values) };
      } catch (err) {
        throw new RegistryError(`ping ${registry}: unparseable WWW-Authenticate`, {
          ...req,
          status: 401,
          temporary: false,
          cause: err,
        });
      }
    }
    throw await errorFromResponse(response, req, attempts);
  }

  /**
   * Sends one request to a registry with authentication: the known header up front, and after a
   * 401 the challenge answered (token fetched or refreshed) and the request sent once more.
   */
  async #call(req: CallRequest): Promise<HttpResult> {
    const base = this.baseUrl(req.registry);
    const url = typeof req.url === 'string' ? new URL(req.url, base) : req.url;
    // Never hand the registry's credentials to another origin (upload locations may point away).
    const sameOrigin = url.origin === base.origin;
    const authorization = sameOrigin
      ? await this.#auth.header(req.registry, req.scopes, req.signal)
      : undefined;
    const send1 = (auth: string | undefined): Promise<HttpResult> =>
      send(this.#http, {
        url,
        method: req.method,
        headers: { ...req.headers, ...(auth === undefined ? {} : { authorization: auth }) },
        ...(req.body === undefined ? {} : { body: req.body }),
        signal: req.signal,
        reference: req.reference,
        operation: req.operation,
        ...(req.retry === undefined ? {} : { retry: req.retry }),
      });
    const first = await send1(authorization);
    if (first.response.statusCode !== 401 || !sameOrigin) {
      if (authorization === undefined && sameOrigin && first.response.statusCode < 400) {
        this.#auth.noteAnonymous(req.registry);
      }
      return first;
    }
    const challenge = headerValues(first.response, 'www-authenticate');
    if (challenge.length === 0) return first;
    const fresh = await this.#auth.challenge(req.registry, req.scopes, challenge, req.signal);
    if (fresh === undefined || fresh === authorization) return first;
    await discard(first.response);
    this.#http.logger?.debug(`authenticated ${req.operation} ${req.reference}`, { registry: req.registry });
    return send1(fresh);
  }

  // ---------------------------------------------------------------------------------- manifests

  /**
   * Fetches a manifest or index by tag or digest, reading at most {@link MAX_MANIFEST_BYTES}. By
   * digest, the bytes are verified against it; by tag, against the registry's
   * `Docker-Content-Digest` when it sends one. Throws {@link RegistryError} (MANIFEST_UNKNOWN,
   * NAME_UNKNOWN…), {@link ManifestTooLargeError}, {@link DigestMismatchError} or
   * {@link UnsupportedManifestTypeError}.
   */
  async getManifest(
    ref: Reference,
    options: { accept?: readonly string[]; signal?: AbortSignal } = {},
  ): Promise<ManifestResult> {
    const reference = refString(ref);
    const req = { reference, operation: 'get manifest' };
    const { response, attempts } = await this.#call({
      ...req,
      registry: ref.registry,
      scopes: [repositoryScope(ref.repository, ['pull'])],
      method: 'GET',
      url: `${repoPath(ref.repository)}/manifests/${ref.digest ?? ref.tag ?? 'latest'}`,
      headers: { accept: (options.accept ?? MANIFEST_ACCEPT).join(', ') },
      signal: options.signal,
    });
    if (response.statusCode !== 200) throw await errorFromResponse(response, req, attempts);

    const length = header(response, 'content-length');
    if (length !== undefined && Number(length) > MAX_MANIFEST_BYTES) {
      response.body.destroy();
      throw new ManifestTooLargeError({ reference, limit: MAX_MANIFEST_BYTES, size: Number(length) });
    }
    let read: { bytes: Buffer; over: boolean };
    try {
      read = await readCapped(response.body, MAX_MANIFEST_BYTES);
    } catch (err) {
      if (options.signal?.aborted === true) throw options.signal.reason;
      const why = err instanceof Error ? err.message : String(err);
      throw new RegistryError(`get manifest ${reference}: reading the body failed: ${why}`, {
        ...req,
        temporary: isTemporary(err),
        cause: err,
      });
    }
    if (read.over) throw new ManifestTooLargeError({ reference, limit: MAX_MANIFEST_BYTES, size: undefined });
    const bytes = new Uint8Array(read.bytes.buffer, read.bytes.byteOffset, read.bytes.byteLength);

    const expected = ref.digest ?? headerDigest(header(response, 'docker-content-digest'));
    const digest = expected === undefined ? digestOf(bytes) : digestOf(bytes, digestAlgorithm(expected));
    if (expected !== undefined && digest !== expected) {
      throw new DigestMismatchError({ ...req, expected, actual: digest });
    }
    const parsed = this.#parseManifest(bytes, header(response, 'content-type'), reference, 'get manifest');
    return { reference: withDigest(ref, digest), digest, mediaType: parsed.mediaType, bytes, parsed };
  }

  #parseManifest(
    bytes: Uint8Array,
    contentType: string | undefined,
    reference: string,
    operation: string,
  ): ParsedManifest {
    try {
      return parseManifest(bytes, contentType);
    } catch (err) {
      if (err instanceof UnsupportedMediaTypeError) {
        throw new UnsupportedManifestTypeError({
          reference,
          operation,
          mediaType: err.mediaType,
          cause: err,
        });
      }
      throw new RegistryError(
        `${operation} ${reference}: ${err instanceof Error ? err.message : String(err)}`,
        {
          reference,
          operation,
          temporary: false,
          cause: err,
        },
      );
    }
  }

  /**
   * `HEAD` of a manifest: its digest (from `Docker-Content-Digest`, or by fetching it when the
   * registry does not send one), media type and size.
   */
  async headManifest(ref: Reference, options: { signal?: AbortSignal } = {}): Promise<ManifestHead> {
    const reference = refString(ref);
    const req = { reference, operation: 'head manifest' };
    const { response, attempts } = await this.#call({
      ...req,
      registry: ref.registry,
      scopes: [repositoryScope(ref.repository, ['pull'])],
      method: 'HEAD',
      url: `${repoPath(ref.repository)}/manifests/${ref.digest ?? ref.tag ?? 'latest'}`,
      headers: { accept: MANIFEST_ACCEPT.join(', ') },
      signal: options.signal,
    });
    await discard(response);
    if (response.statusCode !== 200) {
      // A HEAD has no body: the status alone tells what failed.
      throw new RegistryError(
        `head manifest ${reference}: HTTP ${response.statusCode}${attempts > 1 ? ` (after ${attempts} attempts)` : ''}`,
        { ...req, status: response.statusCode },
      );
    }
    const digest = headerDigest(header(response, 'docker-content-digest'));
    const contentType = header(response, 'content-type');
    const length = Number(header(response, 'content-length'));
    if (digest === undefined || !Number.isSafeInteger(length)) {
      const full = await this.getManifest(ref, options);
      return { digest: full.digest, mediaType: full.mediaType, size: full.bytes.byteLength };
    }
    if (ref.digest !== undefined && digest !== ref.digest) {
      throw new DigestMismatchError({ ...req, expected: ref.digest, actual: digest });
    }
    return { digest, mediaType: mediaTypeOrUndefined(contentType), size: length };
  }

  /**
   * Resolves a reference to image manifests: a manifest is returned as is; an index is followed to
   * the entries for `platform` (or every image for `'all'`, attestations left out), each fetched
   * by digest and verified.
   */
  async resolveImage(
    ref: Reference,
    platform: Platform | 'all',
    options: { signal?: AbortSignal } = {},
  ): Promise<ResolvedImage> {
    const root = await this.getManifest(ref, options);
    if (root.parsed.kind === 'manifest') {
      return {
        root,
        manifests: [
          {
            reference: root.reference,
            digest: root.digest,
            mediaType: root.mediaType,
            bytes: root.bytes,
            manifest: root.parsed.manifest,
            platform: undefined,
          },
        ],
      };
    }
    const reference = refString(root.reference);
    let selected: Descriptor[];
    try {
      selected = selectManifests(root.parsed.index, platform);
    } catch (err) {
      const wanted = platform === 'all' ? 'any platform' : formatPlatform(platform);
      throw new RegistryError(
        `resolve image ${reference} for ${wanted}: ${err instanceof Error ? err.message : String(err)}`,
        { reference, operation: 'resolve image', temporary: false, cause: err },
      );
    }
    const manifests = await Promise.all(
      selected.map(async (descriptor): Promise<ResolvedManifest> => {
        const child = await this.getManifest(withDigest(ref, descriptor.digest), options);
        const childRef = refString(child.reference);
        if (child.bytes.byteLength !== descriptor.size) {
          throw new RegistryError(
            `resolve image ${reference}: manifest ${childRef} is ${child.bytes.byteLength} bytes, the index says ${descriptor.size}`,
            { reference: childRef, operation: 'resolve image', temporary: false },
          );
        }
        if (child.parsed.kind !== 'manifest') {
          throw new UnsupportedManifestTypeError({
            reference: childRef,
            operation: 'resolve image (nested index)',
            mediaType: child.mediaType,
          });
        }
        return {
          reference: child.reference,
          digest: child.digest,
          mediaType: child.mediaType,
          bytes: child.bytes,
          manifest: child.parsed.manifest,
          platform: descriptor.platform,
        };
      }),
    );
    return { root, manifests };
  }

  /**
   * Pushes a manifest or index under `ref`'s tag, or its digest. Returns the digest of `body`
   * (checked against the registry's `Docker-Content-Digest`, and against `ref.digest` first).
   */
  async putManifest(ref: Reference, body: Uint8Array, mediaType: string): Promise<Digest> {
    const reference = refString(ref);
    const req = { reference, operation: 'put manifest' };
    const digest = ref.digest === undefined ? digestOf(body) : digestOf(body, digestAlgorithm(ref.digest));
    if (ref.digest !== undefined && digest !== ref.digest) {
      throw new DigestMismatchError({ ...req, expected: ref.digest, actual: digest });
    }
    const { response, attempts } = await this.#call({
      ...req,
      registry: ref.registry,
      scopes: [repositoryScope(ref.repository, ['pull', 'push'])],
      method: 'PUT',
      url: `${repoPath(ref.repository)}/manifests/${ref.digest ?? ref.tag ?? 'latest'}`,
      headers: { 'content-type': mediaType, 'content-length': String(body.byteLength) },
      body: () => body,
    });
    if (response.statusCode !== 201) throw await errorFromResponse(response, req, attempts);
    await discard(response);
    const stored = headerDigest(header(response, 'docker-content-digest'));
    if (stored !== undefined && digestAlgorithm(stored) === digestAlgorithm(digest) && stored !== digest) {
      throw new DigestMismatchError({ ...req, expected: digest, actual: stored });
    }
    return digest;
  }

  /**
   * Every tag of a repository (`GET /v2/NAME/tags/list`), following `Link: <…>; rel="next"` pages.
   * An unknown repository fails with NAME_UNKNOWN.
   */
  async listTags(repo: RepositoryRef, options: { signal?: AbortSignal } = {}): Promise<string[]> {
    const reference = `${repo.registry}/${repo.repository}`;
    const req = { reference, operation: 'list tags' };
    const tags: string[] = [];
    let url: URL | undefined = new URL(`${repoPath(repo.repository)}/tags/list`, this.baseUrl(repo.registry));
    url.searchParams.set('n', String(TAGS_PAGE_SIZE));
    for (let page = 0; url !== undefined; page++) {
      if (page >= MAX_TAG_PAGES) {
        throw new RegistryError(`list tags ${reference}: more than ${MAX_TAG_PAGES} pages`, {
          ...req,
          temporary: false,
        });
      }
      const { response, attempts } = await this.#call({
        ...req,
        registry: repo.registry,
        scopes: [repositoryScope(repo.repository, ['pull'])],
        method: 'GET',
        url,
        headers: { accept: 'application/json' },
        signal: options.signal,
      });
      if (response.statusCode !== 200) throw await errorFromResponse(response, req, attempts);
      const { bytes, over } = await readCapped(response.body, MAX_TAGS_PAGE_BYTES);
      let body: unknown;
      try {
        if (over) throw new Error(`page larger than ${MAX_TAGS_PAGE_BYTES} bytes`);
        body = JSON.parse(bytes.toString('utf8'));
      } catch (err) {
        throw new RegistryError(`list tags ${reference}: invalid response`, {
          ...req,
          temporary: false,
          cause: err,
        });
      }
      const pageTags = (body as { tags?: unknown } | null)?.tags;
      if (Array.isArray(pageTags)) for (const t of pageTags) if (typeof t === 'string') tags.push(t);
      url = nextLink(header(response, 'link'), url);
    }
    return tags;
  }

  // -------------------------------------------------------------------------------------- blobs

  /**
   * Streams a blob, verifying size and digest as it flows: the stream errors (with
   * {@link DigestMismatchError} or a {@link SizeMismatchError}) instead of ending when the content
   * is wrong. Redirects to other hosts are followed without the Authorization header; broken
   * transfers are resumed (see blob-stream.ts). Nothing is requested until the stream is read.
   */
  fetchBlob(
    repo: RepositoryRef,
    descriptor: { digest: Digest; size: number },
    options: FetchBlobOptions = {},
  ): BlobStream {
    const offset = options.offset ?? 0;
    const reference = blobRef(repo, descriptor.digest);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > descriptor.size) {
      throw new RangeError(`fetch blob ${reference}: offset ${offset} is outside 0..${descriptor.size}`);
    }
    if (options.digester !== undefined && options.digester.size !== offset) {
      throw new RangeError(
        `fetch blob ${reference}: digester has ${options.digester.size} bytes, offset is ${offset}`,
      );
    }
    if (offset > 0 && options.digester === undefined) {
      throw new RangeError(
        `fetch blob ${reference}: offset ${offset} needs the digester of the bytes before it`,
      );
    }
    return new BlobStream({
      open: (at, range, signal) => this.#openBlob(repo, descriptor.digest, at, range, signal),
      expected: { digest: descriptor.digest, size: descriptor.size },
      reference,
      offset,
      digester: options.digester ?? digesterFor(descriptor.digest),
      retry: this.#http.retry,
      random: this.#http.random,
      logger: this.#http.logger,
      signal: options.signal,
    });
  }

  /** GET of a blob from `offset`, following redirects (without credentials off the registry). */
  async #openBlob(
    repo: RepositoryRef,
    digest: Digest,
    offset: number,
    range: boolean,
    signal: AbortSignal,
  ): Promise<HttpResult> {
    const reference = blobRef(repo, digest);
    const rangeHeader: Record<string, string> = range ? { range: `bytes=${offset}-` } : {};
    let result = await this.#call({
      registry: repo.registry,
      scopes: [repositoryScope(repo.repository, ['pull'])],
      method: 'GET',
      url: `${repoPath(repo.repository)}/blobs/${digest}`,
      headers: rangeHeader,
      signal,
      reference,
      operation: 'fetch blob',
    });
    let url = new URL(`${repoPath(repo.repository)}/blobs/${digest}`, this.baseUrl(repo.registry));
    const registryOrigin = url.origin;
    for (let redirects = 0; isRedirect(result.response.statusCode); redirects++) {
      const location = header(result.response, 'location');
      await discard(result.response);
      if (location === undefined || redirects >= MAX_REDIRECTS) {
        throw new RegistryError(
          `fetch blob ${reference}: ${location === undefined ? `HTTP ${result.response.statusCode} without Location` : `more than ${MAX_REDIRECTS} redirects`}`,
          { reference, operation: 'fetch blob', status: result.response.statusCode, temporary: false },
        );
      }
      url = new URL(location, url);
      this.#http.logger?.debug(`fetch blob ${reference}: redirected`, { host: url.host });
      if (url.origin === registryOrigin) {
        result = await this.#call({
          registry: repo.registry,
          scopes: [repositoryScope(repo.repository, ['pull'])],
          method: 'GET',
          url,
          headers: rangeHeader,
          signal,
          reference,
          operation: 'fetch blob',
        });
      } else {
        // Object storage authorises by the signed URL; the registry's token must not leak there.
        result = await send(this.#http, {
          url,
          method: 'GET',
          headers: rangeHeader,
          signal,
          reference,
          operation: 'fetch blob',
        });
      }
    }
    return result;
  }

  /**
   * Pushes a blob unless the repository has it (HEAD first). Uploads monolithically (POST, then
   * one PUT `?digest=`) or, with `chunkSize`, in PATCH chunks with `Content-Range` then a closing
   * PUT. The registry verifies the digest. A temporary failure restarts the upload, within the
   * retry budget: `content` is a byte array or a function opening the stream afresh.
   */
  async pushBlob(
    repo: RepositoryRef,
    content: Uint8Array | (() => Readable),
    expected: { digest: Digest; size: number },
    options: { chunkSize?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    const reference = blobRef(repo, expected.digest);
    if (content instanceof Uint8Array && content.byteLength !== expected.size) {
      throw new RangeError(
        `push blob ${reference}: content is ${content.byteLength} bytes, expected ${expected.size}`,
      );
    }
    if (
      options.chunkSize !== undefined &&
      (!Number.isSafeInteger(options.chunkSize) || options.chunkSize <= 0)
    ) {
      throw new RangeError(`push blob ${reference}: chunkSize must be a positive integer`);
    }
    const scopes = [repositoryScope(repo.repository, ['pull', 'push'])];
    if (await this.#blobExists(repo, expected.digest, scopes, options.signal)) {
      this.#http.logger?.debug(`push blob ${reference}: already present`);
      return;
    }
    const attempts = Math.max(1, this.#http.retry.attempts);
    for (let attempt = 1; ; attempt++) {
      try {
        await this.#upload(repo, content, expected, scopes, options);
        return;
      } catch (err) {
        if (options.signal?.aborted === true) throw options.signal.reason;
        if (!isTemporary(err) || attempt >= attempts) throw err;
        const wait = retryDelay(attempt - 1, this.#http.retry, undefined, this.#http.random) ?? 0;
        this.#http.logger?.warn(`restarting push blob ${reference}`, {
          attempt,
          of: attempts,
          error: err instanceof Error ? err.message : String(err),
          waitMs: wait,
        });
        await sleep(wait, options.signal);
      }
    }
  }

  async #blobExists(
    repo: RepositoryRef,
    digest: Digest,
    scopes: readonly string[],
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    const reference = blobRef(repo, digest);
    const { response, attempts } = await this.#call({
      registry: repo.registry,
      scopes,
      method: 'HEAD',
      url: `${repoPath(repo.repository)}/blobs/${digest}`,
      signal,
      reference,
      operation: 'check blob',
    });
    await discard(response);
    if (response.statusCode === 200) return true;
    if (response.statusCode === 404) return false;
    throw new RegistryError(
      `check blob ${reference}: HTTP ${response.statusCode}${attempts > 1 ? ` (after ${attempts} attempts)` : ''}`,
      { reference, operation: 'check blob', status: response.statusCode },
    );
  }

  /** One upload session, start to finish. */
  async #upload(
    repo: RepositoryRef,
    content: Uint8Array | (() => Readable),
    expected: { digest: Digest; size: number },
    scopes: readonly string[],
    options: { chunkSize?: number; signal?: AbortSignal },
  ): Promise<void> {
    const reference = blobRef(repo, expected.digest);
    const operation = 'push blob';
    const base = { registry: repo.registry, scopes, signal: options.signal, reference, operation };
    const started = await this.#call({
      ...base,
      method: 'POST',
      url: `${repoPath(repo.repository)}/blobs/uploads/`,
    });
    if (started.response.statusCode !== 202) {
      throw await errorFromResponse(started.response, { reference, operation }, started.attempts);
    }
    await discard(started.response);
    let location = this.#location(started.response, repo, reference, operation);

    if (options.chunkSize !== undefined) {
      let offset = 0;
      for await (const chunk of chunks(content, options.chunkSize)) {
        const patched = await this.#call({
          ...base,
          method: 'PATCH',
          url: location,
          headers: {
            'content-type': OCTET_STREAM,
            'content-length': String(chunk.byteLength),
            'content-range': `${offset}-${offset + chunk.byteLength - 1}`,
          },
          body: () => chunk,
          retry: false,
        });
        if (patched.response.statusCode !== 202) {
          throw await errorFromResponse(patched.response, { reference, operation }, patched.attempts);
        }
        await discard(patched.response);
        location = this.#location(patched.response, repo, reference, operation);
        offset += chunk.byteLength;
      }
      if (offset !== expected.size) {
        throw new RegistryError(
          `push blob ${reference}: content was ${offset} bytes, expected ${expected.size}`,
          {
            reference,
            operation,
            temporary: false,
          },
        );
      }
    }

    const finish = new URL(location);
    finish.searchParams.set('digest', expected.digest);
    const monolithic = options.chunkSize === undefined;
    const put = await this.#call({
      ...base,
      method: 'PUT',
      url: finish,
      headers: {
        'content-type': OCTET_STREAM,
        'content-length': String(monolithic ? expected.size : 0),
      },
      ...(monolithic ? { body: content instanceof Uint8Array ? () => content : content } : {}),
      retry: false,
    });
    if (put.response.statusCode !== 201) {
      throw await errorFromResponse(put.response, { reference, operation }, put.attempts);
    }
    await discard(put.response);
  }

  #location(
    response: HttpResult['response'],
    repo: RepositoryRef,
    reference: string,
    operation: string,
  ): URL {
    const location = header(response, 'location');
    if (location === undefined) {
      throw new RegistryError(`${operation} ${reference}: upload response without Location`, {
        reference,
        operation,
        status: response.statusCode,
        temporary: false,
      });
    }
    return new URL(location, this.baseUrl(repo.registry));
  }

  /**
   * Cross-repository mount (POST `?mount=DIGEST&from=REPO`). True when mounted (201); false when
   * the registry started an ordinary upload instead (202), which is then cancelled: push the blob.
   */
  async mountBlob(repo: RepositoryRef, digest: Digest, fromRepository: string): Promise<boolean> {
    const reference = blobRef(repo, digest);
    const operation = 'mount blob';
    const url = new URL(`${repoPath(repo.repository)}/blobs/uploads/`, this.baseUrl(repo.registry));
    url.searchParams.set('mount', digest);
    url.searchParams.set('from', fromRepository);
    const scopes = [
      repositoryScope(repo.repository, ['pull', 'push']),
      repositoryScope(fromRepository, ['pull']),
    ];
    const { response, attempts } = await this.#call({
      registry: repo.registry,
      scopes,
      method: 'POST',
      url,
      reference,
      operation,
    });
    if (response.statusCode === 201) {
      await discard(response);
      return true;
    }
    if (response.statusCode !== 202)
      throw await errorFromResponse(response, { reference, operation }, attempts);
    await discard(response);
    const location = this.#location(response, repo, reference, operation);
    const cancelled = await this.#call({
      registry: repo.registry,
      scopes,
      method: 'DELETE',
      url: location,
      reference,
      operation: 'cancel upload',
    });
    await discard(cancelled.response);
    if (cancelled.response.statusCode >= 300) {
      // The session expires on its own (distribution purges uploads); the mount answer stands.
      this.#http.logger?.warn(`cancel upload ${reference}: HTTP ${cancelled.response.statusCode}`);
    }
    return false;
  }
}

/** The `rel="next"` target of a `Link` header (RFC 8288), resolved against `base`. */
export function nextLink(value: string | undefined, base: URL): URL | undefined {
  if (value === undefined) return undefined;
  for (const part of value.split(',')) {
    const match = /^\s*<([^>]*)>\s*;(.*)$/.exec(part);
    if (match !== null && /(?:^|;)\s*rel="?next"?\s*(?:;|$)/.test(match[2] ?? ''))
      return new URL(match[1] ?? '', base);
  }
  return undefined;
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function headerDigest(value: string | undefined): Digest | undefined {
  return value !== undefined && isDigest(value.trim()) ? (value.trim() as Digest) : undefined;
}

function mediaTypeOrUndefined(value: string | undefined): MediaType | undefined {
  if (value === undefined) return undefined;
  try {
    return parseMediaType(value);
  } catch {
    // A HEAD's Content-Type is informative only; the manifest's own mediaType is authoritative.
    return undefined;
  }
}

/** Splits content into chunks of `size` bytes (the last may be shorter), holding one at a time. */
async function* chunks(content: Uint8Array | (() => Readable), size: number): AsyncGenerator<Uint8Array> {
  if (content instanceof Uint8Array) {
    for (let at = 0; at < content.byteLength; at += size) yield content.subarray(at, at + size);
    return;
  }
  let pending: Buffer[] = [];
  let pendingSize = 0;
  for await (const input of content() as AsyncIterable<Buffer>) {
    let data = input;
    while (pendingSize + data.byteLength >= size) {
      const take = size - pendingSize;
      pending.push(data.subarray(0, take));
      yield Buffer.concat(pending, size);
      data = data.subarray(take);
      pending = [];
      pendingSize = 0;
    }
    if (data.byteLength > 0) {
      pending.push(data);
      pendingSize += data.byteLength;
    }
  }
  if (pendingSize > 0) yield Buffer.concat(pending, pendingSize);
}
