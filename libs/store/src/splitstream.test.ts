import { describe, expect, it } from 'vitest';
import { InvalidFormatError } from './errors.ts';
import {
  MAX_INLINE_RECORD,
  SplitstreamDecoder,
  SplitstreamEncoder,
  type SplitRecord,
} from './splitstream.ts';

const params = { inlineMax: 64, chunkSize: 1000 };
const h = (n: number): Buffer => Buffer.alloc(32, n);

function encode(ops: (e: SplitstreamEncoder) => void): Buffer {
  const e = new SplitstreamEncoder(params);
  ops(e);
  return e.take(true);
}

function decode(bytes: Buffer, chunk = bytes.length): SplitRecord[] {
  const d = new SplitstreamDecoder('test.split');
  const out: SplitRecord[] = [];
  for (let i = 0; i < bytes.length; i += chunk) {
    for (const r of d.push(bytes.subarray(i, i + chunk))) {
      out.push(r.kind === 'inline' ? { kind: 'inline', bytes: Buffer.from(r.bytes) } : r);
    }
  }
  d.finish();
  expect(d.params).toEqual(params);
  return out;
}

function hexify(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(hexify);
  return v;
}

/** Merges consecutive inline pieces, as the decoder may split them anywhere. */
function merged(records: SplitRecord[]): unknown[] {
  const out: unknown[] = [];
  for (const r of records) {
    const last = out.at(-1) as { kind: string; bytes: string } | undefined;
    if (r.kind === 'inline' && last?.kind === 'inline') last.bytes += Buffer.from(r.bytes).toString('hex');
    else if (r.kind === 'inline') out.push({ kind: 'inline', bytes: Buffer.from(r.bytes).toString('hex') });
    else out.push(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, hexify(v)])));
  }
  return out;
}

describe('splitstream format', () => {
  const bytes = encode((e) => {
    e.inline(Buffer.from('header'));
    e.inline(Buffer.from('+more'));
    e.object(999, h(1));
    e.chunked(2500, [h(2), h(3), h(4)]);
    e.inline(Buffer.alloc(3, 0));
    e.end(h(9), 123456789);
  });

  it('pins the encoding of a small stream', () => {
    expect(bytes.subarray(0, 10).toString('latin1')).toBe('SDSPLIT\x01\x40\xe8');
    expect(bytes.length).toBe(
      8 + 1 + 2 + (1 + 1 + 11) + (1 + 2 + 32) + (1 + 2 + 96) + (1 + 1 + 3) + (1 + 32 + 4),
    );
  });

  it.each([1, 2, 13, 64, bytes.length])('decodes the same records in %i-byte chunks', (chunk) => {
    expect(merged(decode(bytes, chunk))).toEqual([
      { kind: 'inline', bytes: Buffer.from('header+more').toString('hex') },
      { kind: 'object', size: 999, hash: h(1).toString('hex') },
      { kind: 'chunked', size: 2500, hashes: [h(2), h(3), h(4)].map((x) => x.toString('hex')) },
      { kind: 'inline', bytes: '000000' },
      { kind: 'end', diffID: h(9).toString('hex'), size: 123456789 },
    ]);
  });

  it('cuts long inline runs into bounded records', () => {
    const big = Buffer.alloc(MAX_INLINE_RECORD * 2 + 5, 7);
    const b = encode((e) => {
      e.inline(big);
      e.end(h(0), big.length);
    });
    const inline = decode(b).filter((r) => r.kind === 'inline');
    // Records of exactly MAX_INLINE_RECORD bytes: the decoder hands each out in one piece here.
    expect(inline.map((r) => (r.kind === 'inline' ? r.bytes.length : 0))).toEqual([
      MAX_INLINE_RECORD,
      MAX_INLINE_RECORD,
      5,
    ]);
    expect(
      Buffer.concat(inline.map((r) => (r.kind === 'inline' ? r.bytes : Buffer.alloc(0)))).equals(big),
    ).toBe(true);
  });

  it('writes object records before their hashes and hands out bytes up to the first empty placeholder', () => {
    const e = new SplitstreamEncoder(params);
    e.inline(Buffer.from('header'));
    e.inline(Buffer.from('+more'));
    e.objectLater(999);
    e.chunkedLater(2500);
    e.inline(Buffer.alloc(3, 0));
    // Nothing past the first placeholder: the magic, the parameters and the first inline record.
    const head = e.take();
    expect(head.length).toBe(8 + 1 + 2 + (1 + 1 + 11) + (1 + 2));
    expect(e.unfilled).toBe(4);
    e.fill(h(1));
    e.fill(h(2));
    expect(e.readyBytes).toBe(32 + (1 + 2) + 32);
    e.fill(h(3));
    e.fill(h(4));
    expect(e.unfilled).toBe(0);
    // The open inline run waits for its header until it ends.
    expect(e.readyBytes).toBe(32 + (1 + 2) + 96);
    e.end(h(9), 123456789);
    expect(Buffer.concat([head, e.take(true)]).equals(bytes)).toBe(true);
  });

  it('refuses to end with placeholders left', () => {
    const e = new SplitstreamEncoder(params);
    e.objectLater(10);
    expect(() => e.take(true)).toThrow('1 object hashes still missing');
    expect(() => new SplitstreamEncoder(params).fill(h(1))).toThrow('no placeholder to fill');
  });

  it('refuses a chunked record with the wrong number of hashes', () => {
    expect(() => encode((e) => e.chunked(2500, [h(1)]))).toThrow('needs 3 hashes');
  });

  it.each([
    ['bad magic', Buffer.from('NOTSPLIT\x40\x01'), /bad magic/],
    ['a missing END record', bytes.subarray(0, bytes.length - 37), /truncated \(no END record\)/],
    ['bytes after END', Buffer.concat([bytes, Buffer.from([1])]), /bytes after the END record/],
    [
      'an unknown tag',
      Buffer.concat([bytes.subarray(0, 11), Buffer.from([0x7f])]),
      /unknown record tag 0x7f/,
    ],
    ['an object larger than a chunk', encode((e) => e.object(1001, h(1))), /exceeds the chunk size/],
  ])('rejects %s naming the splitstream', (_name, b, message) => {
    expect(() => decode(b)).toThrow(InvalidFormatError);
    expect(() => decode(b)).toThrow(message);
  });
});
