import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { createGunzip, gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { GUNZIP_CHUNK_BYTES, gunzipInPlace, nativeGunzipAvailable } from './gunzip.ts';

/** Deterministic incompressible bytes (xorshift32). */
function pseudoRandom(length: number, seed: number): Buffer {
  const words = new Uint32Array(Math.ceil(length / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    words[i] = x;
  }
  return Buffer.from(words.buffer, 0, length);
}

/** Compressible text of exactly `length` bytes. */
function text(length: number, salt = ''): Buffer {
  const lines: string[] = [];
  let size = 0;
  for (let i = 0; size < length; i++) {
    const line = `${salt}line ${i}: the quick brown fox jumps over ${i % 97} lazy dogs\n`;
    lines.push(line);
    size += line.length;
  }
  return Buffer.from(lines.join('')).subarray(0, length);
}

const SMALL = Buffer.from('hello, gzip in place\n'.repeat(20));
/** Several output chunks, but only a few KiB compressed: cheap to feed in tiny pieces. */
const COMPRESSIBLE = text(3 * GUNZIP_CHUNK_BYTES + 1234);
/** Multi-megabyte, compressible and random parts: many output chunks, two buffers reused in turn. */
const MIXED = Buffer.concat([
  text(1024 * 1024),
  pseudoRandom(1024 * 1024 + 12_345, 1),
  Buffer.alloc(700 * 1024),
  text(600 * 1024, 'again '),
  pseudoRandom(100_000, 2),
]);
const SMALL_GZ = gzipSync(SMALL);
const COMPRESSIBLE_GZ = gzipSync(COMPRESSIBLE);
const MIXED_GZ = gzipSync(MIXED);

/** The source chunks of `bytes`, `size` bytes each (the last one shorter). */
function pieces(bytes: Uint8Array, size: number): Uint8Array[] {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) parts.push(bytes.subarray(i, i + size));
  return parts;
}

async function* source(parts: Iterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for (const part of parts) {
    await Promise.resolve();
    yield part;
  }
}

/** Decodes, copying each chunk before asking for the next (the in-place contract). */
async function decode(input: AsyncIterable<Uint8Array>): Promise<{ bytes: Buffer; sizes: number[] }> {
  const copies: Buffer[] = [];
  for await (const chunk of gunzipInPlace(input)) copies.push(Buffer.from(chunk));
  return { bytes: Buffer.concat(copies), sizes: copies.map((c) => c.length) };
}

function digest(bytes: Uint8Array): { length: number; sha256: string } {
  return { length: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

type Outcome =
  { length: number; sha256: string } | { error: { code: unknown; errno: unknown; message: string } };

function failed(err: unknown): Outcome {
  const e = err as { code?: unknown; errno?: unknown; message: string };
  expect(err).toBeInstanceOf(Error);
  return { error: { code: e.code, errno: e.errno, message: e.message } };
}

async function inPlaceOutcome(parts: Uint8Array[]): Promise<Outcome> {
  try {
    return digest((await decode(source(parts))).bytes);
  } catch (err) {
    return failed(err);
  }
}

/** What Node's own Gunzip stream makes of the same source chunks. */
async function streamOutcome(parts: Uint8Array[]): Promise<Outcome> {
  try {
    return digest(await buffer(Readable.from(parts).pipe(createGunzip())));
  } catch (err) {
    return failed(err);
  }
}

function syncOutcome(bytes: Uint8Array): Outcome {
  try {
    return digest(gunzipSync(bytes));
  } catch (err) {
    return failed(err);
  }
}

const WHOLE = Number.MAX_SAFE_INTEGER;

describe('nativeGunzipAvailable', () => {
  it('is true on this Node (a Node upgrade that loses the fast path, node:zlib _handle, must fail CI)', () => {
    expect(nativeGunzipAvailable).toBe(true);
  });
});

describe('gunzipInPlace', () => {
  it.each([
    ['a small input in 1-byte chunks', SMALL_GZ, 1],
    ['a small input whole', SMALL_GZ, WHOLE],
    ['a compressible multi-chunk input in 7-byte chunks', COMPRESSIBLE_GZ, 7],
    ['a multi-megabyte input in 4093-byte chunks', MIXED_GZ, 4093],
    ['a multi-megabyte input in 64 KiB chunks', MIXED_GZ, 64 * 1024],
    ['a multi-megabyte input in 64 KiB + 1 chunks', MIXED_GZ, 64 * 1024 + 1],
    ['a multi-megabyte input whole', MIXED_GZ, WHOLE],
  ])('decodes %s exactly as gunzipSync', async (_name, gz, size) => {
    const { bytes, sizes } = await decode(source(pieces(gz, size)));
    expect(digest(bytes)).toEqual(digest(gunzipSync(gz)));
    expect(sizes.length).toBe(Math.ceil(bytes.length / GUNZIP_CHUNK_BYTES));
  });

  it('decodes the multi-megabyte input to the bytes that were compressed', async () => {
    expect(digest((await decode(source([MIXED_GZ]))).bytes)).toEqual(digest(MIXED));
  });

  it('takes plain Uint8Array chunks and skips empty ones', async () => {
    const parts = pieces(COMPRESSIBLE_GZ, 1000).flatMap((p) => [new Uint8Array(0), new Uint8Array(p)]);
    parts.push(new Uint8Array(0));
    expect(digest((await decode(source(parts))).bytes)).toEqual(digest(COMPRESSIBLE));
  });

  it('decodes several inputs at once, each into its own buffers', async () => {
    const [a, b] = await Promise.all([
      decode(source(pieces(MIXED_GZ, 64 * 1024))),
      decode(source(pieces(COMPRESSIBLE_GZ, 999))),
    ]);
    expect(digest(a.bytes)).toEqual(digest(MIXED));
    expect(digest(b.bytes)).toEqual(digest(COMPRESSIBLE));
  });

  it.each([
    ['exactly one chunk', GUNZIP_CHUNK_BYTES],
    ['exactly two chunks', 2 * GUNZIP_CHUNK_BYTES],
    ['one byte more than a chunk', GUNZIP_CHUNK_BYTES + 1],
    ['one byte less than a chunk', GUNZIP_CHUNK_BYTES - 1],
  ])('decodes content of %s', async (_name, length) => {
    const content = pseudoRandom(length, length);
    for (const size of [WHOLE, 64 * 1024]) {
      const { bytes, sizes } = await decode(source(pieces(gzipSync(content), size)));
      expect(digest(bytes)).toEqual(digest(content));
      expect(sizes).toEqual(pieces(content, GUNZIP_CHUNK_BYTES).map((p) => p.length));
    }
  });

  it('yields no chunk for the gzip of empty content', async () => {
    const empty = gzipSync(Buffer.alloc(0));
    for (const size of [1, WHOLE]) {
      const { sizes } = await decode(source(pieces(empty, size)));
      expect(sizes).toEqual([]);
    }
  });

  it('rejects an empty source as gunzipSync and createGunzip do (unexpected end of file)', async () => {
    const expected = syncOutcome(Buffer.alloc(0));
    expect(expected).toMatchObject({ error: { code: 'Z_BUF_ERROR', message: 'unexpected end of file' } });
    expect(await streamOutcome([])).toEqual(expected);
    expect(await inPlaceOutcome([])).toEqual(expected);
    // A source of empty chunks only is an empty source.
    expect(await inPlaceOutcome([new Uint8Array(0), new Uint8Array(0)])).toEqual(expected);
  });

  describe('multi-member gzip', () => {
    const first = gzipSync(SMALL);
    const members = [first, gzipSync(Buffer.alloc(0)), gzipSync(COMPRESSIBLE), gzipSync(text(1000, 'last '))];
    const multi = Buffer.concat(members);
    const content = Buffer.concat([SMALL, COMPRESSIBLE, text(1000, 'last ')]);

    it('decodes every member of a small input in 1-byte chunks', async () => {
      const small = Buffer.concat([first, gzipSync(Buffer.alloc(0)), gzipSync(text(1000, 'last '))]);
      const expected = Buffer.concat([SMALL, text(1000, 'last ')]);
      expect(digest(gunzipSync(small))).toEqual(digest(expected));
      expect(digest((await decode(source(pieces(small, 1)))).bytes)).toEqual(digest(expected));
    });

    it.each([
      ['whole', WHOLE],
      ['in 7-byte chunks', 7],
      ['split at the end of the first member', first.length],
      ['in 64 KiB chunks', 64 * 1024],
    ])('decodes every member, as gunzipSync, %s', async (_name, size) => {
      expect(digest(gunzipSync(multi))).toEqual(digest(content));
      expect(digest((await decode(source(pieces(multi, size)))).bytes)).toEqual(digest(content));
    });

    it('decodes members whose content ends exactly at a chunk boundary', async () => {
      const a = pseudoRandom(GUNZIP_CHUNK_BYTES, 3);
      const b = pseudoRandom(GUNZIP_CHUNK_BYTES, 4);
      const gz = Buffer.concat([gzipSync(a), gzipSync(b), gzipSync(a)]);
      for (const size of [WHOLE, 64 * 1024]) {
        const { bytes, sizes } = await decode(source(pieces(gz, size)));
        expect(digest(bytes)).toEqual(digest(Buffer.concat([a, b, a])));
        expect(sizes).toEqual([GUNZIP_CHUNK_BYTES, GUNZIP_CHUNK_BYTES, GUNZIP_CHUNK_BYTES]);
      }
    });
  });

  describe('bytes after the gzip data', () => {
    // Node's Gunzip ignores zero bytes (padding) after a member; other bytes are read as the
    // header of another member, and fail as such.
    it.each([
      ['zero padding', Buffer.alloc(10), { length: SMALL.length }],
      [
        'text',
        Buffer.from('hello garbage'),
        { error: { code: 'Z_DATA_ERROR', message: 'incorrect header check' } },
      ],
      [
        'a bad gzip header',
        Buffer.from([0x1f, 0x8b, 0xff, 0xff]),
        { error: { code: 'Z_DATA_ERROR', message: 'unknown compression method' } },
      ],
      [
        'a lone gzip magic byte',
        Buffer.from([0x1f]),
        { error: { code: 'Z_BUF_ERROR', message: 'unexpected end of file' } },
      ],
    ])('are handled as by createGunzip: %s', async (_name, trailer, expected) => {
      const gz = Buffer.concat([SMALL_GZ, trailer]);
      for (const parts of [[gz], pieces(gz, 1), [SMALL_GZ, trailer], pieces(gz, 5)]) {
        const streamed = await streamOutcome(parts);
        expect(streamed).toMatchObject(expected);
        expect(await inPlaceOutcome(parts)).toEqual(streamed);
      }
    });

    it('ignores zero padding after a multi-chunk output, in the same or a later source chunk', async () => {
      const padded = Buffer.concat([MIXED_GZ, Buffer.alloc(4096)]);
      expect(digest((await decode(source([padded]))).bytes)).toEqual(digest(MIXED));
      expect(digest((await decode(source([MIXED_GZ, Buffer.alloc(4096)]))).bytes)).toEqual(digest(MIXED));
    });
  });

  describe('truncated input', () => {
    it.each([
      ['after 5 bytes of header', 5],
      ['after the header', 10],
      ['in the deflate data', Math.floor(SMALL_GZ.length / 2)],
      ['before the trailer', SMALL_GZ.length - 8],
      ['in the trailer', SMALL_GZ.length - 1],
    ])('rejects with Z_BUF_ERROR "unexpected end of file" when cut %s', async (_name, at) => {
      for (const size of [1, WHOLE]) {
        const outcome = await inPlaceOutcome(pieces(SMALL_GZ.subarray(0, at), size));
        expect(outcome).toMatchObject({ error: { code: 'Z_BUF_ERROR', message: 'unexpected end of file' } });
        expect(outcome).toEqual(syncOutcome(SMALL_GZ.subarray(0, at)));
      }
    });

    it('yields the data before the cut, then rejects', async () => {
      const copies: Buffer[] = [];
      const cut = MIXED_GZ.subarray(0, Math.floor(MIXED_GZ.length / 2));
      await expect(
        (async () => {
          for await (const chunk of gunzipInPlace(source(pieces(cut, 64 * 1024))))
            copies.push(Buffer.from(chunk));
        })(),
      ).rejects.toMatchObject({ code: 'Z_BUF_ERROR', message: 'unexpected end of file' });
      const got = Buffer.concat(copies);
      expect(copies.length).toBeGreaterThan(1);
      expect(got.equals(MIXED.subarray(0, got.length))).toBe(true);
    });
  });

  describe('corrupt input', () => {
    function corrupt(gz: Buffer, from: number, to: number): Buffer {
      const bad = Buffer.from(gz);
      for (let i = from; i < to; i++) bad[i] = bad[i]! ^ 0xff;
      return bad;
    }

    it.each([
      ['deflate data after the header', corrupt(SMALL_GZ, 10, 20)],
      ['the gzip magic', corrupt(SMALL_GZ, 0, 1)],
      ['the CRC', corrupt(SMALL_GZ, SMALL_GZ.length - 8, SMALL_GZ.length - 7)],
      ['the length in the trailer', corrupt(SMALL_GZ, SMALL_GZ.length - 4, SMALL_GZ.length - 3)],
      ['deflate data in a multi-chunk input', corrupt(COMPRESSIBLE_GZ, 2000, 2010)],
    ])('rejects with a zlib error (code Z_…), as gunzipSync, when corrupt in %s', async (_name, bad) => {
      const expected = syncOutcome(bad);
      for (const size of bad.length > 1000 ? [1000, WHOLE] : [1, 7, WHOLE]) {
        const outcome = await inPlaceOutcome(pieces(bad, size));
        expect(outcome).toEqual(expected);
        expect(outcome).toMatchObject({ error: { code: expect.stringMatching(/^Z_/) as unknown } });
      }
    });

    it('names the errors as zlib does', async () => {
      expect(await inPlaceOutcome([corrupt(SMALL_GZ, 0, 1)])).toMatchObject({
        error: { code: 'Z_DATA_ERROR', message: 'incorrect header check' },
      });
      expect(
        await inPlaceOutcome([corrupt(SMALL_GZ, SMALL_GZ.length - 8, SMALL_GZ.length - 7)]),
      ).toMatchObject({
        error: { code: 'Z_DATA_ERROR', message: 'incorrect data check' },
      });
    });
  });

  describe('chunks read in place', () => {
    const content = pseudoRandom(4 * GUNZIP_CHUNK_BYTES + 100, 5);
    const gz = gzipSync(content);

    it('are at most GUNZIP_CHUNK_BYTES, and all full but the last', async () => {
      const { sizes } = await decode(source(pieces(gz, 64 * 1024)));
      expect(sizes).toEqual([
        GUNZIP_CHUNK_BYTES,
        GUNZIP_CHUNK_BYTES,
        GUNZIP_CHUNK_BYTES,
        GUNZIP_CHUNK_BYTES,
        100,
      ]);
    });

    it('reuse two buffers in turn: a chunk is overwritten once later chunks are read', async () => {
      const chunks = gunzipInPlace(source(pieces(gz, 64 * 1024)));
      const next = async (): Promise<Uint8Array> => {
        const result = await chunks.next();
        expect(result.done).toBe(false);
        return result.value as Uint8Array;
      };
      const first = await next();
      const firstCopy = Buffer.from(first);
      expect(firstCopy.equals(content.subarray(0, GUNZIP_CHUNK_BYTES))).toBe(true);
      const second = await next();
      const third = await next();
      // (Booleans: a failing diff of two 256 KiB ArrayBuffers would take the reporter ages.)
      expect(third.buffer === first.buffer).toBe(true);
      expect(third.byteOffset).toBe(first.byteOffset);
      expect(second.buffer === first.buffer).toBe(false);
      // The first chunk's memory now holds the third chunk: a consumer must copy before going on.
      expect(Buffer.from(first).equals(firstCopy)).toBe(false);
      expect(
        Buffer.from(first).equals(content.subarray(2 * GUNZIP_CHUNK_BYTES, 3 * GUNZIP_CHUNK_BYTES)),
      ).toBe(true);
      await chunks.return(undefined);
    });
  });

  describe('the source', () => {
    /** A source of `parts` that records how far it was read and whether it was closed. */
    function tracked(parts: Uint8Array[], failAfter?: { count: number; error: Error }) {
      const state = { pulled: 0, closed: false };
      async function* generate(): AsyncGenerator<Uint8Array> {
        try {
          for (const part of parts) {
            if (failAfter !== undefined && state.pulled === failAfter.count) throw failAfter.error;
            await new Promise((resolve) => setImmediate(resolve));
            state.pulled++;
            yield part;
          }
        } finally {
          state.closed = true;
        }
      }
      return { state, input: generate() };
    }

    it('is closed when the consumer stops after the first chunk', async () => {
      const parts = pieces(MIXED_GZ, 16 * 1024);
      const { state, input } = tracked(parts);
      let seen = 0;
      for await (const chunk of gunzipInPlace(input)) {
        expect(chunk.length).toBe(GUNZIP_CHUNK_BYTES);
        seen++;
        break;
      }
      expect(seen).toBe(1);
      expect(state.closed).toBe(true);
      expect(state.pulled).toBeLessThan(parts.length);
    });

    it('is stopped through `stop` when the consumer stops while the decode waits for the source', async () => {
      // The source hands out half of the data, then stalls until it is stopped (a registry that
      // sends nothing more: its stream is destroyed by `stop`).
      const gz = gzipSync(pseudoRandom(600 * 1024, 7));
      let release: (() => void) | undefined;
      const stalled = new Promise<void>((resolve) => (release = resolve));
      let closed = false;
      async function* stalling(): AsyncGenerator<Uint8Array> {
        try {
          yield gz.subarray(0, gz.length >> 1);
          await stalled;
          throw new Error('stream destroyed');
        } finally {
          closed = true;
        }
      }
      let stops = 0;
      for await (const chunk of gunzipInPlace(stalling(), () => {
        stops++;
        release!();
      })) {
        expect(chunk.length).toBe(GUNZIP_CHUNK_BYTES);
        break;
      }
      expect(stops).toBe(1);
      expect(closed).toBe(true);
    });

    it('is not stopped through `stop` when the decode ends normally', async () => {
      let stops = 0;
      const copies: Buffer[] = [];
      for await (const chunk of gunzipInPlace(source(pieces(MIXED_GZ, 64 * 1024)), () => stops++))
        copies.push(Buffer.from(chunk));
      expect(Buffer.concat(copies).equals(MIXED)).toBe(true);
      expect(stops).toBe(0);
    });

    it('is closed when the consumer throws', async () => {
      const { state, input } = tracked(pieces(MIXED_GZ, 16 * 1024));
      const oops = new Error('consumer failed');
      await expect(
        (async () => {
          for await (const _chunk of gunzipInPlace(input)) throw oops;
        })(),
      ).rejects.toBe(oops);
      expect(state.closed).toBe(true);
    });

    it('is closed when the consumer stops while the next chunk fails to decode (no unhandled rejection)', async () => {
      // The first chunk is full; the one decoded meanwhile meets the cut.
      const gz = gzipSync(pseudoRandom(GUNZIP_CHUNK_BYTES + 5000, 6));
      const { state, input } = tracked(pieces(gz.subarray(0, gz.length - 100), 1024));
      for await (const _chunk of gunzipInPlace(input)) break;
      expect(state.closed).toBe(true);
    });

    it('is closed when the data is corrupt', async () => {
      const bad = Buffer.concat([SMALL_GZ, Buffer.from('not gzip'), COMPRESSIBLE_GZ]);
      const parts = pieces(bad, 100);
      const { state, input } = tracked(parts);
      await expect(decode(input)).rejects.toMatchObject({
        code: 'Z_DATA_ERROR',
        message: 'incorrect header check',
      });
      expect(state.closed).toBe(true);
      expect(state.pulled).toBeLessThan(parts.length);
    });

    it('error propagates after the chunks decoded before it', async () => {
      const boom = new Error('source failed');
      const parts = pieces(MIXED_GZ, 64 * 1024);
      const { state, input } = tracked(parts, { count: 8, error: boom });
      const copies: Buffer[] = [];
      await expect(
        (async () => {
          for await (const chunk of gunzipInPlace(input)) copies.push(Buffer.from(chunk));
        })(),
      ).rejects.toBe(boom);
      expect(state.pulled).toBe(8);
      expect(state.closed).toBe(true);
      expect(copies.length).toBeGreaterThan(0);
      const got = Buffer.concat(copies);
      expect(got.equals(MIXED.subarray(0, got.length))).toBe(true);
    });

    it('error before any data propagates', async () => {
      const boom = new Error('no data');
      const { input } = tracked([SMALL_GZ], { count: 0, error: boom });
      await expect(decode(input)).rejects.toBe(boom);
    });
  });
});
