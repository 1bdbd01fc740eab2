import { parseReference, type Reference } from '@stevedore/oci/spec';
import { describe, expect, it } from 'vitest';
import { referenceKey, referenceName } from './layout.ts';

const HEX = 'a'.repeat(64);

describe('reference keys', () => {
  it.each([
    ['registry.test/app:1', 'refs/registry.test/app/_tags/1.json', 'registry.test/app:1'],
    ['alpine', 'refs/docker.io/library/alpine/_tags/latest.json', 'docker.io/library/alpine:latest'],
    [
      `localhost:5000/team/app@sha256:${HEX}`,
      `refs/localhost:5000/team/app/_digests/sha256/${HEX}.json`,
      `localhost:5000/team/app@sha256:${HEX}`,
    ],
    [
      `[::1]:5000/a/b/c@sha256:${HEX}`,
      `refs/[::1]:5000/a/b/c/_digests/sha256/${HEX}.json`,
      `[::1]:5000/a/b/c@sha256:${HEX}`,
    ],
    // Tag and digest: the tag's reference (the digest pins what it may point at).
    [`registry.test/app:1@sha256:${HEX}`, 'refs/registry.test/app/_tags/1.json', 'registry.test/app:1'],
  ])('%s → %s (%s)', (input, key, name) => {
    const ref = parseReference(input);
    expect(referenceKey(ref)).toBe(key);
    expect(referenceName(ref)).toBe(name);
  });

  it('refuses a reference with neither tag nor digest', () => {
    // parseReference never makes one (no tag means `latest`); a hand-made value can be one.
    const bare = Object.freeze({ registry: 'registry.test', repository: 'app' }) as unknown as Reference;
    expect(() => referenceKey(bare)).toThrow('reference registry.test/app has neither tag nor digest');
    expect(() => referenceName(bare)).toThrow('reference registry.test/app has neither tag nor digest');
  });

  it.each(['registry.test/app/_tags:1', 'registry.test/app/_digests:1', 'registry.test/_digests/sha256:1'])(
    'no repository can reach into the reference directories: %s is refused',
    (input) => {
      expect(() => parseReference(input)).toThrow('invalid path component');
    },
  );
});
