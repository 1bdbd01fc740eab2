import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  grantAccess,
  parseBasicAuthorization,
  parseScope,
  REGISTRY_LEEWAY_SECONDS,
  signToken,
  tokenClaims,
  type ResourceActions,
} from './token-auth.ts';

describe('parseScope', () => {
  it.each([
    ['repository:library/alpine:pull', { type: 'repository', name: 'library/alpine', actions: ['pull'] }],
    ['repository:a/b:pull,push', { type: 'repository', name: 'a/b', actions: ['pull', 'push'] }],
    ['registry:catalog:*', { type: 'registry', name: 'catalog', actions: ['*'] }],
    ['repository:localhost:5000/x:pull', { type: 'repository', name: 'localhost:5000/x', actions: ['pull'] }],
    ['repository:x:', { type: 'repository', name: 'x', actions: [] }],
    ['repository:pull', undefined],
    [':x:pull', undefined],
    ['repository::pull', undefined],
    ['nothing', undefined],
  ] as const)('%s', (scope, expected) => {
    expect(parseScope(scope)).toEqual(expected);
  });
});

describe('grantAccess', () => {
  const r = (name: string, ...actions: string[]): ResourceActions => ({ type: 'repository', name, actions });
  it.each([
    ['authenticated gets what it asks', [r('a/b', 'pull', 'push')], true, [r('a/b', 'pull', 'push')]],
    ['authenticated, duplicates collapsed', [r('a/b', 'pull', 'pull')], true, [r('a/b', 'pull')]],
    ['anonymous pull on public/', [r('public/x', 'pull', 'push')], false, [r('public/x', 'pull')]],
    ['anonymous nothing elsewhere', [r('private/x', 'pull')], false, []],
    ['anonymous, "public" without slash is not public', [r('publicity', 'pull')], false, []],
    ['anonymous catalog denied', [{ type: 'registry', name: 'catalog', actions: ['*'] }], false, []],
    ['no scope', [], true, []],
  ] as const)('%s', (_name, requested, authenticated, expected) => {
    expect(grantAccess(requested, authenticated)).toEqual(expected);
  });
});

describe('parseBasicAuthorization', () => {
  it.each([
    [`Basic ${Buffer.from('alice:s3:cret').toString('base64')}`, { user: 'alice', password: 's3:cret' }],
    [`basic ${Buffer.from('bob:').toString('base64')}`, { user: 'bob', password: '' }],
    [`Basic ${Buffer.from('nocolon').toString('base64')}`, undefined],
    ['Bearer abc', undefined],
    [undefined, undefined],
  ] as const)('%s', (header, expected) => {
    expect(parseBasicAuthorization(header)).toEqual(expected);
  });
});

describe('tokenClaims', () => {
  it('sets exp so the registry, which adds 60 s of leeway, stops accepting after expires_in', () => {
    const claims = tokenClaims({
      issuer: 'iss',
      service: 'svc',
      subject: 'alice',
      access: [],
      issuedAt: 1_000_000,
      expiresIn: 300,
    });
    expect(REGISTRY_LEEWAY_SECONDS).toBe(60);
    expect({ ...claims, jti: undefined }).toEqual({
      iss: 'iss',
      sub: 'alice',
      aud: 'svc',
      exp: 1_000_240,
      nbf: 1_000_000,
      iat: 1_000_000,
      jti: undefined,
      access: [],
    });
    expect(claims.jti).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('signToken', () => {
  it('is a compact ES256 JWS with x5c, R||S signature verifiable with the key', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const fakeCertDer = Buffer.from('not really a certificate');
    const claims = tokenClaims({
      issuer: 'i',
      service: 's',
      subject: '',
      access: [],
      issuedAt: 5,
      expiresIn: 60,
    });
    const [header, payload, signature] = signToken(claims, privateKey, fakeCertDer).split('.');
    expect(JSON.parse(Buffer.from(header!, 'base64url').toString())).toEqual({
      typ: 'JWT',
      alg: 'ES256',
      x5c: [fakeCertDer.toString('base64')],
    });
    expect(JSON.parse(Buffer.from(payload!, 'base64url').toString())).toEqual(claims);
    const sig = Buffer.from(signature!, 'base64url');
    expect(sig.length).toBe(64);
    const ok = verify(
      'sha256',
      Buffer.from(`${header}.${payload}`),
      { key: createPublicKey(publicKey.export({ format: 'pem', type: 'spki' })), dsaEncoding: 'ieee-p1363' },
      sig,
    );
    expect(ok).toBe(true);
  });
});
