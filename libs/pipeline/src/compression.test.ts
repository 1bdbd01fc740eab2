import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  CompressionMismatchError,
  CorruptLayerError,
  decompressLayer,
  sniffCompression,
} from './compression.ts';
import { permanentCause } from './errors.ts';

const TAR = Buffer.alloc(3 * 512, 7);
const OCI = 'application/vnd.oci.image.layer.v1.tar';

function chunked(bytes: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return Readable.from(parts);
}

describe('sniffCompression', () => {
  it.each([
    [gzipSync(TAR), 'gzip'],
    [zstdCompressSync(TAR), 'zstd'],
    [TAR, 'none'],
  ] as const)('detects %#', (bytes, expected) => {
    expect(sniffCompression(bytes.subarray(0, 4))).toBe(expected);
  });
});

describe('decompressLayer', () => {
  it.each([
    [`${OCI}+gzip`, gzipSync(TAR)],
    ['application/vnd.docker.image.rootfs.diff.tar.gzip', gzipSync(TAR)],
    [`${OCI}+zstd`, zstdCompressSync(TAR)],
    [OCI, TAR],
  ])('decodes %s, even when the magic number is split across chunks', async (mediaType, blob) => {
    const tar = await decompressLayer(chunked(blob, 1), mediaType, 'layer x');
    expect(Buffer.compare(await buffer(tar), TAR)).toBe(0);
  });

  it.each([
    [
      `${OCI}+zstd`,
      gzipSync(TAR),
      'layer x: media type application/vnd.oci.image.layer.v1.tar+zstd says zstd, but the content is gzip',
    ],
    [
      `${OCI}+gzip`,
      TAR,
      'layer x: media type application/vnd.oci.image.layer.v1.tar+gzip says gzip, but the content is none',
    ],
    [
      OCI,
      zstdCompressSync(TAR),
      'layer x: media type application/vnd.oci.image.layer.v1.tar says none, but the content is zstd',
    ],
  ])('refuses %s whose content disagrees', async (mediaType, blob, message) => {
    await expect(decompressLayer(chunked(blob, 64), mediaType, 'layer x')).rejects.toThrowError(
      new CompressionMismatchError(message),
    );
  });

  it('decodes a layer of many chunks, read in place as the store reads it (each chunk copied before the next)', async () => {
    // 3 MiB: a dozen decoder chunks, with text and random bytes.
    const tar = Buffer.concat([Buffer.alloc(1024 * 1024, 'stevedore '), randomBytes(2 * 1024 * 1024)]);
    for (const [mediaType, blob] of [
      [`${OCI}+gzip`, gzipSync(tar)],
      [`${OCI}+zstd`, zstdCompressSync(tar)],
      [OCI, tar],
    ] as const) {
      const input = await decompressLayer(chunked(blob, 64 * 1024), mediaType, 'layer x');
      const copies: Buffer[] = [];
      for await (const chunk of input as AsyncIterable<Uint8Array>) copies.push(Buffer.from(chunk));
      expect(copies.length, mediaType).toBeGreaterThan(1);
      expect(Buffer.compare(Buffer.concat(copies), tar), mediaType).toBe(0);
    }
  });

  it('stops the blob when its reader stops early', async () => {
    const tar = randomBytes(2 * 1024 * 1024);
    for (const [mediaType, blob] of [
      [`${OCI}+gzip`, gzipSync(tar)],
      [`${OCI}+zstd`, zstdCompressSync(tar)],
      [OCI, tar],
    ] as const) {
      const source = chunked(blob, 64 * 1024);
      const input = await decompressLayer(source, mediaType, 'layer x');
      for await (const chunk of input as AsyncIterable<Uint8Array>) {
        expect(chunk.length).toBeGreaterThan(0);
        break;
      }
      // The zstd path stops its blob through its stream pipeline, some turns later.
      for (let turn = 0; turn < 100 && !source.destroyed; turn++) await new Promise((r) => setImmediate(r));
      expect(source.destroyed, mediaType).toBe(true);
    }
  });

  it('stops a stalled blob at once when its reader stops early', async () => {
    // Half of the blob, then nothing (a registry that stopped sending): the decoder waits for it.
    const blob = gzipSync(randomBytes(1024 * 1024));
    const source = new Readable({ read: () => undefined });
    source.push(blob.subarray(0, blob.length >> 1));
    const input = await decompressLayer(source, `${OCI}+gzip`, 'layer x');
    for await (const chunk of input as AsyncIterable<Uint8Array>) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    expect(source.destroyed).toBe(true);
  });

  it('fails the stream on a truncated gzip blob', async () => {
    const blob = gzipSync(TAR);
    const tar = await decompressLayer(
      Readable.from([blob.subarray(0, blob.length - 10)]),
      `${OCI}+gzip`,
      'layer x',
    );
    await expect(buffer(tar)).rejects.toThrow('unexpected end of file');
  });
});

describe('decompressLayer on data that does not decode', () => {
  it.each([
    [`${OCI}+gzip`, 'gzip', gzipSync(TAR)],
    [`${OCI}+zstd`, 'zstd', zstdCompressSync(TAR)],
  ])(
    '%s: names the layer, fails permanently, keeps the decoder error as the cause',
    async (mediaType, codec, blob) => {
      const corrupt = Buffer.from(blob);
      // Everything after the magic number (which still says gzip or zstd).
      for (let i = 4; i < corrupt.length; i++) corrupt[i] = corrupt[i]! ^ 0x5a;
      const tar = await decompressLayer(chunked(corrupt, 7), mediaType, 'layer sha256:abc');
      const err: unknown = await buffer(tar).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CorruptLayerError);
      expect((err as Error).message).toMatch(new RegExp(`^layer sha256:abc: its ${codec} data is corrupt: `));
      // Permanent (retrying cannot fix the bytes), whatever code the decoder gave its error.
      expect(permanentCause(err)).toBe(err);
      expect((err as Error).cause).toHaveProperty('code');
    },
  );

  it('passes errors of the blob stream on unchanged', async () => {
    async function* failing(): AsyncGenerator<Buffer> {
      yield gzipSync(TAR).subarray(0, 20);
      await new Promise((resolve) => setImmediate(resolve));
      throw new Error('connection reset while reading the blob');
    }
    const tar = await decompressLayer(Readable.from(failing()), `${OCI}+gzip`, 'layer x');
    await expect(buffer(tar)).rejects.toThrow('connection reset while reading the blob');
  });
});
