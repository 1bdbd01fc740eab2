/**
 * Object locations: the index file format and the in-memory index built from all index files.
 * Specified in docs/store-format.md ("Index files"). Pure: loading and writing is objects.ts.
 *
 *     magic "SDINDEX\x01"
 *     u32 packCount, packCount * pack id[16]
 *     u32 entryCount, entryCount * entry[49]:
 *       sha256[32] | u32 pack (number in the pack table) | u32 offset | u32 stored | u32 raw | u8 codec
 *
 * Integers are big-endian. Offsets and lengths fit in u32: packs are at most PACK_CAPACITY bytes.
 *
 * In memory nothing is kept as a JavaScript object per object: index entries are built in the file
 * format ({@link IndexBuilder}) and looked up in typed arrays ({@link KeyTable}, {@link ObjectIndex}),
 * so a store of a million objects costs the garbage collector a few arrays, not a million strings.
 */
import { InvalidFormatError } from './errors.ts';
import { HASH_BYTES } from './splitstream.ts';

export const INDEX_MAGIC = Buffer.from('SDINDEX\x01', 'latin1');
/** Pack ids are 16 random bytes (hex in keys). */
export const PACK_ID_BYTES = 16;
const ENTRY_BYTES = HASH_BYTES + 4 + 4 + 4 + 4 + 1;

/** How an object's bytes are stored. */
export type Codec = 'raw' | 'zstd';
const CODEC_RAW = 0;
const CODEC_ZSTD = 1;

export function codecByte(codec: Codec): number {
  return codec === 'zstd' ? CODEC_ZSTD : CODEC_RAW;
}

export function codecOf(byte: number): Codec {
  switch (byte) {
    case CODEC_RAW:
      return 'raw';
    case CODEC_ZSTD:
      return 'zstd';
    default:
      throw new InvalidFormatError(`unknown object codec ${byte}`);
  }
}

/** Where an object is: `stored` bytes at `offset` in pack `pack` (its id in hex). */
export interface ObjectLocation {
  readonly pack: string;
  readonly offset: number;
  /** Bytes as stored (after compression). */
  readonly stored: number;
  /** Bytes of the object itself. */
  readonly raw: number;
  readonly codec: Codec;
}

/** One index entry: an object's hash (raw 32 bytes) and location. */
export interface IndexEntry extends ObjectLocation {
  readonly hash: Uint8Array;
}

const HEADER_BYTES = INDEX_MAGIC.length + 4;
/** Initial capacity (rows) of the builders and tables; they double as needed. */
const INITIAL_CAPACITY = 1024;

/**
 * Builds one import's index file as entries come: 49 bytes per entry in one growing buffer, and
 * a table of pack ids.
 */
export class IndexBuilder {
  readonly #packs = new Map<string, number>();
  #buf = Buffer.allocUnsafe(INITIAL_CAPACITY * ENTRY_BYTES);
  #count = 0;

  /** Entries added. */
  get length(): number {
    return this.#count;
  }

  add(hash: Uint8Array, pack: string, offset: number, stored: number, raw: number, codec: Codec): void {
    let packNumber = this.#packs.get(pack);
    if (packNumber === undefined) this.#packs.set(pack, (packNumber = this.#packs.size));
    if ((this.#count + 1) * ENTRY_BYTES > this.#buf.length) {
      const next = Buffer.allocUnsafe(this.#buf.length * 2);
      this.#buf.copy(next, 0, 0, this.#count * ENTRY_BYTES);
      this.#buf = next;
    }
    let pos = this.#count * ENTRY_BYTES;
    this.#buf.set(hash, pos);
    pos += HASH_BYTES;
    pos = this.#buf.writeUInt32BE(packNumber, pos);
    pos = this.#buf.writeUInt32BE(offset, pos);
    pos = this.#buf.writeUInt32BE(stored, pos);
    pos = this.#buf.writeUInt32BE(raw, pos);
    this.#buf[pos] = codecByte(codec);
    this.#count++;
  }

  /** Size of the file {@link IndexBuilder.encode} would return now. */
  get encodedBytes(): number {
    return HEADER_BYTES + this.#packs.size * PACK_ID_BYTES + 4 + this.#count * ENTRY_BYTES;
  }

  /** True when `pack` is in the pack table already. */
  hasPack(pack: string): boolean {
    return this.#packs.has(pack);
  }

  /** The index file. */
  encode(): Buffer {
    const out = Buffer.allocUnsafe(this.encodedBytes);
    let pos = INDEX_MAGIC.copy(out);
    pos = out.writeUInt32BE(this.#packs.size, pos);
    for (const id of this.#packs.keys()) pos += Buffer.from(id, 'hex').copy(out, pos);
    pos = out.writeUInt32BE(this.#count, pos);
    this.#buf.copy(out, pos, 0, this.#count * ENTRY_BYTES);
    return out;
  }
}

/** Encodes entries into an index file. */
export function encodeIndex(entries: readonly IndexEntry[]): Buffer {
  const b = new IndexBuilder();
  for (const e of entries) b.add(e.hash, e.pack, e.offset, e.stored, e.raw, e.codec);
  return b.encode();
}

/** An index file's validated header: its pack table, and where its `count` entries start. */
interface IndexLayout {
  readonly buf: Buffer;
  readonly packs: readonly string[];
  readonly count: number;
  readonly entriesAt: number;
}

/** Validates an index file's framing; `source` (its key) is named in errors. */
function indexLayout(data: Uint8Array, source: string): IndexLayout {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (buf.length < HEADER_BYTES + 4 || !buf.subarray(0, INDEX_MAGIC.length).equals(INDEX_MAGIC)) {
    throw badIndex(source, 'bad magic (not an index file, or an unknown version)');
  }
  let pos = INDEX_MAGIC.length;
  const packCount = buf.readUInt32BE(pos);
  pos += 4;
  if (buf.length < pos + packCount * PACK_ID_BYTES + 4) throw badIndex(source, 'truncated pack table');
  const packs: string[] = [];
  for (let i = 0; i < packCount; i++) {
    packs.push(buf.toString('hex', pos, pos + PACK_ID_BYTES));
    pos += PACK_ID_BYTES;
  }
  const count = buf.readUInt32BE(pos);
  pos += 4;
  if (buf.length !== pos + count * ENTRY_BYTES) {
    throw badIndex(source, `length does not match ${count} entries`);
  }
  return { buf, packs, count, entriesAt: pos };
}

function badIndex(source: string, what: string): InvalidFormatError {
  return new InvalidFormatError(`index ${source}: ${what}`);
}

/** The pack number of entry `i` at `pos`, checked against the pack table. */
function entryPack(layout: IndexLayout, source: string, i: number, pos: number): number {
  const packIndex = layout.buf.readUInt32BE(pos + HASH_BYTES);
  if (packIndex >= layout.packs.length) {
    throw badIndex(source, `entry ${i} refers to pack #${packIndex} of ${layout.packs.length}`);
  }
  return packIndex;
}

/**
 * Validates an index file and calls `each` per entry (the hash is a view into `data`). `source`
 * (its key) is named in errors.
 */
function readIndex(
  data: Uint8Array,
  source: string,
  each: (hash: Uint8Array, pack: string, offset: number, stored: number, raw: number, codec: Codec) => void,
): void {
  const layout = indexLayout(data, source);
  const { buf } = layout;
  for (let i = 0, pos = layout.entriesAt; i < layout.count; i++, pos += ENTRY_BYTES) {
    const pack = layout.packs[entryPack(layout, source, i, pos)]!;
    each(
      buf.subarray(pos, pos + HASH_BYTES),
      pack,
      buf.readUInt32BE(pos + HASH_BYTES + 4),
      buf.readUInt32BE(pos + HASH_BYTES + 8),
      buf.readUInt32BE(pos + HASH_BYTES + 12),
      codecOf(buf[pos + HASH_BYTES + 16]!),
    );
  }
}

/** Decodes an index file; `source` (its key) is named in errors. */
export function decodeIndex(data: Uint8Array, source: string): IndexEntry[] {
  const entries: IndexEntry[] = [];
  readIndex(data, source, (hash, pack, offset, stored, raw, codec) => {
    entries.push({ hash, pack, offset, stored, raw, codec });
  });
  return entries;
}

function word(b: Uint8Array, at: number): number {
  return b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24);
}

/** Multiplicative hashing constants (2^32 / golden ratio, and murmur3's): spread any key bits. */
const MIX_A = 0x9e3779b1;
const MIX_B = 0x85ebca6b;

/**
 * Rows of 32-byte keys (sha256 hashes) with lookup by key: the keys back to back in one byte
 * array, an open-addressing table (linear probing, at most half full) of row numbers in an
 * Int32Array. About 40 bytes per key and no object per key.
 */
export class KeyTable {
  #keys = new Uint8Array(INITIAL_CAPACITY * HASH_BYTES);
  #slots = new Int32Array(INITIAL_CAPACITY * 2);
  #bits = Math.log2(INITIAL_CAPACITY * 2);
  #size = 0;

  /** Keys added. */
  get size(): number {
    return this.#size;
  }

  /** The row of the key at `at` in `bytes` (the whole of `bytes` by default), or -1. */
  find(bytes: Uint8Array, at = 0): number {
    const mask = this.#slots.length - 1;
    for (let i = this.#slot(bytes, at); ; i = (i + 1) & mask) {
      const r = this.#slots[i]!;
      if (r === 0) return -1;
      if (this.#equals(r - 1, bytes, at)) return r - 1;
    }
  }

  /** Adds the key at `at` in `bytes` (the caller knows it is absent) and returns its row. */
  push(bytes: Uint8Array, at = 0): number {
    const row = this.#size;
    this.reserve(row + 1);
    this.#keys.set(bytes.subarray(at, at + HASH_BYTES), row * HASH_BYTES);
    this.#size++;
    this.#place(row);
    return row;
  }

  /** Makes room for `rows` keys in all, at once (a whole index file, not a doubling per 2x). */
  reserve(rows: number): void {
    if (rows * HASH_BYTES > this.#keys.length) {
      const next = new Uint8Array(Math.max(rows, (this.#keys.length / HASH_BYTES) * 2) * HASH_BYTES);
      next.set(this.#keys.subarray(0, this.#size * HASH_BYTES));
      this.#keys = next;
    }
    if (rows * 2 > this.#slots.length) {
      let slots = this.#slots.length * 2;
      while (rows * 2 > slots) slots *= 2;
      this.#rehash(slots);
    }
  }

  /** The key of `row` (a view: valid until the next push). */
  key(row: number): Uint8Array {
    return this.#keys.subarray(row * HASH_BYTES, (row + 1) * HASH_BYTES);
  }

  #slot(key: Uint8Array, at: number): number {
    const h = Math.imul(word(key, at), MIX_A) ^ Math.imul(word(key, at + HASH_BYTES - 4), MIX_B);
    return Math.imul(h, MIX_A) >>> (32 - this.#bits);
  }

  #equals(row: number, key: Uint8Array, at: number): boolean {
    const keys = this.#keys;
    const base = row * HASH_BYTES;
    for (let i = 0; i < HASH_BYTES; i++) if (keys[base + i] !== key[at + i]) return false;
    return true;
  }

  #place(row: number): void {
    const mask = this.#slots.length - 1;
    let i = this.#slot(this.#keys, row * HASH_BYTES);
    while (this.#slots[i] !== 0) i = (i + 1) & mask;
    this.#slots[i] = row + 1;
  }

  #rehash(slots: number): void {
    this.#slots = new Int32Array(slots);
    this.#bits = Math.log2(slots);
    for (let row = 0; row < this.#size; row++) this.#place(row);
  }
}

/**
 * All known object locations, in columns: a {@link KeyTable} of hashes and five typed-array
 * columns, about 60 bytes per object.
 */
export class ObjectIndex {
  readonly #keys = new KeyTable();
  #packIds: string[] = [];
  #packNumbers = new Map<string, number>();
  #pack = new Uint32Array(INITIAL_CAPACITY);
  #offset = new Uint32Array(INITIAL_CAPACITY);
  #stored = new Uint32Array(INITIAL_CAPACITY);
  #raw = new Uint32Array(INITIAL_CAPACITY);
  #codec = new Uint8Array(INITIAL_CAPACITY);

  get size(): number {
    return this.#keys.size;
  }

  has(hash: Uint8Array): boolean {
    return this.#keys.find(hash) >= 0;
  }

  get(hash: Uint8Array): ObjectLocation | undefined {
    const row = this.#keys.find(hash);
    if (row < 0) return undefined;
    return {
      pack: this.#packIds[this.#pack[row]!]!,
      offset: this.#offset[row]!,
      stored: this.#stored[row]!,
      raw: this.#raw[row]!,
      codec: codecOf(this.#codec[row]!),
    };
  }

  /** Adds entries; an object already known keeps its first location. */
  add(entries: Iterable<IndexEntry>): void {
    for (const e of entries) this.#add(e.hash, e.pack, e.offset, e.stored, e.raw, e.codec);
  }

  /**
   * Adds the entries of an index file (validated; `source` is named in errors): room for all of
   * them first, then each read in place, with no object or string per entry.
   */
  addIndexFile(data: Uint8Array, source: string): void {
    const layout = indexLayout(data, source);
    const { buf } = layout;
    const numbers = layout.packs.map((id) => this.#packNumber(id));
    this.#keys.reserve(this.#keys.size + layout.count);
    this.#ensure(this.#keys.size + layout.count);
    for (let i = 0, pos = layout.entriesAt; i < layout.count; i++, pos += ENTRY_BYTES) {
      const pack = numbers[entryPack(layout, source, i, pos)]!;
      const codec = buf[pos + HASH_BYTES + 16]!;
      codecOf(codec); // validates it
      if (this.#keys.find(buf, pos) >= 0) continue;
      this.#set(
        this.#keys.push(buf, pos),
        pack,
        buf.readUInt32BE(pos + HASH_BYTES + 4),
        buf.readUInt32BE(pos + HASH_BYTES + 8),
        buf.readUInt32BE(pos + HASH_BYTES + 12),
        codec,
      );
    }
  }

  #add(hash: Uint8Array, pack: string, offset: number, stored: number, raw: number, codec: Codec): void {
    if (this.#keys.find(hash) >= 0) return;
    const row = this.#keys.push(hash);
    this.#ensure(row + 1);
    this.#set(row, this.#packNumber(pack), offset, stored, raw, codecByte(codec));
  }

  #set(row: number, pack: number, offset: number, stored: number, raw: number, codec: number): void {
    this.#pack[row] = pack;
    this.#offset[row] = offset;
    this.#stored[row] = stored;
    this.#raw[row] = raw;
    this.#codec[row] = codec;
  }

  #packNumber(id: string): number {
    let n = this.#packNumbers.get(id);
    if (n === undefined) {
      n = this.#packIds.length;
      this.#packIds.push(id);
      this.#packNumbers.set(id, n);
    }
    return n;
  }

  #ensure(rows: number): void {
    if (rows <= this.#pack.length) return;
    const capacity = Math.max(rows, this.#pack.length * 2);
    const grow = <T extends Uint32Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(capacity);
      b.set(a);
      return b;
    };
    this.#pack = grow(this.#pack, (n) => new Uint32Array(n));
    this.#offset = grow(this.#offset, (n) => new Uint32Array(n));
    this.#stored = grow(this.#stored, (n) => new Uint32Array(n));
    this.#raw = grow(this.#raw, (n) => new Uint32Array(n));
    this.#codec = grow(this.#codec, (n) => new Uint8Array(n));
  }
}

/**
 * Merges index files into as few as possible (index compaction, compaction.ts), in files of at
 * most `maxBytes`. Every entry is kept, duplicates too (two imports that stored one object): a
 * pack stays listed by an index file as long as it exists, which is what tells a published pack
 * from one a crashed import left behind (orphans.ts). Readers keep an object's first location.
 */
export class IndexMerger {
  readonly #maxBytes: number;
  readonly #files: Buffer[] = [];
  #current = new IndexBuilder();
  #entries = 0;

  constructor(maxBytes: number) {
    if (maxBytes < HEADER_BYTES + 4 + PACK_ID_BYTES + ENTRY_BYTES) {
      throw new Error(`index files of ${maxBytes} bytes hold no entry`);
    }
    this.#maxBytes = maxBytes;
  }

  /** Entries added. */
  get entries(): number {
    return this.#entries;
  }

  /** Adds the entries of an index file (validated; `source`, its key, is named in errors). */
  add(data: Uint8Array, source: string): void {
    readIndex(data, source, (hash, pack, offset, stored, raw, codec) =>
      this.addEntry(hash, pack, offset, stored, raw, codec),
    );
  }

  /** Adds one entry (garbage collection writes the live objects' entries this way). */
  addEntry(hash: Uint8Array, pack: string, offset: number, stored: number, raw: number, codec: Codec): void {
    const grows = ENTRY_BYTES + (this.#current.hasPack(pack) ? 0 : PACK_ID_BYTES);
    if (this.#current.length > 0 && this.#current.encodedBytes + grows > this.#maxBytes) {
      this.#files.push(this.#current.encode());
      this.#current = new IndexBuilder();
    }
    this.#current.add(hash, pack, offset, stored, raw, codec);
    this.#entries++;
  }

  /** The merged index files filled since the last call (they can be written while more are added). */
  takeFull(): Buffer[] {
    return this.#files.splice(0);
  }

  /** The merged index files not taken yet, the last one partly filled (none when nothing was added). */
  finish(): Buffer[] {
    const files = this.takeFull();
    if (this.#current.length > 0) files.push(this.#current.encode());
    this.#current = new IndexBuilder();
    return files;
  }
}

/** The pack ids an index file lists (validated framing; `source`, its key, is named in errors). */
export function indexPacks(data: Uint8Array, source: string): readonly string[] {
  return indexLayout(data, source).packs;
}
