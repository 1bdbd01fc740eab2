import { describe, expect, it } from 'vitest';
import { Authenticator, bearerChallenge, type AuthResult } from './auth.ts';

const auth = new Authenticator({
  token: 'the-token-0123456789',
  boardUser: 'ops',
  boardPassword: 'pass:word-0123456789',
});
const basic = (userPass: string): string => `Basic ${Buffer.from(userPass).toString('base64')}`;
const OK: AuthResult = { ok: true };

describe('Authenticator.api', () => {
  it.each<[string | undefined, AuthResult]>([
    ['Bearer the-token-0123456789', OK],
    ['bearer the-token-0123456789', OK],
    ['Bearer  the-token-0123456789 ', OK],
    [
      undefined,
      {
        ok: false,
        reason: 'missing',
        message: 'authentication required: send "Authorization: Bearer <token>"',
      },
    ],
    [
      '',
      {
        ok: false,
        reason: 'missing',
        message: 'authentication required: send "Authorization: Bearer <token>"',
      },
    ],
    ['Bearer the-token-012345678', { ok: false, reason: 'invalid', message: 'invalid bearer token' }],
    ['Bearer', { ok: false, reason: 'invalid', message: 'invalid bearer token' }],
    [
      basic('ops:pass:word-0123456789'),
      {
        ok: false,
        reason: 'scheme',
        message: 'unsupported authorization scheme: send "Authorization: Bearer <token>"',
      },
    ],
  ])('%s', (header, result) => {
    expect(auth.api(header)).toEqual(result);
  });
});

describe('Authenticator.board', () => {
  it.each<[string | undefined, AuthResult]>([
    [basic('ops:pass:word-0123456789'), OK],
    ['Bearer the-token-0123456789', OK],
    [
      basic('ops:pass:word-012345678'),
      { ok: false, reason: 'invalid', message: 'invalid user name or password' },
    ],
    [
      basic('admin:pass:word-0123456789'),
      { ok: false, reason: 'invalid', message: 'invalid user name or password' },
    ],
    [basic('ops'), { ok: false, reason: 'invalid', message: 'invalid user name or password' }],
    ['Basic !!!', { ok: false, reason: 'invalid', message: 'invalid user name or password' }],
    [
      undefined,
      { ok: false, reason: 'missing', message: 'authentication required: HTTP Basic or a bearer token' },
    ],
    [
      'Digest x',
      {
        ok: false,
        reason: 'scheme',
        message: 'unsupported authorization scheme: use HTTP Basic or a bearer token',
      },
    ],
  ])('%s', (header, result) => {
    expect(auth.board(header)).toEqual(result);
  });
});

describe('bearerChallenge', () => {
  it.each<[Extract<AuthResult, { ok: false }>['reason'], string]>([
    ['missing', 'Bearer realm="stevedore"'],
    ['scheme', 'Bearer realm="stevedore"'],
    ['invalid', 'Bearer realm="stevedore", error="invalid_token"'],
  ])('%s', (reason, challenge) => {
    expect(bearerChallenge({ ok: false, reason, message: '' })).toBe(challenge);
  });
});
