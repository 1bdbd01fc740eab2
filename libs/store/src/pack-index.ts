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

/** Encodes the entries of one import into an index file. */
export function encodeIndex(entries: readonly IndexEntry[]): Buffer {
  const packs = new Map<string, number>();
  for (const e of entries) if (!packs.has(e.pack)) packs.set(e.pack, packs.size);
  const out = Buffer.allocUnsafe(
    INDEX_MAGIC.length + 4 + packs.size * PACK_ID_BYTES + 4 + entries.length * ENTRY_BYTES,
  );
  let pos = INDEX_MAGIC.copy(out);
  pos = out.writeUInt32BE(packs.size, pos);
  for (const id of packs.keys()) pos += Buffer.from(id, 'hex').copy(out, pos);
  pos = out.writeUInt32BE(entries.length, pos);
  for (const e of entries) {
    out.set(e.hash, pos);
    pos += HASH_BYTES;
    pos = out.writeUInt32BE(packs.get(e.pack)!, pos);
    pos = out.writeUInt32BE(e.offset, pos);
    pos = out.writeUInt32BE(e.stored, pos);
    pos = out.writeUInt32BE(e.raw, pos);
    pos = out.writeUInt8(codecByte(e.codec), pos);
  }
  return out;
}

/** Decodes an index file; `source` (its key) is named in errors. */
export function decodeIndex(data: Uint8Array, source: string): IndexEntry[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  const bad = (what: string): InvalidFormatError => new InvalidFormatError(`index ${source}: ${what}`);
  if (buf.length < INDEX_MAGIC.length + 8 || !buf.subarray(0, INDEX_MAGIC.length).equals(INDEX_MAGIC)) {
    throw bad('bad magic (not an index file, or an unknown version)');
  }
  let pos = INDEX_MAGIC.length;
  const packCount = buf.readUInt32BE(pos);
  pos += 4;
  if (buf.length < pos + packCount * PACK_ID_BYTES + 4) throw bad('truncated pack table');
  const packs: string[] = [];
  for (let i = 0; i < packCount; i++) {
    packs.push(buf.toString('hex', pos, pos + PACK_ID_BYTES));
    pos += PACK_ID_BYTES;
  }
  const count = buf.readUInt32BE(pos);
  pos += 4;
  if (buf.length !== pos + count * ENTRY_BYTES) throw bad(`length does not match ${count} entries`);
  const entries: IndexEntry[] = [];
  for (let i = 0; i < count; i++) {
    const hash = buf.subarray(pos, pos + HASH_BYTES);
    pos += HASH_BYTES;
    const packIndex = buf.readUInt32BE(pos);
    const pack = packs[packIndex];
    if (pack === undefined) throw bad(`entry ${i} refers to pack #${packIndex} of ${packCount}`);
    entries.push({
      hash,
      pack,
      offset: buf.readUInt32BE(pos + 4),
      stored: buf.readUInt32BE(pos + 8),
      raw: buf.readUInt32BE(pos + 12),
      codec: codecOf(buf[pos + 16]!),
    });
    pos += 17;
  }
  return entries;
}

/** Initial capacity of the columnar arrays; they double as needed. */
const INITIAL_CAPACITY = 1024;

/**
 * All known object locations, in columns so a million objects cost about 100 bytes each (a Map
 * from the hash as a 32-char latin1 string to a row, and five typed-array columns).
 */
export class ObjectIndex {
  #rows = new Map<string, number>();
  #packIds: string[] = [];
  #packNumbers = new Map<string, number>();
  #pack = new Uint32Array(INITIAL_CAPACITY);
  #offset = new Uint32Array(INITIAL_CAPACITY);
  #stored = new Uint32Array(INITIAL_CAPACITY);
  #raw = new Uint32Array(INITIAL_CAPACITY);
  #codec = new Uint8Array(INITIAL_CAPACITY);

  get size(): number {
    return this.#rows.size;
  }

  has(hash: Uint8Array): boolean {
    return this.#rows.has(hashKey(hash));
  }

  /** {@link ObjectIndex.has} by {@link hashKey}. */
  hasKey(key: string): boolean {
    return this.#rows.has(key);
  }

  get(hash: Uint8Array): ObjectLocation | undefined {
    const row = this.#rows.get(hashKey(hash));
    if (row === undefined) return undefined;
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
    for (const e of entries) {
      const key = hashKey(e.hash);
      if (this.#rows.has(key)) continue;
      const row = this.#rows.size;
      this.#ensure(row + 1);
      this.#rows.set(key, row);
      this.#pack[row] = this.#packNumber(e.pack);
      this.#offset[row] = e.offset;
      this.#stored[row] = e.stored;
      this.#raw[row] = e.raw;
      this.#codec[row] = codecByte(e.codec);
    }
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

/** Map key of a raw hash: 32 one-byte characters (compact V8 one-byte string). */
export function hashKey(hash: Uint8Array): string {
  return Buffer.from(hash.buffer, hash.byteOffset, hash.length).toString('latin1');
}
