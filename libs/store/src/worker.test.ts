import { digestHex, digestOf } from '@stevedore/oci/spec';
import { createCipheriv } from 'node:crypto';
import { constants, zstdCompressSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  compressBound,
  compressInto,
  digestBlock,
  digestEnd,
  split,
  verify,
  worthKeeping,
  ZSTD_LEVEL,
  ZstdContext,
  type Areas,
  type VerifyItem,
} from './worker.ts';

/** Deterministic incompressible bytes. */
function noise(n: number): Buffer {
  return createCipheriv('aes-128-ctr', Buffer.alloc(16), Buffer.alloc(16)).update(Buffer.alloc(n));
}

const text = (n: number): Buffer =>
  Buffer.from('stevedore splits layers into objects. '.repeat(n / 38 + 1)).subarray(0, n);

function oneShot(data: Uint8Array): Buffer {
  return zstdCompressSync(data, {
    pledgedSrcSize: data.length,
    params: { [constants.ZSTD_c_compressionLevel]: ZSTD_LEVEL },
  });
}

describe('ZstdContext', () => {
  it('is available on this Node (the fast path is in use)', () => {
    expect(ZstdContext.compressor(ZSTD_LEVEL).available).toBe(true);
    expect(ZstdContext.decompressor().available).toBe(true);
  });

  it.each([
    { name: '1 byte', data: text(1) },
    { name: '4 KiB of text', data: text(4096) },
    { name: '200 KiB of text', data: text(200 * 1024) },
    { name: '2 MiB of text', data: text(2 * 1024 * 1024) },
    { name: '64 KiB of noise', data: noise(64 * 1024) },
  ])('compresses $name byte for byte like zstdCompressSync, frame after frame', ({ data }) => {
    const z = ZstdContext.compressor(ZSTD_LEVEL);
    const expected = oneShot(data);
    for (let round = 0; round < 3; round++) {
      const out = Buffer.alloc(expected.length + 64);
      const n = z.process(data, out);
      expect(n).toBe(expected.length);
      expect(out.subarray(0, n).equals(expected)).toBe(true);
    }
  });

  it('reports output that does not fit as -1 and compresses the next frame from scratch, at its level', () => {
    const json = Buffer.from(
      JSON.stringify(
        Array.from({ length: 5000 }, (_, i) => ({ i, sq: i * i, s: ((i * 7919) % 1000).toString(36) })),
      ),
    );
    const level9 = zstdCompressSync(json, { params: { [constants.ZSTD_c_compressionLevel]: 9 } });
    expect(level9.length).not.toBe(oneShot(json).length);
    const z = ZstdContext.compressor(9);
    expect(z.process(noise(32 * 1024), Buffer.alloc(1024))).toBe(-1);
    const out = Buffer.alloc(compressBound(json.length));
    for (let round = 0; round < 2; round++) {
      const n = z.process(json, out);
      expect(out.subarray(0, n).equals(level9)).toBe(true);
    }
  });

  it.each([
    { name: 'exact', frame: oneShot(text(5000)), room: 5001, result: 5000 },
    { name: 'a frame longer than the room', frame: oneShot(text(5000)), room: 4000, result: -1 },
  ])('decompresses: $name', ({ frame, room, result }) => {
    const z = ZstdContext.decompressor();
    expect(z.process(frame, Buffer.alloc(room))).toBe(result);
    // The context is clean afterwards.
    const out = Buffer.alloc(101);
    expect(z.process(oneShot(text(100)), out)).toBe(100);
    expect(out.subarray(0, 100).equals(text(100))).toBe(true);
  });

  it.each([
    { name: 'not a frame', frame: Buffer.from('not a zstd frame at all'), error: /Unknown frame descriptor/ },
    {
      name: 'a truncated frame',
      frame: oneShot(text(5000)).subarray(0, 10),
      error: /unexpected end of file/,
    },
  ])('throws zstd errors ($name) and recovers', ({ frame, error }) => {
    const z = ZstdContext.decompressor();
    expect(() => z.process(frame, Buffer.alloc(6000))).toThrow(error);
    const out = Buffer.alloc(101);
    expect(z.process(oneShot(text(100)), out)).toBe(100);
    expect(out.subarray(0, 100).equals(text(100))).toBe(true);
  });
});

describe('compressInto', () => {
  it.each([
    { name: 'below 128 bytes', data: text(127), compressed: false },
    { name: 'text', data: text(100_000), compressed: true },
    { name: 'noise (the 16 KiB trial fails)', data: noise(100_000), compressed: false },
    { name: 'small noise', data: noise(1000), compressed: false },
    {
      name: 'noise after a compressible trial (the whole does not save 10%)',
      data: Buffer.concat([text(16384), noise(200_000)]),
      compressed: false,
    },
  ])('$name', ({ data, compressed }) => {
    const out = Buffer.alloc(worthKeeping(data.length));
    const n = compressInto(data, out);
    if (compressed) expect(out.subarray(0, n).equals(oneShot(data))).toBe(true);
    else expect(n).toBe(-1);
  });
});

describe('verify', () => {
  const a = text(3000);
  const b = noise(500);
  const za = oneShot(a);
  const hash = (d: Uint8Array): string => digestHex(digestOf(d));
  const pack = Buffer.concat([za, b]);
  const items: VerifyItem[] = [
    { offset: 0, stored: za.length, raw: a.length, zstd: true, hash: hash(a) },
    { offset: za.length, stored: b.length, raw: b.length, zstd: false, hash: hash(b) },
  ];
  const run = (data: Buffer, list: VerifyItem[]) => {
    const copy = data.buffer.slice(data.byteOffset, data.byteOffset + data.length) as ArrayBuffer;
    return verify({ op: 'verify', id: 1, data: copy, items: list }).then((r) => r.response);
  };

  it('returns the raw objects back to back (and a spare byte)', async () => {
    const res = await run(pack, items);
    expect(res.bad).toBeUndefined();
    expect(
      Buffer.from(res.out!)
        .subarray(0, a.length + b.length)
        .equals(Buffer.concat([a, b])),
    ).toBe(true);
    expect(res.out!.byteLength).toBe(a.length + b.length + 1);
  });

  it.each([
    {
      name: 'a wrong hash',
      list: [{ ...items[0]!, hash: hash(b) }],
      index: 0,
      reason: `content hashes to sha256:${hash(a)}`,
    },
    {
      name: 'a wrong raw size (zstd)',
      list: [{ ...items[0]!, raw: a.length - 1 }],
      index: 0,
      reason: `zstd: frame does not decode to ${a.length - 1} bytes`,
    },
    {
      name: 'a wrong raw size (raw)',
      list: [items[0]!, { ...items[1]!, raw: 499 }],
      index: 1,
      reason: '500 bytes, expected 499',
    },
    {
      name: 'a short read',
      list: [{ ...items[1]!, stored: 600 }],
      index: 0,
      reason: `short read: 500 of 600 bytes`,
    },
  ])('names the first bad object: $name', async ({ list, index, reason }) => {
    const res = await run(pack, list);
    expect(res.out).toBeUndefined();
    expect(res.bad).toEqual({ index, reason });
  });

  it('reports a corrupt frame and verifies the next request', async () => {
    const bad = Buffer.from(pack);
    bad[za.length - 5]! ^= 0xff;
    const res = await run(bad, items);
    expect(res.bad?.index).toBe(0);
    const good = await run(pack, items);
    expect(good.bad).toBeUndefined();
  });
});

describe('split and digest-block over shared blocks', () => {
  const blockBytes = 64 * 1024;
  const areas: Areas = {
    input: new Uint8Array(new SharedArrayBuffer(2 * blockBytes)),
    blockBytes,
  };
  // Block 1: a header-like gap, then three objects.
  const objects = [
    { offset: 512, data: text(20_000), frame: true },
    { offset: 20_512, data: noise(10_000), frame: false },
    { offset: 30_512, data: text(100), frame: false },
  ];
  areas.input.fill(7, blockBytes, blockBytes + 512);
  for (const o of objects) areas.input.set(o.data, blockBytes + o.offset);

  it('hashes each object and writes the frames that pay over their objects', async () => {
    const list = Uint32Array.from(objects.flatMap((o) => [o.offset, o.data.length]));
    const { response } = await split({ op: 'split', id: 3, block: 1, objects: list }, areas);
    expect(response.id).toBe(3);
    expect([...response.compressedLengths]).toEqual([oneShot(objects[0]!.data).length, -1, -1]);
    objects.forEach((o, i) => {
      expect(Buffer.from(response.hashes.subarray(i * 32, (i + 1) * 32)).toString('hex')).toBe(
        digestHex(digestOf(o.data)),
      );
    });
    const start = blockBytes + objects[0]!.offset;
    const frame = areas.input.subarray(start, start + response.compressedLengths[0]!);
    expect(Buffer.from(frame).equals(oneShot(objects[0]!.data))).toBe(true);
    // Objects stored raw are left as they are.
    const noise = blockBytes + objects[1]!.offset;
    expect(Buffer.from(areas.input.subarray(noise, noise + 10_000)).equals(objects[1]!.data)).toBe(true);
  });

  it('adds blocks to a stream hash in order', () => {
    areas.input.fill(1, 0, 100);
    digestBlock({ op: 'digest-block', id: 1, stream: 42, block: 0, length: 100 }, areas);
    digestBlock({ op: 'digest-block', id: 2, stream: 42, block: 1, length: 40_000 }, areas);
    const { response } = digestEnd({ op: 'digest-end', id: 3, stream: 42, discard: false });
    const expected = Buffer.concat([
      areas.input.subarray(0, 100),
      areas.input.subarray(blockBytes, blockBytes + 40_000),
    ]);
    expect(response).toEqual({ op: 'digest-end', id: 3, digest: digestOf(expected), size: 40_100 });
  });
});
