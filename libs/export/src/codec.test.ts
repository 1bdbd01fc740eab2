import { Readable, Writable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import {
  constants,
  gunzipSync,
  inflateRawSync,
  zstdCompress,
  zstdDecompressSync,
  type ZstdOptions,
} from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { generateBytes } from '@stevedore/testing';
import {
  compressorFor,
  GZIP_BLOCK_BYTES,
  GZIP_LEVEL,
  Reblock,
  recipeOf,
  ZSTD_BLOCK_BYTES,
  ZSTD_LEVEL,
} from './codec.ts';

/** Several blocks of each codec, and a short last one. */
const INPUT = Buffer.concat([
  Buffer.from(generateBytes(1, 6_000_000, 'text')),
  Buffer.from(generateBytes(2, 3_500_000, 'random')),
]);

function chunks(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

async function collect(input: Iterable<Buffer>, stages: readonly Transform[]): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline([
    Readable.from(input),
    ...stages,
    new Writable({
      write(chunk: Buffer, _e, cb) {
        out.push(chunk);
        cb();
      },
    }),
  ]);
  return Buffer.concat(out);
}

const compress = (compression: 'gzip' | 'zstd', input: Buffer[], inFlight?: number): Promise<Buffer> =>
  collect(input, compressorFor(recipeOf(compression), inFlight));

const decompress = (compression: 'gzip' | 'zstd', data: Buffer): Buffer =>
  compression === 'gzip' ? gunzipSync(data) : zstdDecompressSync(data);

describe('deterministic parallel compression', () => {
  it('names the recipe with the codec Node bundles and the block layout', () => {
    expect(recipeOf('gzip')).toEqual({
      compression: 'gzip',
      level: GZIP_LEVEL,
      codec: `zlib ${process.versions.zlib} primed blocks 1048576`,
    });
    expect(recipeOf('zstd')).toEqual({
      compression: 'zstd',
      level: ZSTD_LEVEL,
      codec: `zstd ${process.versions.zstd} frames 4194304`,
    });
  });

  it.each(['gzip', 'zstd'] as const)(
    '%s output depends neither on how the input is cut nor on how many blocks run at once',
    async (compression) => {
      const whole = await compress(compression, [INPUT]);
      expect(decompress(compression, whole).equals(INPUT)).toBe(true);
      const cuts = [
        chunks(INPUT.subarray(0, 20_000), 1).concat([INPUT.subarray(20_000)]),
        chunks(INPUT, 4096),
        chunks(INPUT, 60_000),
        chunks(INPUT, 65_537),
      ];
      for (const input of cuts) expect((await compress(compression, input)).equals(whole)).toBe(true);
      for (const inFlight of [1, 2, 7]) {
        expect((await compress(compression, chunks(INPUT, 65_536), inFlight)).equals(whole)).toBe(true);
      }
    },
  );

  it.each(['gzip', 'zstd'] as const)('%s of nothing is a valid empty stream', async (compression) => {
    const out = await compress(compression, []);
    expect(out.length).toBeGreaterThan(0);
    expect(decompress(compression, out).length).toBe(0);
  });

  it('writes one gzip member: a header with no name and mtime 0, primed deflate blocks, CRC-32 and length', async () => {
    const gz = await compress('gzip', [INPUT]);
    // ID1 ID2 CM FLG MTIME(4) XFL OS (RFC 1952): deflate, no FNAME/FCOMMENT/FEXTRA, mtime 0, Unix.
    expect([...gz.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
    // The whole body is one deflate stream (a raw inflate reads it all, up to the final block).
    expect(inflateRawSync(gz.subarray(10, -8)).equals(INPUT)).toBe(true);
    expect(gz.readUInt32LE(gz.length - 4)).toBe(INPUT.length);
    expect(Math.ceil(INPUT.length / GZIP_BLOCK_BYTES)).toBe(10);
  });

  it('writes one zstd frame per block, each with its content size and no checksum', async () => {
    const zst = await compress('zstd', [INPUT]);
    // Each block compressed on its own (Node's async one-shot, as the compressor does), in order.
    const frames = await Promise.all(
      chunks(INPUT, ZSTD_BLOCK_BYTES).map((block) =>
        promisify<Buffer, ZstdOptions, Buffer>(zstdCompress)(block, {
          pledgedSrcSize: block.length,
          params: {
            [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL,
            [constants.ZSTD_c_checksumFlag]: 0,
          },
        }),
      ),
    );
    expect(frames.map((f) => zstdDecompressSync(f).length)).toEqual([
      ZSTD_BLOCK_BYTES,
      ZSTD_BLOCK_BYTES,
      INPUT.length - 2 * ZSTD_BLOCK_BYTES,
    ]);
    expect(zst.equals(Buffer.concat(frames))).toBe(true);
    // Frame_Header_Descriptor: Frame_Content_Size_flag (bits 7-6) 2 = 4 bytes, no checksum (bit 2).
    expect(zst.readUInt32LE(0)).toBe(0xfd2fb528);
    expect(zst[4]! >> 6).toBe(2);
    expect(zst[4]! & 0b100).toBe(0);
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
