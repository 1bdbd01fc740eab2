/**
 * Platforms (`os/architecture[/variant]`) and picking the manifests of an index that match one.
 * Normalisation follows containerd's platforms package (database.go), except that arm64's default
 * variant is written `v8` instead of being dropped, so `linux/arm64` and `linux/arm64/v8` compare
 * equal either way.
 */
import type { Descriptor, ImageIndex, Platform } from './manifest.ts';

export class InvalidPlatformError extends Error {
  override readonly name = 'InvalidPlatformError';
}

/** No entry of an index matches the wanted platform; the message lists those available. */
export class NoMatchingPlatformError extends Error {
  override readonly name = 'NoMatchingPlatformError';
}

/** Buildx attestation manifests use this platform (`unknown/unknown`); they are not images to run. */
const UNKNOWN = 'unknown';
const PART = /^[A-Za-z0-9_.-]+$/;

/** Normalises os, architecture and variant (e.g. `aarch64` → `arm64/v8`, `armhf` → `arm/v7`). */
export function normalizePlatform(p: Platform): Platform {
  let os = p.os.toLowerCase();
  if (os === 'macos') os = 'darwin';
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() ?? '';
  switch (architecture) {
    case 'i386':
      architecture = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      architecture = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      architecture = 'arm64';
      if (variant === '' || variant === '8' || variant === 'v8.0') variant = 'v8';
      else if (variant === '9' || variant === '9.0' || variant === 'v9.0') variant = 'v9';
      break;
    case 'armhf':
      architecture = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      architecture = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
    default:
      break;
  }
  const out: Platform = { ...p, os, architecture };
  if (variant === '') delete out.variant;
  else out.variant = variant;
  return out;
}

/**
 * Parses `os/architecture[/variant]` (e.g. `linux/arm64/v8`, `linux/amd64`) and normalises it.
 * Throws {@link InvalidPlatformError} quoting the input.
 */
export function parsePlatform(input: string): Platform {
  const parts = input.split('/');
  if (parts.length < 2 || parts.length > 3) {
    throw new InvalidPlatformError(`invalid platform "${input}": expected os/architecture[/variant]`);
  }
  for (const part of parts) {
    if (!PART.test(part)) {
      throw new InvalidPlatformError(
        `invalid platform "${input}": ${part === '' ? 'empty component' : `invalid component "${part}"`}`,
      );
    }
  }
  const [os = '', architecture = '', variant] = parts;
  return normalizePlatform(variant === undefined ? { os, architecture } : { os, architecture, variant });
}

/** `os/architecture[/variant]` of the normalised platform. */
export function formatPlatform(p: Platform): string {
  const n = normalizePlatform(p);
  return n.variant === undefined ? `${n.os}/${n.architecture}` : `${n.os}/${n.architecture}/${n.variant}`;
}

/**
 * The platform of images for a Node `process.arch` (GOARCH names: x64 → amd64, ia32 → 386,
 * arm → arm with `armVersion` as variant, default v7). `os` is always `linux`: on macOS and Windows
 * containers run in a Linux VM.
 */
export function platformForNodeArch(arch: string, armVersion?: string): Platform {
  switch (arch) {
    case 'x64':
      return normalizePlatform({ os: 'linux', architecture: 'amd64' });
    case 'ia32':
      return normalizePlatform({ os: 'linux', architecture: '386' });
    case 'arm':
      return normalizePlatform(
        armVersion === undefined
          ? { os: 'linux', architecture: 'arm' }
          : { os: 'linux', architecture: 'arm', variant: armVersion },
      );
    case 'ppc64':
      // Node reports ppc64 for little-endian Linux too; containers exist only for ppc64le.
      return normalizePlatform({ os: 'linux', architecture: 'ppc64le' });
    default:
      return normalizePlatform({ os: 'linux', architecture: arch });
  }
}

/** The platform this process would run: see {@link platformForNodeArch}. */
export function hostPlatform(): Platform {
  const armVersion: unknown = (process.config.variables as Record<string, unknown>).arm_version;
  return platformForNodeArch(
    process.arch,
    typeof armVersion === 'string' || typeof armVersion === 'number' ? String(armVersion) : undefined,
  );
}

/**
 * True when `have` satisfies `want` after normalising both: same os and architecture, and the same
 * variant when `want` has one (`linux/amd64` matches `linux/amd64/v3`; `linux/arm64` is `v8`).
 */
export function platformMatches(want: Platform, have: Platform): boolean {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  return (
    w.os === h.os && w.architecture === h.architecture && (w.variant === undefined || w.variant === h.variant)
  );
}

function isAttestation(d: Descriptor): boolean {
  return d.platform?.os === UNKNOWN && d.platform.architecture === UNKNOWN;
}

/**
 * The index entries to pull for `want`, in index order: those whose platform matches
 * ({@link platformMatches}), or with `'all'` every entry except `unknown/unknown` attestation
 * manifests. Throws {@link NoMatchingPlatformError} listing the platforms available when none
 * matches.
 */
export function selectManifests(index: ImageIndex, want: Platform | 'all'): Descriptor[] {
  const candidates = index.manifests.filter((d) => !isAttestation(d));
  const selected =
    want === 'all'
      ? candidates
      : candidates.filter((d) => d.platform !== undefined && platformMatches(want, d.platform));
  if (selected.length === 0) {
    const available = candidates.map((d) =>
      d.platform === undefined ? '(no platform)' : formatPlatform(d.platform),
    );
    const wanted = want === 'all' ? 'any platform' : `platform ${formatPlatform(want)}`;
    throw new NoMatchingPlatformError(
      `no manifest for ${wanted} in index; available: ${available.length === 0 ? '(none)' : available.join(', ')}`,
    );
  }
  return selected;
}
