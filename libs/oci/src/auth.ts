/**
 * Registry authentication (distribution "token authentication" spec, docker's auth flow):
 *
 * - a registry answers 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` or `Basic`;
 * - Bearer: GET `realm?service=…&scope=…` anonymously or with Basic credentials, or POST an OAuth2
 *   refresh token (`identitytoken`); the answer holds `token` or `access_token` and `expires_in`
 *   (60 s when absent); tokens are cached per (registry, scopes) until shortly before expiry;
 * - Basic: the credentials on every request.
 *
 * The challenge of each registry is remembered, so after the first 401 the right header is sent
 * up front. Credentials never appear in errors or logs; token server errors name the registry and
 * the scope.
 */
import type { Credential, CredentialStore } from './credentials.ts';
import { RegistryError } from './errors.ts';
import { errorFromResponse, readCapped, safeUrl, send, type HttpContext } from './http.ts';
import { findBearer, hasBasic, parseWwwAuthenticate, type AuthChallenge } from './www-authenticate.ts';

/** Token lifetime when the server does not say (distribution token spec: 60 seconds). */
export const DEFAULT_TOKEN_LIFETIME_S = 60;
/** Renew a token this long before it expires, so it does not lapse in flight... */
const EXPIRY_MARGIN_MS = 10_000;
/** ...but never more than this fraction of its lifetime, for very short-lived tokens. */
const EXPIRY_MARGIN_FRACTION = 0.25;
/** Largest token response read: JWTs with many claims stay far below. */
const MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024;
/** OAuth2 client id sent with refresh-token grants (required by the spec, free-form). */
const OAUTH_CLIENT_ID = 'stevedore';

/** What the client knows of a registry's authentication. */
type RegistryAuth =
  { kind: 'none' } | { kind: 'basic' } | { kind: 'bearer'; realm: string; service: string | undefined };

interface CachedToken {
  header: string;
  renewAt: number;
}

/** `repository:NAME:ACTIONS` scope (distribution token scope grammar). */
export function repositoryScope(repository: string, actions: readonly ('pull' | 'push')[]): string {
  return `repository:${repository}:${actions.join(',')}`;
}

/** When a token obtained at `now` with `expiresInS` should be replaced. */
export function tokenRenewAt(now: number, expiresInS: number): number {
  const lifetime = expiresInS * 1000;
  return now + lifetime - Math.min(EXPIRY_MARGIN_MS, lifetime * EXPIRY_MARGIN_FRACTION);
}

/** The token of a token server answer, and its lifetime in seconds. */
export function parseTokenResponse(body: unknown): { token: string; expiresIn: number } | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const { token, access_token: accessToken, expires_in: expiresIn } = body as Record<string, unknown>;
  const t = typeof token === 'string' && token !== '' ? token : accessToken;
  if (typeof t !== 'string' || t === '') return undefined;
  const lifetime =
    typeof expiresIn === 'number' && Number.isFinite(expiresIn) && expiresIn > 0
      ? expiresIn
      : DEFAULT_TOKEN_LIFETIME_S;
  return { token: t, expiresIn: lifetime };
}

export interface AuthenticatorOptions {
  http: HttpContext;
  credentials: CredentialStore | undefined;
  /** Whether plain http to this host[:port] is allowed (then credentials may be sent over it). */
  isInsecure: (host: string) => boolean;
  now?: () => number;
}

/** Gets Authorization headers for registry requests. One per client; safe for concurrent use. */
export class Authenticator {
  readonly #http: HttpContext;
  readonly #credentials: CredentialStore | undefined;
  readonly #isInsecure: (host: string) => boolean;
  readonly #now: () => number;
  readonly #registries = new Map<string, RegistryAuth>();
  readonly #tokens = new Map<string, CachedToken>();
  /** Token requests in flight, shared by concurrent callers wanting the same token. */
  readonly #pending = new Map<string, Promise<string>>();
  readonly #credentialCache = new Map<string, Credential | undefined>();
  /** Token server requests made, for tests and metrics. */
  tokenRequests = 0;

  constructor(options: AuthenticatorOptions) {
    this.#http = options.http;
    this.#credentials = options.credentials;
    this.#isInsecure = options.isInsecure;
    this.#now = options.now ?? Date.now;
  }

  /**
   * The Authorization header to send up front, from what is known of the registry: a cached or
   * freshly fetched token, Basic credentials, or none (unknown registry, or anonymous).
   */
  async header(
    registry: string,
    scopes: readonly string[],
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    const known = this.#registries.get(registry);
    if (known === undefined) return undefined;
    switch (known.kind) {
      case 'none':
        return undefined;
      case 'basic':
        return this.#basicHeader(registry, signal);
      case 'bearer':
        return this.#bearerHeader(registry, known, scopes, undefined, false, signal);
    }
  }

  /**
   * After a 401: learns the registry's challenge and returns a fresh header (never a cached token:
   * the one sent was refused). Undefined when there is nothing better to send (Basic without
   * credentials); the caller then fails with the 401.
   */
  async challenge(
    registry: string,
    scopes: readonly string[],
    wwwAuthenticate: readonly string[],
    signal?: AbortSignal,
  ): Promise<string | undefined> {
    let challenges: AuthChallenge[];
    try {
      challenges = parseWwwAuthenticate(wwwAuthenticate);
    } catch (err) {
      throw new RegistryError(`authenticate to ${registry}: unparseable WWW-Authenticate`, {
        reference: registry,
        operation: 'authenticate',
        temporary: false,
        cause: err,
      });
    }
    const bearer = findBearer(challenges);
    if (bearer !== undefined) {
      const auth: RegistryAuth = { kind: 'bearer', realm: bearer.realm, service: bearer.service };
      this.#registries.set(registry, auth);
      // The challenge's scope is what this request needs; ours may name more (a push's pull).
      const wanted = [...scopes];
      for (const s of bearer.scope?.split(' ') ?? []) if (s !== '' && !wanted.includes(s)) wanted.push(s);
      return this.#bearerHeader(registry, auth, scopes, wanted, true, signal);
    }
    if (hasBasic(challenges)) {
      this.#registries.set(registry, { kind: 'basic' });
      return this.#basicHeader(registry, signal);
    }
    throw new RegistryError(
      `authenticate to ${registry}: no supported challenge (schemes: ${challenges.map((c) => c.scheme).join(', ') || 'none'})`,
      { reference: registry, operation: 'authenticate', temporary: false },
    );
  }

  /** Remembers that a registry answered without asking for authentication. */
  noteAnonymous(registry: string): void {
    if (!this.#registries.has(registry)) this.#registries.set(registry, { kind: 'none' });
  }

  async #credential(registry: string, signal?: AbortSignal): Promise<Credential | undefined> {
    if (this.#credentialCache.has(registry)) return this.#credentialCache.get(registry);
    const found = await this.#credentials?.get(registry, signal);
    this.#credentialCache.set(registry, found);
    return found;
  }

  async #basicHeader(registry: string, signal?: AbortSignal): Promise<string | undefined> {
    const credential = await this.#credential(registry, signal);
    if (credential?.kind !== 'basic') return undefined;
    return `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
  }

  async #bearerHeader(
    registry: string,
    auth: { realm: string; service: string | undefined },
    scopes: readonly string[],
    request: readonly string[] | undefined,
    refresh: boolean,
    signal?: AbortSignal,
  ): Promise<string> {
    const key = `${registry} ${[...scopes].sort().join(' ')}`;
    const cached = this.#tokens.get(key);
    if (!refresh && cached !== undefined && cached.renewAt > this.#now()) return cached.header;
    if (refresh) this.#tokens.delete(key);
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      pending = this.#fetchToken(registry, auth, request ?? scopes, signal).then(({ token, expiresIn }) => {
        const header = `Bearer ${token}`;
        this.#tokens.set(key, { header, renewAt: tokenRenewAt(this.#now(), expiresIn) });
        return header;
      });
      this.#pending.set(key, pending);
      const clear = (): void => {
        this.#pending.delete(key);
      };
      pending.then(clear, clear);
    }
    return pending;
  }

  async #fetchToken(
    registry: string,
    auth: { realm: string; service: string | undefined },
    scopes: readonly string[],
    signal?: AbortSignal,
  ): Promise<{ token: string; expiresIn: number }> {
    const credential = await this.#credential(registry, signal);
    const what = `${registry} (scope ${scopes.join(' ') || 'none'})`;
    const operation = 'get token for';
    if (credential?.kind === 'registry-token') {
      // A bearer token given as is: its lifetime is unknown, so re-read it at the default pace.
      return { token: credential.token, expiresIn: DEFAULT_TOKEN_LIFETIME_S };
    }
    let realm: URL;
    try {
      realm = new URL(auth.realm);
    } catch {
      throw new RegistryError(`${operation} ${what}: invalid realm "${auth.realm}"`, {
        reference: registry,
        operation,
        temporary: false,
      });
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
      throw new RegistryError(`${operation} ${what}: unsupported realm scheme ${realm.protocol}`, {
        reference: registry,
        operation,
        temporary: false,
      });
    }
    if (credential !== undefined && realm.protocol === 'http:' && !this.#isInsecure(realm.host)) {
      throw new RegistryError(
        `${operation} ${what}: refusing to send credentials to ${safeUrl(realm)} over plain http`,
        { reference: registry, operation, temporary: false },
      );
    }

    const headers: Record<string, string> = { accept: 'application/json' };
    let method: 'GET' | 'POST' = 'GET';
    let body: string | undefined;
    if (credential?.kind === 'identity-token') {
      method = 'POST';
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: credential.token,
        client_id: OAUTH_CLIENT_ID,
        scope: scopes.join(' '),
      });
      if (auth.service !== undefined) form.set('service', auth.service);
      body = form.toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else {
      if (auth.service !== undefined) realm.searchParams.set('service', auth.service);
      for (const scope of scopes) realm.searchParams.append('scope', scope);
      if (credential?.kind === 'basic') {
        realm.searchParams.set('account', credential.username);
        headers['authorization'] =
          `Basic ${Buffer.from(`${credential.username}:${credential.password}`).toString('base64')}`;
      }
    }

    this.tokenRequests++;
    this.#http.logger?.debug(`${operation} ${what}`, { realm: safeUrl(realm), method });
    const { response, attempts } = await send(this.#http, {
      url: realm,
      method,
      headers,
      ...(body === undefined ? {} : { body: () => body }),
      signal,
      reference: what,
      operation,
    });
    if (response.statusCode !== 200) {
      throw await errorFromResponse(response, { reference: what, operation }, attempts);
    }
    const { bytes, over } = await readCapped(response.body, MAX_TOKEN_RESPONSE_BYTES);
    if (over) {
      throw new RegistryError(
        `${operation} ${what}: token response larger than ${MAX_TOKEN_RESPONSE_BYTES} bytes`,
        {
          reference: registry,
          operation,
          temporary: false,
        },
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      // JSON.parse quotes the body, which holds the token: no cause.
      throw new RegistryError(`${operation} ${what}: token response is not JSON`, {
        reference: registry,
        operation,
        temporary: false,
      });
    }
    const parsed = parseTokenResponse(json);
    if (parsed === undefined) {
      throw new RegistryError(`${operation} ${what}: token response has no "token" or "access_token"`, {
        reference: registry,
        operation,
        temporary: false,
      });
    }
    return parsed;
  }
}
