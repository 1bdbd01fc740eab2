/**
 * `WWW-Authenticate` parsing (RFC 9110 §11.6.1):
 *
 *     WWW-Authenticate = 1#challenge
 *     challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *     auth-param       = token BWS "=" BWS ( token / quoted-string )
 *
 * A header may hold several challenges separated by commas, which also separate the parameters of
 * one challenge: a comma followed by `token =` continues the parameters, a comma followed by a bare
 * token starts the next challenge. Pure: no I/O.
 */

export interface AuthChallenge {
  /** Lowercased scheme, e.g. `bearer`, `basic`. */
  scheme: string;
  /** Parameters with lowercased names and unquoted values, e.g. realm, service, scope, error. */
  params: Readonly<Record<string, string>>;
  /** The token68 form (`Negotiate abc==`), when the challenge used it instead of parameters. */
  token68?: string;
}

export class WwwAuthenticateParseError extends Error {
  override name = 'WwwAuthenticateParseError';
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68_CHAR = /[-._~+/0-9A-Za-z]/;

class Scanner {
  readonly input: string;
  pos = 0;

  constructor(input: string) {
    this.input = input;
  }

  get done(): boolean {
    return this.pos >= this.input.length;
  }

  peek(): string | undefined {
    return this.input[this.pos];
  }

  skipSpaces(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }

  /** Skips whitespace and empty list elements (`a, , b` is allowed by the list rule). */
  skipSeparators(): void {
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === ',') this.pos++;
  }

  token(): string {
    const start = this.pos;
    while (!this.done && TCHAR.test(this.input[this.pos] ?? '')) this.pos++;
    return this.input.slice(start, this.pos);
  }

  quotedString(): string {
    // Caller checked the opening quote.
    this.pos++;
    let value = '';
    while (!this.done) {
      const c = this.input[this.pos++];
      if (c === '"') return value;
      if (c === '\\') {
        if (this.done) break;
        value += this.input[this.pos++];
      } else {
        value += c;
      }
    }
    throw new WwwAuthenticateParseError(
      `unterminated quoted string in WWW-Authenticate at offset ${this.pos}`,
    );
  }

  fail(what: string): never {
    throw new WwwAuthenticateParseError(`invalid WWW-Authenticate: ${what} at offset ${this.pos}`);
  }
}

/**
 * Parses every challenge of a `WWW-Authenticate` header. Several header lines are joined with
 * commas first, as RFC 9110 allows. Throws {@link WwwAuthenticateParseError} on malformed input.
 */
export function parseWwwAuthenticate(header: string | readonly string[]): AuthChallenge[] {
  const s = new Scanner(typeof header === 'string' ? header : header.join(', '));
  const challenges: AuthChallenge[] = [];
  s.skipSeparators();
  while (!s.done) {
    const scheme = s.token();
    if (scheme === '') s.fail('expected an auth scheme');
    const challenge: { scheme: string; params: Record<string, string>; token68?: string } = {
      scheme: scheme.toLowerCase(),
      params: {},
    };
    challenges.push(challenge);
    const afterScheme = s.pos;
    s.skipSpaces();
    if (s.done || s.peek() === ',') {
      s.skipSeparators();
      continue;
    }
    if (s.pos === afterScheme) s.fail('expected a space after the auth scheme');
    if (!readParams(s, challenge.params)) {
      challenge.token68 = readToken68(s);
      s.skipSpaces();
      if (!s.done && s.peek() !== ',') s.fail('expected "," after token68');
    }
    s.skipSeparators();
  }
  return challenges;
}

/**
 * Reads `name=value` pairs until the next challenge. Returns false, without moving, when the
 * first thing is not a parameter (then it is a token68).
 */
function readParams(s: Scanner, params: Record<string, string>): boolean {
  let first = true;
  while (true) {
    const start = s.pos;
    const name = s.token();
    s.skipSpaces();
    if (name === '' || s.peek() !== '=') {
      s.pos = start;
      if (first) return false;
      // A bare token after a comma: the next challenge's scheme.
      return true;
    }
    s.pos++;
    s.skipSpaces();
    // `abc==` is a token68 ending in padding, not the parameter `abc` with a value `=`.
    if (first && (s.peek() === '=' || s.peek() === ',' || s.done)) {
      s.pos = start;
      return false;
    }
    let value: string;
    if (s.peek() === '"') {
      value = s.quotedString();
    } else {
      value = s.token();
      if (value === '') s.fail(`missing value of parameter "${name}"`);
    }
    params[name.toLowerCase()] = value;
    first = false;
    s.skipSpaces();
    if (s.done) return true;
    if (s.peek() !== ',') s.fail('expected "," between parameters');
    s.skipSeparators();
    if (s.done) return true;
  }
}

function readToken68(s: Scanner): string {
  const start = s.pos;
  while (!s.done && TOKEN68_CHAR.test(s.peek() ?? '')) s.pos++;
  if (s.pos === start) s.fail('expected a token68 or parameters');
  while (s.peek() === '=') s.pos++;
  return s.input.slice(start, s.pos);
}

/** The parameters a Bearer token request needs, from the first usable Bearer challenge. */
export interface BearerChallenge {
  realm: string;
  service: string | undefined;
  scope: string | undefined;
  error: string | undefined;
}

/** The first Bearer challenge with a realm, if any. */
export function findBearer(challenges: readonly AuthChallenge[]): BearerChallenge | undefined {
  for (const c of challenges) {
    const realm = c.params['realm'];
    if (c.scheme === 'bearer' && realm !== undefined && realm !== '') {
      return { realm, service: c.params['service'], scope: c.params['scope'], error: c.params['error'] };
    }
  }
  return undefined;
}

/** True when one of the challenges is Basic. */
export function hasBasic(challenges: readonly AuthChallenge[]): boolean {
  return challenges.some((c) => c.scheme === 'basic');
}
