/**
 * Image references in the Docker grammar (distribution/reference: regexp.go, normalize.go):
 *
 *     [registry[:port]/]path-component[/path-component…][:tag][@digest]
 *
 * Parsing normalises like `docker pull` does: no registry means `docker.io`, a single Docker Hub
 * name gets `library/`, `index.docker.io` is `docker.io`, and no tag and no digest means tag `latest`.
 * `Reference` is a branded frozen object made only by {@link parseReference}, {@link withTag} and
 * {@link withDigest}.
 */
import { InvalidDigestError, parseDigest, type Digest } from './digest.ts';

declare const referenceBrand: unique symbol;

/**
 * A parsed, normalised image reference. `registry` is the name as written (`docker.io`,
 * `localhost:5000`, `[::1]:5000`), not the API host: see {@link registryEndpoint}. At least one of
 * `tag` and `digest` is set; when both are, the digest is what identifies the content.
 */
export type Reference = {
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: Digest;
} & { readonly [referenceBrand]: true };

export class InvalidReferenceError extends Error {
  override readonly name = 'InvalidReferenceError';
}

/** Docker Hub as written in references. */
export const DOCKER_HUB = 'docker.io';
/** The legacy Docker Hub name, normalised to {@link DOCKER_HUB}. */
const DOCKER_HUB_LEGACY = 'index.docker.io';
/** Docker Hub's registry API host. */
const DOCKER_HUB_ENDPOINT = 'registry-1.docker.io';
/** Namespace of Docker Hub's official images. */
const OFFICIAL_PREFIX = 'library/';
export const DEFAULT_TAG = 'latest';
/** Longest `registry/repository` distribution accepts (reference.go NameTotalLengthMax). */
const NAME_TOTAL_LENGTH_MAX = 255;

/** `[\w][\w.-]{0,127}`: tags are at most 128 characters. */
const TAG = /^\w[\w.-]{0,127}$/;
/**
 * One path component. distribution writes the dash separator `[-]*`; `-+` matches the same
 * language without the nested quantifier that makes backtracking regexps exponential on bad input.
 */
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
/** Host name, IPv4 or bracketed IPv6 (no zone), then an optional port. */
const DOMAIN_AND_PORT =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$/;
/** A bare image ID: refused as a name since it is ambiguous with `docker run <id>`. */
const IMAGE_ID = /^[a-f0-9]{64}$/;

function invalid(input: string, what: string, cause?: unknown): InvalidReferenceError {
  return new InvalidReferenceError(
    `invalid reference "${input}": ${what}`,
    cause === undefined ? undefined : { cause },
  );
}

function make(registry: string, repository: string, tag?: string, digest?: Digest): Reference {
  const ref: { registry: string; repository: string; tag?: string; digest?: Digest } = {
    registry,
    repository,
  };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return Object.freeze(ref) as Reference;
}

function isRegistry(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

/**
 * Parses a reference such as `alpine`, `ghcr.io/org/app:1.2`, `localhost:5000/x@sha256:…`,
 * `[::1]:5000/repo:tag@sha256:…`.
 *
 * The first path component is the registry when it contains `.` or `:` or is `localhost`; otherwise
 * the registry is `docker.io`. On Docker Hub a single-component name gets `library/`. When the input
 * has neither tag nor digest the tag is `latest`. Throws {@link InvalidReferenceError} quoting the
 * input and naming what is wrong.
 */
export function parseReference(input: string): Reference {
  if (input === '') throw invalid(input, 'reference is empty');

  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    try {
      digest = parseDigest(rest.slice(at + 1));
    } catch (err) {
      if (err instanceof InvalidDigestError) throw invalid(input, err.message, err);
      throw err;
    }
    rest = rest.slice(0, at);
  }

  let registry = DOCKER_HUB;
  let explicitRegistry = false;
  const slash = rest.indexOf('/');
  if (slash >= 0 && isRegistry(rest.slice(0, slash))) {
    registry = rest.slice(0, slash);
    explicitRegistry = true;
    rest = rest.slice(slash + 1);
  }

  if (!explicitRegistry && rest.startsWith('[')) {
    throw invalid(input, 'missing repository name after the registry');
  }

  // The registry is gone, so any ':' left separates the tag.
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) {
      throw invalid(input, `invalid tag "${tag}": must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
    }
  }

  if (explicitRegistry && !DOMAIN_AND_PORT.test(registry)) {
    throw invalid(input, `invalid registry "${registry}"`);
  }
  if (registry === DOCKER_HUB_LEGACY) registry = DOCKER_HUB;

  if (rest === '') throw invalid(input, 'missing repository name');
  if (rest.toLowerCase() !== rest) throw invalid(input, 'repository must be lowercase');
  if (!explicitRegistry && IMAGE_ID.test(rest)) {
    throw invalid(input, 'repository cannot be a 64-character hexadecimal image ID');
  }
  const repository = registry === DOCKER_HUB && !rest.includes('/') ? OFFICIAL_PREFIX + rest : rest;
  const nameLength = registry.length + 1 + repository.length;
  if (nameLength > NAME_TOTAL_LENGTH_MAX) {
    throw invalid(
      input,
      `name "${registry}/${repository}" is longer than ${NAME_TOTAL_LENGTH_MAX} characters`,
    );
  }
  for (const component of repository.split('/')) {
    if (component === '') throw invalid(input, 'repository has an empty path component');
    if (!PATH_COMPONENT.test(component)) {
      throw invalid(
        input,
        `invalid path component "${component}": must match [a-z0-9]+ joined by ".", "_", "__" or "-"`,
      );
    }
  }

  return make(registry, repository, tag ?? (digest === undefined ? DEFAULT_TAG : undefined), digest);
}

/** The canonical full string: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag === undefined ? '' : `:${ref.tag}`}${
    ref.digest === undefined ? '' : `@${ref.digest}`
  }`;
}

/**
 * The short form `docker` prints: `docker.io/` dropped, and `library/` dropped for official images
 * (`alpine:3.19`, `grafana/grafana:latest`, `ghcr.io/org/app@sha256:…`).
 */
export function familiarReference(ref: Reference): string {
  let name = `${ref.registry}/${ref.repository}`;
  if (ref.registry === DOCKER_HUB) {
    name = ref.repository;
    const official = name.startsWith(OFFICIAL_PREFIX) ? name.slice(OFFICIAL_PREFIX.length) : name;
    if (!official.includes('/')) name = official;
  }
  return `${name}${ref.tag === undefined ? '' : `:${ref.tag}`}${ref.digest === undefined ? '' : `@${ref.digest}`}`;
}

/**
 * The host (and port) serving the registry API for a reference's `registry`: Docker Hub's API is at
 * `registry-1.docker.io`; every other registry serves its API under its own name. No scheme: the
 * client decides http or https.
 */
export function registryEndpoint(registry: string): string {
  return registry === DOCKER_HUB || registry === DOCKER_HUB_LEGACY ? DOCKER_HUB_ENDPOINT : registry;
}

/** The same reference pinned to `digest`; the tag, if any, is kept for display (as docker does). */
export function withDigest(ref: Reference, digest: Digest | string): Reference {
  let parsed: Digest;
  try {
    parsed = parseDigest(digest);
  } catch (err) {
    if (err instanceof InvalidDigestError) throw invalid(formatReference(ref), err.message, err);
    throw err;
  }
  return make(ref.registry, ref.repository, ref.tag, parsed);
}

/**
 * The same repository with tag `tag`. A digest, if any, is kept (as docker does) and still decides
 * what is pulled; take {@link repositoryOf} and parse again to drop it.
 */
export function withTag(ref: Reference, tag: string): Reference {
  if (!TAG.test(tag)) {
    throw invalid(formatReference(ref), `invalid tag "${tag}": must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }
  return make(ref.registry, ref.repository, tag, ref.digest);
}

/** `registry/repository`, without tag or digest (e.g. `docker.io/library/alpine`). */
export function repositoryOf(ref: Reference): string {
  return `${ref.registry}/${ref.repository}`;
}

/**
 * A stable key naming what the reference points at: `registry/repository@digest` when pinned (the
 * tag no longer matters), else `registry/repository:tag` (e.g. `docker.io/library/alpine:3.19`).
 * Contains `:`, so encode it before using it as a BullMQ job id.
 */
export function referenceToKey(ref: Reference): string {
  return ref.digest === undefined
    ? `${repositoryOf(ref)}:${ref.tag ?? DEFAULT_TAG}`
    : `${repositoryOf(ref)}@${ref.digest}`;
}
