import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Authenticator, parseTokenResponse, tokenRenewAt } from './auth.ts';
import {
  basicCredential,
  identityTokenCredential,
  registryTokenCredential,
  StaticCredentials,
  type Credential,
} from './credentials.ts';
import { RegistryError } from './errors.ts';
import { makeHttpContext } from './http.ts';

describe('parseTokenResponse', () => {
  it.each([
    { body: { token: 't', expires_in: 300 }, want: { token: 't', expiresIn: 300 } },
    { body: { access_token: 'a' }, want: { token: 'a', expiresIn: 60 } },
    { body: { token: '', access_token: 'a', expires_in: 0 }, want: { token: 'a', expiresIn: 60 } },
    { body: { token: 't', expires_in: '300' }, want: { token: 't', expiresIn: 60 } },
    { body: { expires_in: 300 }, want: undefined },
    { body: null, want: undefined },
    { body: 'token', want: undefined },
  ])('$body', ({ body, want }) => {
    expect(parseTokenResponse(body)).toEqual(want);
  });
});

describe('tokenRenewAt', () => {
  it.each([
    { expiresIn: 300, want: 1_000_000 + 300_000 - 10_000 },
    { expiresIn: 60, want: 1_000_000 + 60_000 - 10_000 },
    // Short-lived tokens are renewed a quarter of their lifetime early, not 10 s.
    { expiresIn: 8, want: 1_000_000 + 8_000 - 2_000 },
  ])('$expiresIn s', ({ expiresIn, want }) => {
    expect(tokenRenewAt(1_000_000, expiresIn)).toBe(want);
  });
});

interface Seen {
  method: string;
  query: Record<string, string[]>;
  authorization: string | undefined;
  body: string;
}

describe('Authenticator against a token endpoint', () => {
  let server: Server;
  let realm: string;
  let seen: Seen[];
  let status = 200;
  let issued = 0;

  beforeAll(async () => {
    server = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://x');
        const query: Record<string, string[]> = {};
        for (const key of new Set(url.searchParams.keys())) query[key] = url.searchParams.getAll(key);
        seen.push({ method: req.method ?? '', query, authorization: req.headers.authorization, body });
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(
          status === 200
            ? JSON.stringify({ token: `t${++issued}`, expires_in: 100 })
            : '{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}',
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    realm = `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    seen = [];
    status = 200;
    issued = 0;
  });

  const scope = 'repository:a/b:pull';
  const challenge = () => [`Bearer realm="${realm}",service="reg",scope="${scope}"`];

  function authenticator(credential?: Credential, clock?: { now: number }, insecure = true): Authenticator {
    return new Authenticator({
      http: makeHttpContext({ retry: { attempts: 1 } }),
      credentials:
        credential === undefined ? undefined : new StaticCredentials({ 'reg.example': credential }),
      isInsecure: () => insecure,
      ...(clock === undefined ? {} : { now: () => clock.now }),
    });
  }

  it('fetches an anonymous token, caches it per scope until shortly before expiry', async () => {
    const clock = { now: 0 };
    const auth = authenticator(undefined, clock);
    expect(await auth.header('reg.example', [scope])).toBeUndefined();
    expect(await auth.challenge('reg.example', [scope], challenge())).toBe('Bearer t1');
    expect(seen).toEqual([
      { method: 'GET', query: { service: ['reg'], scope: [scope] }, authorization: undefined, body: '' },
    ]);
    expect(await auth.header('reg.example', [scope])).toBe('Bearer t1');
    clock.now = 90_000 - 1;
    expect(await auth.header('reg.example', [scope])).toBe('Bearer t1');
    clock.now = 90_000;
    expect(await auth.header('reg.example', [scope])).toBe('Bearer t2');
    // Another scope on the known realm: fetched up front, without waiting for a 401.
    expect(await auth.header('reg.example', ['repository:c:pull'])).toBe('Bearer t3');
    expect(auth.tokenRequests).toBe(3);
  });

  it('a refused token is replaced once the registry challenges again', async () => {
    const auth = authenticator();
    expect(await auth.challenge('reg.example', [scope], challenge())).toBe('Bearer t1');
    expect(await auth.challenge('reg.example', [scope], challenge())).toBe('Bearer t2');
    expect(await auth.header('reg.example', [scope])).toBe('Bearer t2');
  });

  it('shares one token request between concurrent callers', async () => {
    const auth = authenticator();
    await auth.challenge('reg.example', [scope], challenge());
    const other = 'repository:x:pull';
    const headers = await Promise.all([1, 2, 3].map(() => auth.header('reg.example', [other])));
    expect(headers).toEqual(['Bearer t2', 'Bearer t2', 'Bearer t2']);
    expect(auth.tokenRequests).toBe(2);
  });

  it('adds the scope the challenge names to the request', async () => {
    const auth = authenticator(basicCredential('alice', 's3cret'));
    const push = 'repository:a/b:pull,push';
    expect(await auth.challenge('reg.example', [push], challenge())).toBe('Bearer t1');
    expect(seen).toEqual([
      {
        method: 'GET',
        query: { service: ['reg'], scope: [push, scope], account: ['alice'] },
        authorization: `Basic ${Buffer.from('alice:s3cret').toString('base64')}`,
        body: '',
      },
    ]);
  });

  it('exchanges an identity token with an OAuth2 refresh-token POST', async () => {
    const auth = authenticator(identityTokenCredential('refresh-me'));
    expect(await auth.challenge('reg.example', [scope], challenge())).toBe('Bearer t1');
    expect(
      seen.map((s) => [s.method, Object.fromEntries(new URLSearchParams(s.body)), s.authorization]),
    ).toEqual([
      [
        'POST',
        {
          grant_type: 'refresh_token',
          refresh_token: 'refresh-me',
          client_id: 'stevedore',
          scope,
          service: 'reg',
        },
        undefined,
      ],
    ]);
  });

  it('uses a registry token as is', async () => {
    const auth = authenticator(registryTokenCredential('given'));
    expect(await auth.challenge('reg.example', [scope], challenge())).toBe('Bearer given');
    expect(seen).toEqual([]);
  });

  it('answers Basic challenges with the credentials, or nothing without them', async () => {
    expect(
      await authenticator(basicCredential('u', 'p')).challenge('reg.example', [scope], ['Basic realm="r"']),
    ).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(await authenticator().challenge('reg.example', [scope], ['Basic realm="r"'])).toBeUndefined();
  });

  it.each([
    {
      name: 'credentials over plain http to a host not listed insecure',
      credential: basicCredential('u', 'hunter2'),
      insecure: false,
      headers: undefined,
      status: 200,
      message: (r: string) =>
        `get token for reg.example (scope ${scope}): refusing to send credentials to ${r} over plain http`,
    },
    {
      name: 'a token server refusing the credentials',
      credential: basicCredential('u', 'hunter2'),
      insecure: true,
      headers: undefined,
      status: 401,
      message: () => `get token for reg.example (scope ${scope}): HTTP 401 UNAUTHORIZED: bad credentials`,
    },
    {
      name: 'an unparseable challenge',
      credential: undefined,
      insecure: true,
      headers: ['Bearer realm="open'],
      status: 200,
      message: () => 'authenticate to reg.example: unparseable WWW-Authenticate',
    },
    {
      name: 'an unsupported scheme',
      credential: undefined,
      insecure: true,
      headers: ['Negotiate abc=='],
      status: 200,
      message: () => 'authenticate to reg.example: no supported challenge (schemes: negotiate)',
    },
  ])(
    'fails on $name without leaking the secret',
    async ({ credential, insecure, headers, status: s, message }) => {
      status = s;
      const err = await authenticator(credential, undefined, insecure)
        .challenge('reg.example', [scope], headers ?? challenge())
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryError);
      expect((err as Error).message).toBe(message(realm));
      expect((err as RegistryError).temporary).toBe(false);
      expect(JSON.stringify(err)).not.toContain('hunter2');
    },
  );
});
