import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CompressionMismatchError, decompressLayer, sniffCompression } from './compression.ts';

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
