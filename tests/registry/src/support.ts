/** Shared helpers of the registry integration tests. */
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  digestOf,
  parseReference,
  RegistryClient,
  type Digest,
  type Logger,
  type Platform,
  type Reference,
  type RegistryClientOptions,
} from '@stevedore/oci';
import { buildImage, buildLayer, generateBytes, type FixtureImage } from '@stevedore/testing';

/** Retries fast: the behaviour under test is the count and the outcome, not the wall clock. */
export const FAST_RETRY = { attempts: 3, baseDelayMs: 10, maxDelayMs: 50, maxRetryAfterMs: 5_000 };

/** Records warnings and debug lines, to assert retries happened and that nothing secret is logged. */
export class RecordingLogger implements Logger {
  readonly lines: string[] = [];
  debug(message: string, fields?: Record<string, unknown>): void {
    this.lines.push(`debug ${message} ${JSON.stringify(fields ?? {})}`);
  }
  info(message: string, fields?: Record<string, unknown>): void {
    this.lines.push(`info ${message} ${JSON.stringify(fields ?? {})}`);
  }
  warn(message: string, fields?: Record<string, unknown>): void {
    this.lines.push(`warn ${message} ${JSON.stringify(fields ?? {})}`);
  }
}

export function client(options: RegistryClientOptions = {}): RegistryClient {
  return new RegistryClient({ retry: FAST_RETRY, ...options });
}

/** A repository name nobody else uses in this run. */
export function uniqueRepository(prefix = 'it'): string {
  return `${prefix}/${randomUUID().slice(0, 8)}`;
}

export function ref(host: string, repository: string, tagOrDigest = ':latest'): Reference {
  return parseReference(`${host}/${repository}${tagOrDigest}`);
}

/** A small single-layer image whose content depends on `seed`. */
export async function smallImage(seed: number, platform?: Platform, size = 32 * 1024): Promise<FixtureImage> {
  const layer = await buildLayer(
    [{ type: 'file', path: `data-${seed}.bin`, content: { kind: 'generated', seed, size } }],
    { compression: 'gzip' },
  );
  return buildImage({ layers: [layer], ...(platform === undefined ? {} : { platform }) });
}

/** Random-looking bytes and their descriptor. */
export function blob(seed: number, size: number): { bytes: Uint8Array; digest: Digest; size: number } {
  const bytes = generateBytes(seed, size);
  return { bytes, digest: digestOf(bytes), size };
}

/** Drains a stream, returning the bytes (test blobs are small) and whether it ended cleanly. */
export async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await pipeline(
    stream,
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk);
        callback();
      },
    }),
  );
  return Buffer.concat(chunks);
}
