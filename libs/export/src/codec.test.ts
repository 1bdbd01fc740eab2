import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { Digester } from '@stevedore/oci';
import { generateBytes } from '@stevedore/testing';
import { compressorFor, GZIP_LEVEL, Reblock, recipeOf, ZSTD_LEVEL } from './codec.ts';

const INPUT = Buffer.concat([
  Buffer.from(generateBytes(1, 3_000_000, 'text')),
  Buffer.from(generateBytes(2, 1_500_000, 'random')),
]);

function chunks(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

async function compress(compression: 'gzip' | 'zstd', input: Buffer[], pledge: boolean): Promise<Buffer> {
  const out: Buffer[] = [];
  const total = input.reduce((n, c) => n + c.length, 0);
  await pipeline(
    Readable.from(input),
    ...compressorFor(recipeOf(compression), pledge ? total : undefined),
    new Writable({
      write(chunk: Buffer, _e, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

describe('deterministic compression', () => {
  it('names the recipe with the codec Node bundles', () => {
    expect(recipeOf('gzip')).toEqual({
      compression: 'gzip',
      level: GZIP_LEVEL,
      codec: `zlib ${process.versions.zlib} w1048576`,
    });
    expect(recipeOf('zstd')).toEqual({
      compression: 'zstd',
      level: ZSTD_LEVEL,
      codec: `zstd ${process.versions.zstd} w1048576`,
    });
  });

  it.each(['gzip', 'zstd'] as const)(
    '%s output does not depend on how the input is cut',
    async (compression) => {
      const whole = await compress(compression, [INPUT], true);
      const digest = (b: Buffer): string => {
        const d = new Digester();
        d.update(b);
        return d.digest();
      };
      for (const size of [1, 4096, 60_000, 65_537]) {
        const input =
          size === 1
            ? chunks(INPUT.subarray(0, 20_000), 1).concat([INPUT.subarray(20_000)])
            : chunks(INPUT, size);
        expect(digest(await compress(compression, input, true))).toBe(digest(whole));
      }
      const plain = compression === 'gzip' ? gunzipSync(whole) : zstdDecompressSync(whole);
      expect(plain.equals(INPUT)).toBe(true);
    },
  );

  it('writes a gzip header with no name and mtime 0', async () => {
    const gz = await compress('gzip', [INPUT], false);
    // ID1 ID2 CM FLG MTIME(4) XFL OS (RFC 1952): deflate, no FNAME/FCOMMENT/FEXTRA, mtime 0, Unix.
    expect([...gz.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
  });

  it('pledges the content size in the zstd frame header only when known', async () => {
    const pledged = await compress('zstd', [INPUT], true);
    const unknown = await compress('zstd', [INPUT], false);
    // Frame_Header_Descriptor: bits 7-6 Frame_Content_Size_flag, bit 2 Content_Checksum_flag.
    expect(pledged.readUInt32LE(0)).toBe(0xfd2fb528);
    expect(pledged[4]! >> 6).toBe(2); // 4-byte content size: 4,500,000 bytes
    // Window_Descriptor (1 byte) comes first unless Single_Segment_flag (bit 5) is set.
    const singleSegment = (pledged[4]! & 0b10_0000) !== 0;
    expect(pledged.readUInt32LE(singleSegment ? 5 : 6)).toBe(INPUT.length);
    expect(pledged[4]! & 0b100).toBe(0);
    expect(unknown[4]! >> 6).toBe(0);
    expect(unknown[4]! & 0b100).toBe(0);
  });
});

describe('Reblock', () => {
  it.each<[string, number[], number, number[]]>([
    ['nothing', [], 4, []],
    ['one short chunk', [3], 4, [3]],
    ['exact blocks', [4, 4], 4, [4, 4]],
    ['a large chunk', [10], 4, [4, 4, 2]],
    ['small chunks', [1, 1, 1, 1, 1], 4, [4, 1]],
    ['mixed', [3, 6, 1, 2], 4, [4, 4, 4]],
  ])('%s %j become %j-byte writes', async (_name, sizes, block, expected) => {
    let next = 0;
    const input = sizes.map((n) => Buffer.from(Array.from({ length: n }, () => next++ % 256)));
    const out: Buffer[] = [];
    await pipeline(
      Readable.from(input),
      new Reblock(block),
      new Writable({
        write(chunk: Buffer, _e, cb) {
          out.push(chunk);
          cb();
        },
      }),
    );
    expect(out.map((b) => b.length)).toEqual(expected);
    expect([...Buffer.concat(out)]).toEqual(Array.from({ length: next }, (_, i) => i % 256));
  });
});
