/**
 * Authentication: `Authorization: Bearer <token>` for the API; HTTP Basic (board user and
 * password) or the bearer token for Bull Board. Secrets are compared in constant time: both sides
 * are hashed first (the repo's digest helper), so neither the content nor the length of the
 * expected secret shows in the timing.
 */
import { timingSafeEqual } from 'node:crypto';
import { digestOf } from '@stevedore/oci';

export interface Credentials {
  readonly token: string;
  readonly boardUser: string;
  readonly boardPassword: string;
}

/** What a request presented, and whether it may pass. */
export type AuthResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly reason: 'missing' | 'invalid' | 'scheme'; readonly message: string };

export const API_REALM = 'stevedore';
export const BOARD_REALM = 'stevedore admin';

function sha256(text: string): Buffer {
  return Buffer.from(digestOf(Buffer.from(text, 'utf8')), 'utf8');
}

/** Compares in time independent of where (or whether) the strings differ. */
export function secretEquals(presented: string, expectedHash: Buffer): boolean {
  return timingSafeEqual(sha256(presented), expectedHash);
}

/** The scheme and the rest of an Authorization header (scheme compared case-insensitively). */
function splitAuthorization(header: string): { scheme: string; value: string } {
  const space = header.indexOf(' ');
  return space < 0
    ? { scheme: header.toLowerCase(), value: '' }
    : { scheme: header.slice(0, space).toLowerCase(), value: header.slice(space + 1).trim() };
}

export class Authenticator {
  readonly #token: Buffer;
  readonly #user: Buffer;
  readonly #password: Buffer;

  constructor(credentials: Credentials) {
    this.#token = sha256(credentials.token);
    this.#user = sha256(credentials.boardUser);
    this.#password = sha256(credentials.boardPassword);
  }

  /** The API accepts the bearer token only. */
  api(header: string | undefined): AuthResult {
    if (header === undefined || header === '') {
      return {
        ok: false,
        reason: 'missing',
        message: 'authentication required: send "Authorization: Bearer <token>"',
      };
    }
    const { scheme, value } = splitAuthorization(header);
    if (scheme !== 'bearer') {
      return {
        ok: false,
        reason: 'scheme',
        message: 'unsupported authorization scheme: send "Authorization: Bearer <token>"',
      };
    }
    return secretEquals(value, this.#token)
      ? { ok: true }
      : { ok: false, reason: 'invalid', message: 'invalid bearer token' };
  }

  /** Bull Board accepts HTTP Basic with the board user and password, or the bearer token. */
  board(header: string | undefined): AuthResult {
    if (header === undefined || header === '') {
      return {
        ok: false,
        reason: 'missing',
        message: 'authentication required: HTTP Basic or a bearer token',
      };
    }
    const { scheme, value } = splitAuthorization(header);
    if (scheme === 'bearer') return this.api(header);
    if (scheme !== 'basic') {
      return {
        ok: false,
        reason: 'scheme',
        message: 'unsupported authorization scheme: use HTTP Basic or a bearer token',
      };
    }
    const decoded = Buffer.from(value, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const user = colon < 0 ? decoded : decoded.slice(0, colon);
    const password = colon < 0 ? '' : decoded.slice(colon + 1);
    // Both comparisons run whatever the first says, so timing does not reveal a valid user name.
    const userOk = secretEquals(user, this.#user);
    const passwordOk = secretEquals(password, this.#password);
    return userOk && passwordOk
      ? { ok: true }
      : { ok: false, reason: 'invalid', message: 'invalid user name or password' };
  }
}

/** `WWW-Authenticate` for a refused API request (RFC 6750 section 3). */
export function bearerChallenge(result: Extract<AuthResult, { ok: false }>): string {
  return result.reason === 'invalid'
    ? `Bearer realm="${API_REALM}", error="invalid_token"`
    : `Bearer realm="${API_REALM}"`;
}

/** `WWW-Authenticate` values for a refused board request: Basic first, so a browser prompts. */
export function boardChallenges(): string[] {
  return [`Basic realm="${BOARD_REALM}", charset="UTF-8"`, `Bearer realm="${API_REALM}"`];
}
