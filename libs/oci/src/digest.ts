/**
 * Content digests (OCI image spec, descriptor.md#digests): `algorithm ":" encoded`.
 *
 * `Digest` is a branded string made only by {@link parseDigest} or by hashing
 * ({@link Digester}, {@link digestOf}). This module is the one hashing helper of the repository:
 * every sha256/sha512 of content goes through it.
 */
import { createHash, type Hash } from 'node:crypto';

export type DigestAlgorithm = 'sha256' | 'sha512';

declare const digestBrand: unique symbol;
/** A validated content digest such as `sha256:e3b0c4…`. */
export type Digest = string & { readonly [digestBrand]: true };

/** Hex length of each algorithm's encoded part (OCI image spec: registered algorithms). */
const ENCODED_HEX_LENGTH: Readonly<Record<DigestAlgorithm, number>> = { sha256: 64, sha512: 128 };
const LOWER_HEX = /^[a-f0-9]+$/;

export class InvalidDigestError extends Error {
  override readonly name = 'InvalidDigestError';
}

/** Parses and validates a digest string; throws {@link InvalidDigestError} quoting the input. */
export function parseDigest(input: string): Digest {
  const colon = input.indexOf(':');
  if (colon < 0) throw new InvalidDigestError(`invalid digest "${input}": missing "algorithm:" prefix`);
  const algorithm = input.slice(0, colon);
  const encoded = input.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new InvalidDigestError(`invalid digest "${input}": unsupported algorithm "${algorithm}"`);
  }
  const expected = ENCODED_HEX_LENGTH[algorithm];
  if (encoded.length !== expected) {
    throw new InvalidDigestError(
      `invalid digest "${input}": ${algorithm} needs ${expected} hex characters, got ${encoded.length}`,
    );
  }
  if (!LOWER_HEX.test(encoded)) {
    throw new InvalidDigestError(`invalid digest "${input}": encoded part must be lowercase hex`);
  }
  return input as Digest;
}

/** True when `input` parses as a digest. */
export function isDigest(input: string): input is Digest {
  try {
    parseDigest(input);
    return true;
  } catch {
    return false;
  }
}

export function digestAlgorithm(digest: Digest): DigestAlgorithm {
  return digest.slice(0, digest.indexOf(':')) as DigestAlgorithm;
}

/** The hex part after `algorithm:`. */
export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(':') + 1);
}

/** Incremental hashing that also counts bytes: feed chunks, then read the digest once. */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  #hash: Hash;
  #size = 0;
  #result: Digest | undefined;

  constructor(algorithm: DigestAlgorithm = 'sha256') {
    this.algorithm = algorithm;
    this.#hash = createHash(algorithm);
  }

  update(chunk: Uint8Array): void {
    if (this.#result !== undefined) throw new Error('Digester.update after digest()');
    this.#hash.update(chunk);
    this.#size += chunk.byteLength;
  }

  /** Bytes fed so far. */
  get size(): number {
    return this.#size;
  }

  /** Finishes hashing; later calls return the same digest. */
  digest(): Digest {
    this.#result ??= `${this.algorithm}:${this.#hash.digest('hex')}` as Digest;
    return this.#result;
  }
}

/** Digest of bytes held in memory (manifests, configs, small objects). */
export function digestOf(data: Uint8Array | string, algorithm: DigestAlgorithm = 'sha256'): Digest {
  const d = new Digester(algorithm);
  d.update(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  return d.digest();
}

/** A digester of the same algorithm as `digest`, to verify content against it. */
export function digesterFor(digest: Digest): Digester {
  return new Digester(digestAlgorithm(digest));
}
