import { describe, expect, it } from 'vitest';
import { parseDigest } from './digest.ts';
import type { Descriptor, ImageIndex, Platform } from './manifest.ts';
import { OCI_MANIFEST } from './media-types.ts';
import {
  formatPlatform,
  hostPlatform,
  InvalidPlatformError,
  NoMatchingPlatformError,
  normalizePlatform,
  parsePlatform,
  platformForNodeArch,
  platformMatches,
  selectManifests,
} from './platform.ts';

describe('parsePlatform and formatPlatform', () => {
  // [input, parsed, formatted]
  it.each<[string, Platform, string]>([
    ['linux/amd64', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['linux/x86_64', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['linux/x86-64', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['linux/amd64/v1', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['linux/amd64/v3', { os: 'linux', architecture: 'amd64', variant: 'v3' }, 'linux/amd64/v3'],
    ['linux/arm64', { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64/v8'],
    ['linux/arm64/v8', { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64/v8'],
    ['linux/arm64/8', { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64/v8'],
    ['linux/arm64/v8.0', { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64/v8'],
    ['linux/aarch64', { os: 'linux', architecture: 'arm64', variant: 'v8' }, 'linux/arm64/v8'],
    ['linux/arm64/9.0', { os: 'linux', architecture: 'arm64', variant: 'v9' }, 'linux/arm64/v9'],
    ['linux/arm', { os: 'linux', architecture: 'arm', variant: 'v7' }, 'linux/arm/v7'],
    ['linux/arm/7', { os: 'linux', architecture: 'arm', variant: 'v7' }, 'linux/arm/v7'],
    ['linux/arm/6', { os: 'linux', architecture: 'arm', variant: 'v6' }, 'linux/arm/v6'],
    ['linux/arm/v5', { os: 'linux', architecture: 'arm', variant: 'v5' }, 'linux/arm/v5'],
    ['linux/armhf', { os: 'linux', architecture: 'arm', variant: 'v7' }, 'linux/arm/v7'],
    ['linux/armel', { os: 'linux', architecture: 'arm', variant: 'v6' }, 'linux/arm/v6'],
    ['linux/i386', { os: 'linux', architecture: '386' }, 'linux/386'],
    ['linux/386', { os: 'linux', architecture: '386' }, 'linux/386'],
    ['LINUX/AMD64', { os: 'linux', architecture: 'amd64' }, 'linux/amd64'],
    ['macos/arm64', { os: 'darwin', architecture: 'arm64', variant: 'v8' }, 'darwin/arm64/v8'],
    ['windows/amd64', { os: 'windows', architecture: 'amd64' }, 'windows/amd64'],
    ['linux/ppc64le', { os: 'linux', architecture: 'ppc64le' }, 'linux/ppc64le'],
    ['linux/s390x', { os: 'linux', architecture: 's390x' }, 'linux/s390x'],
    ['linux/riscv64', { os: 'linux', architecture: 'riscv64' }, 'linux/riscv64'],
  ])('%s', (input, parsed, formatted) => {
    expect(parsePlatform(input)).toStrictEqual(parsed);
    expect(formatPlatform(parsePlatform(input))).toBe(formatted);
  });

  it.each([
    ['', 'expected os/architecture[/variant]'],
    ['linux', 'expected os/architecture[/variant]'],
    ['linux/arm/v7/extra', 'expected os/architecture[/variant]'],
    ['linux/', 'empty component'],
    ['/amd64', 'empty component'],
    ['linux/arm64/', 'empty component'],
    ['linux/amd 64', 'invalid component "amd 64"'],
    ['linux/amd64@x', 'invalid component "amd64@x"'],
    ['Linux/AMD 64', 'invalid component "AMD 64"'],
  ])('rejects %j: %s', (input, what) => {
    expect(() => parsePlatform(input)).toThrowError(
      new InvalidPlatformError(`invalid platform "${input}": ${what}`),
    );
  });

  it('normalizePlatform keeps os.version and features', () => {
    expect(
      normalizePlatform({
        os: 'Windows',
        architecture: 'x86_64',
        'os.version': '10.0.17763.1234',
        features: ['sse4'],
      }),
    ).toStrictEqual({
      os: 'windows',
      architecture: 'amd64',
      'os.version': '10.0.17763.1234',
      features: ['sse4'],
    });
  });
});

describe('platformForNodeArch and hostPlatform', () => {
  it.each<[string, string | undefined, Platform]>([
    ['x64', undefined, { os: 'linux', architecture: 'amd64' }],
    ['arm64', undefined, { os: 'linux', architecture: 'arm64', variant: 'v8' }],
    ['arm', '7', { os: 'linux', architecture: 'arm', variant: 'v7' }],
    ['arm', '6', { os: 'linux', architecture: 'arm', variant: 'v6' }],
    ['arm', undefined, { os: 'linux', architecture: 'arm', variant: 'v7' }],
    ['ia32', undefined, { os: 'linux', architecture: '386' }],
    ['ppc64', undefined, { os: 'linux', architecture: 'ppc64le' }],
    ['s390x', undefined, { os: 'linux', architecture: 's390x' }],
    ['riscv64', undefined, { os: 'linux', architecture: 'riscv64' }],
    ['loong64', undefined, { os: 'linux', architecture: 'loong64' }],
  ])('%s (arm_version %s)', (arch, armVersion, expected) => {
    expect(platformForNodeArch(arch, armVersion)).toStrictEqual(expected);
  });

  it('hostPlatform is linux on this machine’s architecture', () => {
    const byArch: Record<string, Platform> = {
      x64: { os: 'linux', architecture: 'amd64' },
      arm64: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    };
    expect(hostPlatform()).toStrictEqual(byArch[process.arch]);
  });
});

describe('platformMatches', () => {
  it.each<[string, Platform, Platform, boolean]>([
    ['same', { os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'amd64' }, true],
    [
      'any amd64 variant',
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'amd64', variant: 'v3' },
      true,
    ],
    [
      'wanted variant',
      { os: 'linux', architecture: 'amd64', variant: 'v3' },
      { os: 'linux', architecture: 'amd64' },
      false,
    ],
    [
      'arm64 default v8',
      { os: 'linux', architecture: 'arm64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
      true,
    ],
    [
      'aarch64 vs arm64',
      { os: 'linux', architecture: 'aarch64' },
      { os: 'linux', architecture: 'arm64' },
      true,
    ],
    [
      'arm64 v8 vs v9',
      { os: 'linux', architecture: 'arm64' },
      { os: 'linux', architecture: 'arm64', variant: 'v9' },
      false,
    ],
    [
      'arm default v7',
      { os: 'linux', architecture: 'arm' },
      { os: 'linux', architecture: 'arm', variant: 'v6' },
      false,
    ],
    [
      'armhf',
      { os: 'linux', architecture: 'armhf' },
      { os: 'linux', architecture: 'arm', variant: '7' },
      true,
    ],
    ['os differs', { os: 'windows', architecture: 'amd64' }, { os: 'linux', architecture: 'amd64' }, false],
    ['arch differs', { os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }, false],
  ])('%s', (_what, want, have, expected) => {
    expect(platformMatches(want, have)).toBe(expected);
  });
});

describe('selectManifests', () => {
  const entry = (n: number, platform?: Platform, annotations?: Record<string, string>): Descriptor => {
    const d: Descriptor = {
      mediaType: OCI_MANIFEST,
      digest: parseDigest(`sha256:${String(n).repeat(64)}`),
      size: n,
    };
    if (platform !== undefined) d.platform = platform;
    if (annotations !== undefined) d.annotations = annotations;
    return d;
  };
  const amd64 = entry(1, { os: 'linux', architecture: 'amd64' });
  const amd64v3 = entry(2, { os: 'linux', architecture: 'amd64', variant: 'v3' });
  const arm64 = entry(3, { os: 'linux', architecture: 'arm64', variant: 'v8' });
  const armv7 = entry(4, { os: 'linux', architecture: 'arm', variant: 'v7' });
  const attestation = entry(
    5,
    { os: 'unknown', architecture: 'unknown' },
    {
      'vnd.docker.reference.type': 'attestation-manifest',
    },
  );
  const index = (...manifests: Descriptor[]): ImageIndex => ({ schemaVersion: 2, manifests });
  const full = index(amd64, amd64v3, arm64, armv7, attestation);

  it.each<[string, ImageIndex, Platform | 'all', Descriptor[]]>([
    ['amd64 takes every amd64 variant', full, { os: 'linux', architecture: 'amd64' }, [amd64, amd64v3]],
    ['amd64/v3 only', full, parsePlatform('linux/amd64/v3'), [amd64v3]],
    ['arm64 without variant', full, { os: 'linux', architecture: 'arm64' }, [arm64]],
    ['aarch64', full, { os: 'linux', architecture: 'aarch64' }, [arm64]],
    ['armhf', full, parsePlatform('linux/armhf'), [armv7]],
    ['all skips attestations', full, 'all', [amd64, amd64v3, arm64, armv7]],
    ['all keeps entries without platform', index(entry(6), amd64), 'all', [entry(6), amd64]],
  ])('%s', (_what, idx, want, expected) => {
    expect(selectManifests(idx, want)).toStrictEqual(expected);
  });

  it.each<[string, ImageIndex, Platform | 'all', string]>([
    [
      'no such platform',
      full,
      parsePlatform('linux/riscv64'),
      'no manifest for platform linux/riscv64 in index; available: linux/amd64, linux/amd64/v3, linux/arm64/v8, linux/arm/v7',
    ],
    [
      'unknown/unknown is not selectable',
      full,
      { os: 'unknown', architecture: 'unknown' },
      'no manifest for platform unknown/unknown in index; available: linux/amd64, linux/amd64/v3, linux/arm64/v8, linux/arm/v7',
    ],
    [
      'entries without platform never match one',
      index(entry(6)),
      parsePlatform('linux/amd64'),
      'no manifest for platform linux/amd64 in index; available: (no platform)',
    ],
    [
      'only attestations',
      index(attestation),
      'all',
      'no manifest for any platform in index; available: (none)',
    ],
    ['empty index', index(), 'all', 'no manifest for any platform in index; available: (none)'],
  ])('throws when %s', (_what, idx, want, message) => {
    expect(() => selectManifests(idx, want)).toThrowError(new NoMatchingPlatformError(message));
  });
});
