import { describe, expect, it } from 'vitest';
import {
  DigestMismatchError,
  ManifestTooLargeError,
  RegistryError,
  SizeMismatchError,
  UnsupportedManifestTypeError,
  isTemporary,
  parseErrorBody,
} from './errors.ts';

const enc = (s: string) => new TextEncoder().encode(s);

describe('RegistryError.temporary defaults', () => {
  it.each([
    { status: 404, codes: ['MANIFEST_UNKNOWN'], want: false },
    { status: 401, codes: ['UNAUTHORIZED'], want: false },
    { status: 400, codes: [], want: false },
    { status: 408, codes: [], want: true },
    { status: 429, codes: ['TOOMANYREQUESTS'], want: true },
    { status: 403, codes: ['TOOMANYREQUESTS'], want: true },
    { status: 500, codes: [], want: true },
    { status: 503, codes: [], want: true },
    { status: undefined, codes: [], want: false },
  ])('status $status codes $codes → $want', ({ status, codes, want }) => {
    const err = new RegistryError('x', { status, codes, reference: 'r', operation: 'op' });
    expect(err.temporary).toBe(want);
    expect(isTemporary(err)).toBe(want);
  });
});

describe('isTemporary', () => {
  const withCode = (code: string) => Object.assign(new Error('net'), { code });
  const abort = new Error('aborted');
  abort.name = 'AbortError';
  it.each([
    { name: 'connection reset', err: withCode('ECONNRESET'), want: true },
    { name: 'undici socket error', err: withCode('UND_ERR_SOCKET'), want: true },
    { name: 'undici body timeout', err: withCode('UND_ERR_BODY_TIMEOUT'), want: true },
    { name: 'wrapped reset', err: new Error('outer', { cause: withCode('ECONNRESET') }), want: true },
    { name: 'unknown host', err: withCode('ENOTFOUND'), want: false },
    { name: 'abort', err: abort, want: false },
    { name: 'plain error', err: new Error('x'), want: false },
    { name: 'not an error', err: 'ECONNRESET', want: false },
    {
      name: 'digest mismatch',
      err: new DigestMismatchError({ reference: 'r', operation: 'op', expected: 'a', actual: 'b' }),
      want: false,
    },
    {
      name: 'truncated body',
      err: new SizeMismatchError({
        reference: 'r',
        operation: 'op',
        expected: 2,
        actual: 1,
        detail: 'd',
        temporary: true,
      }),
      want: true,
    },
  ])('$name → $want', ({ err, want }) => {
    expect(isTemporary(err)).toBe(want);
  });
});

describe('error messages', () => {
  it.each([
    {
      err: new DigestMismatchError({
        reference: 'reg/repo@sha256:aa',
        operation: 'fetch blob',
        expected: 'sha256:aa',
        actual: 'sha256:bb',
      }),
      message: 'fetch blob reg/repo@sha256:aa: digest mismatch, expected sha256:aa, got sha256:bb',
      name: 'DigestMismatchError',
    },
    {
      err: new ManifestTooLargeError({ reference: 'reg/repo:tag', limit: 4, size: 5 }),
      message: 'get manifest reg/repo:tag: manifest too large, 5 bytes exceeds the limit of 4',
      name: 'ManifestTooLargeError',
    },
    {
      err: new ManifestTooLargeError({ reference: 'reg/repo:tag', limit: 4, size: undefined }),
      message: 'get manifest reg/repo:tag: manifest too large, more bytes exceeds the limit of 4',
      name: 'ManifestTooLargeError',
    },
    {
      err: new UnsupportedManifestTypeError({
        reference: 'r:t',
        operation: 'get manifest',
        mediaType: 'text/html',
      }),
      message: 'get manifest r:t: unsupported media type "text/html"',
      name: 'UnsupportedManifestTypeError',
    },
  ])('$name', ({ err, message, name }) => {
    expect(err).toBeInstanceOf(RegistryError);
    expect(err.message).toBe(message);
    expect(err.name).toBe(name);
    expect(err.temporary).toBe(false);
  });
});

describe('parseErrorBody', () => {
  it.each([
    {
      body: '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}',
      want: { codes: ['MANIFEST_UNKNOWN'], message: 'manifest unknown' },
    },
    {
      body: '{"errors":[{"code":"DENIED","message":"a"},{"code":"UNAUTHORIZED","message":"b"}]}',
      want: { codes: ['DENIED', 'UNAUTHORIZED'], message: 'a; b' },
    },
    { body: '{"errors":[{"code":"X"}]}', want: { codes: ['X'], message: undefined } },
    { body: '<html>bad gateway</html>', want: { codes: [], message: undefined } },
    { body: '{"errors":"nope"}', want: { codes: [], message: undefined } },
    { body: 'null', want: { codes: [], message: undefined } },
    { body: '', want: { codes: [], message: undefined } },
  ])('$body', ({ body, want }) => {
    expect(parseErrorBody(enc(body))).toEqual(want);
  });
  it('caps a long message at 200 characters', () => {
    const long = 'm'.repeat(500);
    expect(parseErrorBody(enc(JSON.stringify({ errors: [{ code: 'X', message: long }] }))).message).toBe(
      'm'.repeat(200),
    );
  });
});
