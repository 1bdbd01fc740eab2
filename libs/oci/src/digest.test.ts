import { describe, expect, it } from 'vitest';
import { digestHex, digestOf, Digester, InvalidDigestError, parseDigest } from './digest.ts';

const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('parseDigest', () => {
  it.each([
    [EMPTY_SHA256],
    [
      'sha512:' +
        'cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e',
    ],
  ])('accepts %s', (input) => {
    expect(parseDigest(input)).toBe(input);
  });

  it.each([
    ['e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 'missing "algorithm:" prefix'],
    ['md5:d41d8cd98f00b204e9800998ecf8427e', 'unsupported algorithm "md5"'],
    ['sha256:abc', 'sha256 needs 64 hex characters, got 3'],
    ['sha256:' + 'E'.repeat(64), 'encoded part must be lowercase hex'],
    ['sha512:' + 'a'.repeat(64), 'sha512 needs 128 hex characters, got 64'],
    ['', 'missing "algorithm:" prefix'],
  ])('rejects %j with %s', (input, message) => {
    expect(() => parseDigest(input)).toThrowError(
      new InvalidDigestError(`invalid digest "${input}": ${message}`),
    );
  });
});

describe('Digester', () => {
  it('hashes incrementally and counts bytes', () => {
    const d = new Digester();
    d.update(Buffer.from('hello '));
    d.update(Buffer.from('world'));
    expect(d.size).toBe(11);
    expect(d.digest()).toBe('sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9');
    expect(d.digest()).toBe(d.digest());
    expect(() => d.update(Buffer.from('x'))).toThrow('Digester.update after digest()');
  });

  it('digests empty input', () => {
    expect(digestOf('')).toBe(EMPTY_SHA256);
    expect(digestHex(parseDigest(EMPTY_SHA256))).toBe(EMPTY_SHA256.slice(7));
  });
});
