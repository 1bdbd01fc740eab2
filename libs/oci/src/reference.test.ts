import { describe, expect, it } from 'vitest';
import { InvalidDigestError, parseDigest } from './digest.ts';
import {
  familiarReference,
  formatReference,
  InvalidReferenceError,
  parseReference,
  referenceToKey,
  registryEndpoint,
  repositoryOf,
  withDigest,
  withTag,
} from './reference.ts';

const F64 = 'f'.repeat(64);
const SHA = `sha256:${F64}`;
const SHA512 = `sha512:${'f'.repeat(128)}`;
const REDIS = 'sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c';
const HEX64 = '1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a';

describe('parseReference', () => {
  // [input, registry, repository, tag, digest, canonical string, familiar string]
  it.each<[string, string, string, string | undefined, string | undefined, string, string]>([
    [
      'alpine',
      'docker.io',
      'library/alpine',
      'latest',
      undefined,
      'docker.io/library/alpine:latest',
      'alpine:latest',
    ],
    [
      'alpine:3.19',
      'docker.io',
      'library/alpine',
      '3.19',
      undefined,
      'docker.io/library/alpine:3.19',
      'alpine:3.19',
    ],
    [
      'test_com',
      'docker.io',
      'library/test_com',
      'latest',
      undefined,
      'docker.io/library/test_com:latest',
      'test_com:latest',
    ],
    [
      'test.com:tag',
      'docker.io',
      'library/test.com',
      'tag',
      undefined,
      'docker.io/library/test.com:tag',
      'test.com:tag',
    ],
    [
      'test.com:5000',
      'docker.io',
      'library/test.com',
      '5000',
      undefined,
      'docker.io/library/test.com:5000',
      'test.com:5000',
    ],
    ['test.com/repo:tag', 'test.com', 'repo', 'tag', undefined, 'test.com/repo:tag', 'test.com/repo:tag'],
    [
      'test:5000/repo',
      'test:5000',
      'repo',
      'latest',
      undefined,
      'test:5000/repo:latest',
      'test:5000/repo:latest',
    ],
    ['test:5000/repo:tag', 'test:5000', 'repo', 'tag', undefined, 'test:5000/repo:tag', 'test:5000/repo:tag'],
    [
      `test:5000/repo@${SHA}`,
      'test:5000',
      'repo',
      undefined,
      SHA,
      `test:5000/repo@${SHA}`,
      `test:5000/repo@${SHA}`,
    ],
    [
      `test:5000/repo:tag@${SHA}`,
      'test:5000',
      'repo',
      'tag',
      SHA,
      `test:5000/repo:tag@${SHA}`,
      `test:5000/repo:tag@${SHA}`,
    ],
    [
      'lowercase:Uppercase',
      'docker.io',
      'library/lowercase',
      'Uppercase',
      undefined,
      'docker.io/library/lowercase:Uppercase',
      'lowercase:Uppercase',
    ],
    [
      'sub-dom1.foo.com/bar/baz/quux:some-long-tag',
      'sub-dom1.foo.com',
      'bar/baz/quux',
      'some-long-tag',
      undefined,
      'sub-dom1.foo.com/bar/baz/quux:some-long-tag',
      'sub-dom1.foo.com/bar/baz/quux:some-long-tag',
    ],
    [
      'b.gcr.io/test.example.com/my-app:test.example.com',
      'b.gcr.io',
      'test.example.com/my-app',
      'test.example.com',
      undefined,
      'b.gcr.io/test.example.com/my-app:test.example.com',
      'b.gcr.io/test.example.com/my-app:test.example.com',
    ],
    [
      'xn--n3h.com/myimage:xn--n3h.com',
      'xn--n3h.com',
      'myimage',
      'xn--n3h.com',
      undefined,
      'xn--n3h.com/myimage:xn--n3h.com',
      'xn--n3h.com/myimage:xn--n3h.com',
    ],
    [
      `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512}`,
      'xn--7o8h.com',
      'myimage',
      'xn--7o8h.com',
      SHA512,
      `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512}`,
      `xn--7o8h.com/myimage:xn--7o8h.com@${SHA512}`,
    ],
    [
      'foo_bar.com:8080',
      'docker.io',
      'library/foo_bar.com',
      '8080',
      undefined,
      'docker.io/library/foo_bar.com:8080',
      'foo_bar.com:8080',
    ],
    [
      'foo/foo_bar.com:8080',
      'docker.io',
      'foo/foo_bar.com',
      '8080',
      undefined,
      'docker.io/foo/foo_bar.com:8080',
      'foo/foo_bar.com:8080',
    ],
    [
      '192.168.1.1',
      'docker.io',
      'library/192.168.1.1',
      'latest',
      undefined,
      'docker.io/library/192.168.1.1:latest',
      '192.168.1.1:latest',
    ],
    [
      '192.168.1.1/repo',
      '192.168.1.1',
      'repo',
      'latest',
      undefined,
      '192.168.1.1/repo:latest',
      '192.168.1.1/repo:latest',
    ],
    [
      '192.168.1.1:5000/repo:5050',
      '192.168.1.1:5000',
      'repo',
      '5050',
      undefined,
      '192.168.1.1:5000/repo:5050',
      '192.168.1.1:5000/repo:5050',
    ],
    [
      '[2001:db8::1]/repo',
      '[2001:db8::1]',
      'repo',
      'latest',
      undefined,
      '[2001:db8::1]/repo:latest',
      '[2001:db8::1]/repo:latest',
    ],
    [
      '[2001:db8:1:2:3:4:5:6]/repo:tag',
      '[2001:db8:1:2:3:4:5:6]',
      'repo',
      'tag',
      undefined,
      '[2001:db8:1:2:3:4:5:6]/repo:tag',
      '[2001:db8:1:2:3:4:5:6]/repo:tag',
    ],
    [
      `[2001:db8::1]:5000/repo:tag@${SHA}`,
      '[2001:db8::1]:5000',
      'repo',
      'tag',
      SHA,
      `[2001:db8::1]:5000/repo:tag@${SHA}`,
      `[2001:db8::1]:5000/repo:tag@${SHA}`,
    ],
    [
      '[2001:db8::]:5000/repo',
      '[2001:db8::]:5000',
      'repo',
      'latest',
      undefined,
      '[2001:db8::]:5000/repo:latest',
      '[2001:db8::]:5000/repo:latest',
    ],
    [
      '[::1]:5000/repo',
      '[::1]:5000',
      'repo',
      'latest',
      undefined,
      '[::1]:5000/repo:latest',
      '[::1]:5000/repo:latest',
    ],
    [
      'localhost/repo',
      'localhost',
      'repo',
      'latest',
      undefined,
      'localhost/repo:latest',
      'localhost/repo:latest',
    ],
    [
      'localhost:5000/a/b:c',
      'localhost:5000',
      'a/b',
      'c',
      undefined,
      'localhost:5000/a/b:c',
      'localhost:5000/a/b:c',
    ],
    [
      'docker.io/foo',
      'docker.io',
      'library/foo',
      'latest',
      undefined,
      'docker.io/library/foo:latest',
      'foo:latest',
    ],
    [
      'index.docker.io/library/debian',
      'docker.io',
      'library/debian',
      'latest',
      undefined,
      'docker.io/library/debian:latest',
      'debian:latest',
    ],
    [
      'index.docker.io/debian',
      'docker.io',
      'library/debian',
      'latest',
      undefined,
      'docker.io/library/debian:latest',
      'debian:latest',
    ],
    [
      'docker.io/library/foo/bar',
      'docker.io',
      'library/foo/bar',
      'latest',
      undefined,
      'docker.io/library/foo/bar:latest',
      'library/foo/bar:latest',
    ],
    [
      'dmcgowan/myapp',
      'docker.io',
      'dmcgowan/myapp',
      'latest',
      undefined,
      'docker.io/dmcgowan/myapp:latest',
      'dmcgowan/myapp:latest',
    ],
    [
      'other/library',
      'docker.io',
      'other/library',
      'latest',
      undefined,
      'docker.io/other/library:latest',
      'other/library:latest',
    ],
    [
      `redis@${REDIS}`,
      'docker.io',
      'library/redis',
      undefined,
      REDIS,
      `docker.io/library/redis@${REDIS}`,
      `redis@${REDIS}`,
    ],
    [
      `busybox:latest@${REDIS}`,
      'docker.io',
      'library/busybox',
      'latest',
      REDIS,
      `docker.io/library/busybox:latest@${REDIS}`,
      `busybox:latest@${REDIS}`,
    ],
    [
      '127.0.0.1:8000/private/moonbase',
      '127.0.0.1:8000',
      'private/moonbase',
      'latest',
      undefined,
      '127.0.0.1:8000/private/moonbase:latest',
      '127.0.0.1:8000/private/moonbase:latest',
    ],
    [
      `docker.io/${HEX64}`,
      'docker.io',
      `library/${HEX64}`,
      'latest',
      undefined,
      `docker.io/library/${HEX64}:latest`,
      `${HEX64}:latest`,
    ],
    [
      HEX64.slice(1),
      'docker.io',
      `library/${HEX64.slice(1)}`,
      'latest',
      undefined,
      `docker.io/library/${HEX64.slice(1)}:latest`,
      `${HEX64.slice(1)}:latest`,
    ],
    [
      'docker---rules/docker',
      'docker.io',
      'docker---rules/docker',
      'latest',
      undefined,
      'docker.io/docker---rules/docker:latest',
      'docker---rules/docker:latest',
    ],
    [
      'dock__er/d',
      'docker.io',
      'dock__er/d',
      'latest',
      undefined,
      'docker.io/dock__er/d:latest',
      'dock__er/d:latest',
    ],
    ['Example.COM/x:T', 'Example.COM', 'x', 'T', undefined, 'Example.COM/x:T', 'Example.COM/x:T'],
    [
      `a:1/${'b'.repeat(251)}`,
      'a:1',
      'b'.repeat(251),
      'latest',
      undefined,
      `a:1/${'b'.repeat(251)}:latest`,
      `a:1/${'b'.repeat(251)}:latest`,
    ],
    [
      `x/y:${'t'.repeat(128)}`,
      'docker.io',
      'x/y',
      't'.repeat(128),
      undefined,
      `docker.io/x/y:${'t'.repeat(128)}`,
      `x/y:${'t'.repeat(128)}`,
    ],
  ])('parses %s', (input, registry, repository, tag, digest, canonical, familiar) => {
    const ref = parseReference(input);
    expect({ ...ref }).toStrictEqual({
      registry,
      repository,
      ...(tag === undefined ? {} : { tag }),
      ...(digest === undefined ? {} : { digest }),
    });
    expect(Object.isFrozen(ref)).toBe(true);
    expect(formatReference(ref)).toBe(canonical);
    expect(familiarReference(ref)).toBe(familiar);
    // The canonical form parses back to the same reference.
    expect(parseReference(canonical)).toStrictEqual(ref);
  });

  it.each<[string, string]>([
    ['', 'reference is empty'],
    [':justtag', 'missing repository name'],
    [`@${SHA}`, 'missing repository name'],
    ['docker/', 'repository has an empty path component'],
    ['docker///docker', 'repository has an empty path component'],
    [
      'repo@sha256:ffffffffffffffffffffffffffffffffff',
      'invalid digest "sha256:ffffffffffffffffffffffffffffffffff": sha256 needs 64 hex characters, got 34',
    ],
    [
      `validname@invaliddigest:${F64}`,
      `invalid digest "invaliddigest:${F64}": unsupported algorithm "invaliddigest"`,
    ],
    ['alpine@', 'invalid digest "": missing "algorithm:" prefix'],
    ['Uppercase:tag', 'repository must be lowercase'],
    ['Foo/bar', 'repository must be lowercase'],
    ['docker/Docker', 'repository must be lowercase'],
    ['test:5000/Uppercase/lowercase:tag', 'repository must be lowercase'],
    ['docker.io/docker/Docker', 'repository must be lowercase'],
    [`${'a/'.repeat(128)}a:tag`, `name "docker.io/${'a/'.repeat(128)}a" is longer than 255 characters`],
    [`a:1/${'b'.repeat(252)}`, `name "a:1/${'b'.repeat(252)}" is longer than 255 characters`],
    [
      'aa/asdf$$^/aa',
      'invalid path component "asdf$$^": must match [a-z0-9]+ joined by ".", "_", "__" or "-"',
    ],
    ['-docker', 'invalid path component "-docker": must match [a-z0-9]+ joined by ".", "_", "__" or "-"'],
    [
      '-docker/docker',
      'invalid path component "-docker": must match [a-z0-9]+ joined by ".", "_", "__" or "-"',
    ],
    [
      'docker-/docker',
      'invalid path component "docker-": must match [a-z0-9]+ joined by ".", "_", "__" or "-"',
    ],
    ['____/____', 'invalid path component "____": must match [a-z0-9]+ joined by ".", "_", "__" or "-"'],
    [
      'x/dock..er/docker',
      'invalid path component "dock..er": must match [a-z0-9]+ joined by ".", "_", "__" or "-"',
    ],
    [
      'x/dock_.er/docker',
      'invalid path component "dock_.er": must match [a-z0-9]+ joined by ".", "_", "__" or "-"',
    ],
    [
      'dock___er/docker',
      'invalid path component "dock___er": must match [a-z0-9]+ joined by ".", "_", "__" or "-"',
    ],
    ['-docker.io/docker/docker', 'invalid registry "-docker.io"'],
    ['https://github.com/docker/docker', 'invalid registry "https:"'],
    ['fc00::1:5000/debian', 'invalid registry "fc00::1:5000"'],
    ['[fe80::1%eth0]:5000/repo', 'invalid registry "[fe80::1%eth0]:5000"'],
    ['[2001:db8:3:4::192.0.2.33]:5000/debian', 'invalid registry "[2001:db8:3:4::192.0.2.33]:5000"'],
    ['localhost:port/repo', 'invalid registry "localhost:port"'],
    ['a.b_c/x', 'invalid registry "a.b_c"'],
    ['dock..er/docker', 'invalid registry "dock..er"'],
    ['[2001:db8::1]', 'missing repository name after the registry'],
    ['[2001:db8::1]:5000', 'missing repository name after the registry'],
    ['[fc00::1]:tag', 'missing repository name after the registry'],
    ['alpine:', 'invalid tag "": must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}'],
    ['alpine:-x', 'invalid tag "-x": must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}'],
    ['alpine:a:b', 'invalid path component "alpine:a": must match [a-z0-9]+ joined by ".", "_", "__" or "-"'],
    [
      `x/y:${'t'.repeat(129)}`,
      `invalid tag "${'t'.repeat(129)}": must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`,
    ],
    [HEX64, 'repository cannot be a 64-character hexadecimal image ID'],
    [`${HEX64}:tag`, 'repository cannot be a 64-character hexadecimal image ID'],
  ])('rejects %j: %s', (input, what) => {
    expect(() => parseReference(input)).toThrowError(
      new InvalidReferenceError(`invalid reference "${input}": ${what}`),
    );
  });

  it('keeps the digest error as cause', () => {
    const err: unknown = (() => {
      try {
        parseReference('repo@md5:abc');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InvalidReferenceError);
    expect((err as Error).cause).toStrictEqual(
      new InvalidDigestError('invalid digest "md5:abc": unsupported algorithm "md5"'),
    );
  });

  it('rejects a pathological component quickly (no catastrophic backtracking)', () => {
    // With distribution's `[-]*` separator a backtracking engine takes ~2^50 steps on this input.
    const input = `x/${'a'.repeat(50)}!`;
    const started = performance.now();
    expect(() => parseReference(input)).toThrowError(
      new InvalidReferenceError(
        `invalid reference "${input}": invalid path component "${'a'.repeat(50)}!": must match [a-z0-9]+ joined by ".", "_", "__" or "-"`,
      ),
    );
    expect(performance.now() - started).toBeLessThan(1000);
  });
});

describe('registryEndpoint', () => {
  it.each([
    ['docker.io', 'registry-1.docker.io'],
    ['index.docker.io', 'registry-1.docker.io'],
    ['ghcr.io', 'ghcr.io'],
    ['localhost:5000', 'localhost:5000'],
    ['[::1]:5000', '[::1]:5000'],
  ])('%s → %s', (registry, endpoint) => {
    expect(registryEndpoint(registry)).toBe(endpoint);
  });
});

describe('withTag, withDigest, repositoryOf, referenceToKey', () => {
  const digest = parseDigest(REDIS);
  it.each<[string, string, string, string, string]>([
    // [input, withTag('v2'), withDigest(REDIS), repositoryOf, referenceToKey]
    [
      'alpine:3.19',
      'docker.io/library/alpine:v2',
      `docker.io/library/alpine:3.19@${REDIS}`,
      'docker.io/library/alpine',
      'docker.io/library/alpine:3.19',
    ],
    [
      'alpine',
      'docker.io/library/alpine:v2',
      `docker.io/library/alpine:latest@${REDIS}`,
      'docker.io/library/alpine',
      'docker.io/library/alpine:latest',
    ],
    [
      `localhost:5000/a/b@${SHA}`,
      `localhost:5000/a/b:v2@${SHA}`,
      `localhost:5000/a/b@${REDIS}`,
      'localhost:5000/a/b',
      `localhost:5000/a/b@${SHA}`,
    ],
    [
      `[::1]:5000/r:t@${SHA}`,
      `[::1]:5000/r:v2@${SHA}`,
      `[::1]:5000/r:t@${REDIS}`,
      '[::1]:5000/r',
      `[::1]:5000/r@${SHA}`,
    ],
  ])('%s', (input, tagged, pinned, repository, key) => {
    const ref = parseReference(input);
    expect(formatReference(withTag(ref, 'v2'))).toBe(tagged);
    expect(formatReference(withDigest(ref, digest))).toBe(pinned);
    expect(formatReference(withDigest(ref, REDIS))).toBe(pinned);
    expect(repositoryOf(ref)).toBe(repository);
    expect(referenceToKey(ref)).toBe(key);
    expect(Object.isFrozen(withTag(ref, 'v2'))).toBe(true);
  });

  it.each([
    ['-bad', 'invalid tag "-bad": must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}'],
    ['', 'invalid tag "": must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}'],
    ['a/b', 'invalid tag "a/b": must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}'],
  ])('withTag rejects %j', (tag, what) => {
    expect(() => withTag(parseReference('alpine'), tag)).toThrowError(
      new InvalidReferenceError(`invalid reference "docker.io/library/alpine:latest": ${what}`),
    );
  });

  it('withDigest rejects a bad digest', () => {
    expect(() => withDigest(parseReference('alpine:3'), 'sha256:xyz')).toThrowError(
      new InvalidReferenceError(
        'invalid reference "docker.io/library/alpine:3": invalid digest "sha256:xyz": sha256 needs 64 hex characters, got 3',
      ),
    );
  });
});
