import { describe, expect, it } from 'vitest';
import { findBearer, hasBasic, parseWwwAuthenticate, type AuthChallenge } from './www-authenticate.ts';

describe('parseWwwAuthenticate', () => {
  const cases: { name: string; header: string | string[]; want: AuthChallenge[] }[] = [
    {
      name: 'distribution bearer challenge',
      header:
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
      want: [
        {
          scheme: 'bearer',
          params: {
            realm: 'https://auth.docker.io/token',
            service: 'registry.docker.io',
            scope: 'repository:library/alpine:pull',
          },
        },
      ],
    },
    {
      name: 'basic with realm',
      header: 'Basic realm="Registry Realm"',
      want: [{ scheme: 'basic', params: { realm: 'Registry Realm' } }],
    },
    { name: 'bare scheme', header: 'Basic', want: [{ scheme: 'basic', params: {} }] },
    {
      name: 'scheme and names are case-insensitive, values keep case',
      header: 'BEARER Realm="X", SERVICE=Svc',
      want: [{ scheme: 'bearer', params: { realm: 'X', service: 'Svc' } }],
    },
    {
      name: 'escapes in quoted strings',
      header: 'Bearer realm="a\\"b\\\\c", error="insufficient_scope"',
      want: [{ scheme: 'bearer', params: { realm: 'a"b\\c', error: 'insufficient_scope' } }],
    },
    {
      name: 'commas inside quoted scope',
      header: 'Bearer realm="r",scope="repository:a:pull,push repository:b:pull"',
      want: [{ scheme: 'bearer', params: { realm: 'r', scope: 'repository:a:pull,push repository:b:pull' } }],
    },
    {
      name: 'several challenges in one header',
      header: 'Basic realm="b", Bearer realm="r", service="s"',
      want: [
        { scheme: 'basic', params: { realm: 'b' } },
        { scheme: 'bearer', params: { realm: 'r', service: 's' } },
      ],
    },
    {
      name: 'bare scheme followed by another challenge',
      header: 'Negotiate, Basic realm="b"',
      want: [
        { scheme: 'negotiate', params: {} },
        { scheme: 'basic', params: { realm: 'b' } },
      ],
    },
    {
      name: 'token68 challenge then parameters challenge',
      header: 'Negotiate abc+/9==, Bearer realm="r"',
      want: [
        { scheme: 'negotiate', params: {}, token68: 'abc+/9==' },
        { scheme: 'bearer', params: { realm: 'r' } },
      ],
    },
    {
      name: 'several header lines',
      header: ['Basic realm="b"', 'Bearer realm="r"'],
      want: [
        { scheme: 'basic', params: { realm: 'b' } },
        { scheme: 'bearer', params: { realm: 'r' } },
      ],
    },
    {
      name: 'spaces around = and empty list elements',
      header: ' , Bearer realm = "r" ,, service = s ,',
      want: [{ scheme: 'bearer', params: { realm: 'r', service: 's' } }],
    },
    {
      name: 'empty quoted value',
      header: 'Bearer realm=""',
      want: [{ scheme: 'bearer', params: { realm: '' } }],
    },
    { name: 'empty header', header: '', want: [] },
  ];
  it.each(cases)('$name', ({ header, want }) => {
    expect(parseWwwAuthenticate(header)).toEqual(want);
  });

  const bad: { header: string; message: string }[] = [
    { header: 'Bearer realm="open', message: 'unterminated quoted string in WWW-Authenticate at offset 18' },
    {
      header: 'Bearer realm="r" service="s"',
      message: 'invalid WWW-Authenticate: expected "," between parameters at offset 17',
    },
    {
      header: 'Bearer realm="r", service=',
      message: 'invalid WWW-Authenticate: missing value of parameter "service" at offset 26',
    },
    { header: '"quoted"', message: 'invalid WWW-Authenticate: expected an auth scheme at offset 0' },
    {
      header: 'Negotiate abc== x',
      message: 'invalid WWW-Authenticate: expected "," after token68 at offset 16',
    },
  ];
  it.each(bad)('rejects $header', ({ header, message }) => {
    expect(() => parseWwwAuthenticate(header)).toThrow(message);
  });
});

describe('findBearer and hasBasic', () => {
  it.each([
    {
      header: 'Basic realm="b", Bearer realm="https://t/token", service="reg", scope="repository:x:pull"',
      bearer: { realm: 'https://t/token', service: 'reg', scope: 'repository:x:pull', error: undefined },
      basic: true,
    },
    { header: 'Bearer service="no-realm"', bearer: undefined, basic: false },
    { header: 'Basic realm="b"', bearer: undefined, basic: true },
  ])('$header', ({ header, bearer, basic }) => {
    const challenges = parseWwwAuthenticate(header);
    expect(findBearer(challenges)).toEqual(bearer);
    expect(hasBasic(challenges)).toBe(basic);
  });
});
