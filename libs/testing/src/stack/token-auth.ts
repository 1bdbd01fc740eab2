/**
 * The pure half of the registry's token auth (Docker token spec,
 * https://distribution.github.io/distribution/spec/auth/token/): scope parsing, the access policy
 * of the test token server, and JWT signing in the form distribution 2.8 verifies.
 */
import { randomBytes, sign, type KeyObject } from 'node:crypto';

/** One `access` entry of a registry token: `repository:NAME:pull,push` parsed. */
export interface ResourceActions {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

/**
 * Parses a scope `type:name:actions`. The name may itself contain `:` (a repository name cannot,
 * but the spec does not forbid it for other types), so type is up to the first `:` and actions
 * after the last. Undefined when malformed.
 */
export function parseScope(scope: string): ResourceActions | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return undefined;
  const name = scope.slice(first + 1, last);
  if (name === '') return undefined;
  const actions = scope
    .slice(last + 1)
    .split(',')
    .filter((a) => a !== '');
  return { type: scope.slice(0, first), name, actions };
}

/** Repositories anonymous clients may pull from. */
export const PUBLIC_PREFIX = 'public/';

/**
 * The test policy: authenticated clients get every action they ask for; anonymous clients get
 * `pull` on repositories under `public/` and nothing else. Entries granting nothing are dropped
 * (the registry then answers 401/403 for them, as real registries do).
 */
export function grantAccess(
  requested: readonly ResourceActions[],
  authenticated: boolean,
): ResourceActions[] {
  const granted: ResourceActions[] = [];
  for (const r of requested) {
    const actions = authenticated
      ? r.actions
      : r.type === 'repository' && r.name.startsWith(PUBLIC_PREFIX)
        ? r.actions.filter((a) => a === 'pull')
        : [];
    if (actions.length > 0) granted.push({ type: r.type, name: r.name, actions: [...new Set(actions)] });
  }
  return granted;
}

/**
 * distribution 2.8 accepts a token up to 60 s after its `exp` claim and before its `nbf`
 * (registry/auth/token/token.go, `Leeway`). The server sets `exp` this much earlier than
 * `issued_at + expires_in` so the registry stops accepting a token when `expires_in` says.
 */
export const REGISTRY_LEEWAY_SECONDS = 60;

export interface TokenClaims {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string;
  readonly exp: number;
  readonly nbf: number;
  readonly iat: number;
  readonly jti: string;
  readonly access: readonly ResourceActions[];
}

export interface ClaimsInput {
  readonly issuer: string;
  readonly service: string;
  readonly subject: string;
  readonly access: readonly ResourceActions[];
  /** Seconds since the epoch. */
  readonly issuedAt: number;
  readonly expiresIn: number;
}

export function tokenClaims(input: ClaimsInput): TokenClaims {
  return {
    iss: input.issuer,
    sub: input.subject,
    aud: input.service,
    exp: input.issuedAt + input.expiresIn - REGISTRY_LEEWAY_SECONDS,
    nbf: input.issuedAt,
    iat: input.issuedAt,
    jti: randomBytes(16).toString('hex'),
    access: input.access,
  };
}

function base64url(data: string | Buffer): string {
  return Buffer.from(data).toString('base64url');
}

/**
 * A compact JWS signed ES256 with `key`. The header carries the signing certificate as `x5c`
 * (base64 DER): distribution 2.8 verifies that chain against its `rootcertbundle` and takes the
 * key from it. (A libtrust `kid` also works but needs the libtrust fingerprint format; `x5c`
 * needs nothing beyond the certificate.) ECDSA signatures in JWS are `R || S`, not DER.
 */
export function signToken(claims: TokenClaims, key: KeyObject, certificateDer: Buffer): string {
  const header = { typ: 'JWT', alg: 'ES256', x5c: [certificateDer.toString('base64')] };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = sign('sha256', Buffer.from(signingInput), { key, dsaEncoding: 'ieee-p1363' });
  return `${signingInput}.${base64url(signature)}`;
}

/** Decodes `user:password` from a `Basic` Authorization header; undefined if absent or not Basic. */
export function parseBasicAuthorization(
  header: string | undefined,
): { user: string; password: string } | undefined {
  if (header === undefined) return undefined;
  const match = /^Basic\s+(\S+)$/i.exec(header.trim());
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
