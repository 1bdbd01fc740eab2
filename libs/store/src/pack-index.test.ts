import { digestHex, digestOf } from '@stevedore/oci/spec';
import { describe, expect, it } from 'vitest';
import { InvalidFormatError } from './errors.ts';
import {
  decodeIndex,
  encodeIndex,
  IndexMerger,
  indexPacks,
  KeyTable,
  ObjectIndex,
  type IndexEntry,
} from './pack-index.ts';

/** A sha256 to use as a key. */
const hashOf = (i: number): Buffer => Buffer.from(digestHex(digestOf(String(i))), 'hex');
const packA = 'aa'.repeat(16);
const packB = 'bb'.repeat(16);
const entries: IndexEntry[] = [
  { hash: Buffer.alloc(32, 1), pack: packA, offset: 0, stored: 100, raw: 300, codec: 'zstd' },
  { hash: Buffer.alloc(32, 2), pack: packB, offset: 0, stored: 50, raw: 50, codec: 'raw' },
  { hash: Buffer.alloc(32, 3), pack: packA, offset: 100, stored: 2 ** 21, raw: 2 ** 21, codec: 'raw' },
];

describe('index files', () => {
  it('round-trip, with one pack table entry per pack', () => {
    const bytes = encodeIndex(entries);
    expect(bytes.length).toBe(8 + 4 + 2 * 16 + 4 + 3 * 49);
    expect(decodeIndex(bytes, 'index/x.idx')).toEqual(
      entries.map((e) => ({ ...e, hash: Buffer.from(e.hash) })),
    );
  });

  it.each([
    ['bad magic', (b: Buffer) => b.write('X', 0), /bad magic/],
    ['a truncated entry', (b: Buffer) => b, /length does not match 3 entries/],
    [
      'a pack number out of range',
      (b: Buffer) => b.writeUInt32BE(7, 8 + 4 + 32 + 4 + 32),
      /entry 0 refers to pack #7 of 2/,
    ],
    ['an unknown codec', (b: Buffer) => (b[b.length - 1] = 9), /unknown object codec 9/],
  ])('rejects %s (decoded, and added to an ObjectIndex)', (name, mutate, message) => {
    let bytes = Buffer.from(encodeIndex(entries));
    mutate(bytes);
    if (name === 'a truncated entry') bytes = bytes.subarray(0, bytes.length - 1);
    expect(() => decodeIndex(bytes, 'index/x.idx')).toThrow(InvalidFormatError);
    expect(() => decodeIndex(bytes, 'index/x.idx')).toThrow(message);
    expect(() => new ObjectIndex().addIndexFile(bytes, 'index/x.idx')).toThrow(InvalidFormatError);
    expect(() => new ObjectIndex().addIndexFile(bytes, 'index/x.idx')).toThrow(message);
  });
});

describe('ObjectIndex', () => {
  it('finds objects, keeps the first location, and grows past its initial capacity', () => {
    const index = new ObjectIndex();
    index.add(entries);
    index.add([{ ...entries[0]!, pack: packB, offset: 999 }]);
    const many: IndexEntry[] = Array.from({ length: 5000 }, (_, i) => {
      const hash = Buffer.alloc(32);
      hash.writeUInt32BE(i + 1000, 0);
      return { hash, pack: packB, offset: i, stored: 1, raw: 1, codec: 'raw' };
    });
    index.add(many);
    expect(index.size).toBe(5003);
    expect(index.get(Buffer.alloc(32, 1))).toEqual({
      pack: packA,
      offset: 0,
      stored: 100,
      raw: 300,
      codec: 'zstd',
    });
    expect(index.get(many[4999]!.hash)).toEqual({
      pack: packB,
      offset: 4999,
      stored: 1,
      raw: 1,
      codec: 'raw',
    });
    expect(index.has(Buffer.alloc(32, 4))).toBe(false);
  });
});

describe('KeyTable', () => {
  it.each([
    { name: 'sha256-like keys', key: hashOf },
    {
      name: 'keys that differ only where the table does not look (one long probe chain)',
      key: (i: number) => {
        const k = Buffer.alloc(32, 0xee);
        k.writeUInt32BE(i, 12);
        return k;
      },
    },
  ])('finds every key it holds and no other: $name', ({ key }) => {
    const table = new KeyTable();
    for (let i = 0; i < 3000; i++) {
      expect(table.find(key(i))).toBe(-1);
      expect(table.push(key(i))).toBe(i);
    }
    expect(table.size).toBe(3000);
    for (let i = 0; i < 3000; i++) expect(table.find(key(i))).toBe(i);
    expect(table.find(key(3000))).toBe(-1);
    expect(Buffer.from(table.key(1234)).equals(key(1234))).toBe(true);
  });
});

describe('ObjectIndex.addIndexFile', () => {
  it('adds the entries of an encoded index file', () => {
    const index = new ObjectIndex();
    index.addIndexFile(encodeIndex(entries), 'index/x.idx');
    expect(index.size).toBe(3);
    expect(index.get(Buffer.alloc(32, 3))).toEqual({
      pack: packA,
      offset: 100,
      stored: 2 ** 21,
      raw: 2 ** 21,
      codec: 'raw',
    });
    expect(() => index.addIndexFile(Buffer.from('nope'), 'index/y.idx')).toThrow(
      'index index/y.idx: bad magic',
    );
  });

  it('adds large files read in place (at an offset in a larger buffer), first location kept', () => {
    const entry = (i: number, pack: string, offset: number): IndexEntry => ({
      hash: hashOf(i),
      pack,
      offset,
      stored: i + 1,
      raw: 2 * i + 1,
      codec: i % 2 === 0 ? 'zstd' : 'raw',
    });
    // 0..2999 in pack A, then 2000..6999 in pack B: the overlap keeps its pack A location.
    const first = encodeIndex(Array.from({ length: 3000 }, (_, i) => entry(i, packA, i)));
    const second = encodeIndex(Array.from({ length: 5000 }, (_, i) => entry(i + 2000, packB, 7 * i)));
    const inPlace = (file: Buffer): Uint8Array => {
      const backing = Buffer.alloc(file.length + 13, 0xff);
      file.copy(backing, 7);
      return backing.subarray(7, 7 + file.length);
    };
    const index = new ObjectIndex();
    index.addIndexFile(inPlace(first), 'index/1.idx');
    index.addIndexFile(inPlace(second), 'index/2.idx');
    expect(index.size).toBe(7000);
    expect(index.get(hashOf(2500))).toEqual({
      pack: packA,
      offset: 2500,
      stored: 2501,
      raw: 5001,
      codec: 'zstd',
    });
    expect(index.get(hashOf(6999))).toEqual({
      pack: packB,
      offset: 7 * 4999,
      stored: 7000,
      raw: 13999,
      codec: 'raw',
    });
    for (let i = 0; i < 7000; i++) expect(index.has(hashOf(i))).toBe(true);
    expect(index.has(hashOf(7000))).toBe(false);
  });
});

describe('IndexMerger', () => {
  const at = (i: number, pack: string, offset: number): IndexEntry => ({
    hash: hashOf(i),
    pack,
    offset,
    stored: 10,
    raw: 20,
    codec: 'zstd',
  });

  it('keeps every entry, duplicates too, in files of at most maxBytes', () => {
    const first = encodeIndex([at(1, packA, 0), at(2, packA, 10), at(3, packB, 0)]);
    // Object 2 again, in pack C only (a concurrent import stored it too): C stays listed.
    const packC = 'cc'.repeat(16);
    const second = encodeIndex([at(2, packC, 10), at(4, packB, 30)]);
    // Room for two entries and two packs per file (8 + 4 + 2 * 16 + 4 + 2 * 49), so a third entry
    // starts the next file.
    const merger = new IndexMerger(146);
    merger.add(first, 'index/1.idx');
    expect(merger.takeFull()).toHaveLength(1); // objects 1 and 2, filled when 3 came
    merger.add(second, 'index/2.idx');
    expect(merger.entries).toBe(5);
    const files = merger.finish();
    expect(files).toHaveLength(2); // 3 and 2 (packs B and C), then 4
    expect(files.map((f) => indexPacks(f, 'merged'))).toEqual([[packB, packC], [packB]]);
    const entries = files.flatMap((f) => decodeIndex(f, 'merged'));
    expect(entries.map((e) => [Buffer.from(e.hash).toString('hex'), e.pack, e.offset])).toEqual([
      [hashOf(3).toString('hex'), packB, 0],
      [hashOf(2).toString('hex'), packC, 10],
      [hashOf(4).toString('hex'), packB, 30],
    ]);
    expect(merger.finish()).toEqual([]);
  });

  it('names a bad input, and gives nothing for no input', () => {
    const merger = new IndexMerger(1 << 20);
    expect(() => merger.add(Buffer.from('SDINDEX\x02'), 'index/bad.idx')).toThrow(
      /index index\/bad.idx: bad magic/,
    );
    expect(merger.finish()).toEqual([]);
  });
});
