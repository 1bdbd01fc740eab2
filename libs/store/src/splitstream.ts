/**
 * The splitstream format: a layer tar with its file contents replaced by object references.
 * Specified in docs/store-format.md ("Splitstreams"); this module is the pure encoder and decoder of
 * the uncompressed record stream (the store keeps it zstd-compressed).
 *
 *     magic "SDSPLIT\x01" | uvarint inlineMax | uvarint chunkSize | record* | END
 *     INLINE  0x01 uvarint length, bytes          headers, padding, small or metadata content
 *     OBJECT  0x02 uvarint size, sha256[32]       content of `size` <= chunkSize bytes, one object
 *     CHUNKED 0x03 uvarint size, sha256[32] * n   n = ceil(size / chunkSize) chunk objects
 *     END     0x00 sha256[32] diffID, uvarint tar size
 */
import { InvalidFormatError } from './errors.ts';

export const SPLITSTREAM_MAGIC = Buffer.from('SDSPLIT\x01', 'latin1');
/** Raw sha256 length. */
export const HASH_BYTES = 32;
/** Inline records are cut at this size so a decoder never needs more than this in memory. */
export const MAX_INLINE_RECORD = 1 << 20;

const TAG_END = 0x00;
const TAG_INLINE = 0x01;
const TAG_OBJECT = 0x02;
const TAG_CHUNKED = 0x03;
/** A uvarint of a value below 2^53 takes at most 8 bytes. */
const MAX_UVARINT_BYTES = 8;

export type SplitRecord =
  | { readonly kind: 'inline'; readonly bytes: Uint8Array }
  | { readonly kind: 'object'; readonly size: number; readonly hash: Uint8Array }
  | { readonly kind: 'chunked'; readonly size: number; readonly hashes: readonly Uint8Array[] }
  | { readonly kind: 'end'; readonly diffID: Uint8Array; readonly size: number };

export interface SplitstreamParams {
  readonly inlineMax: number;
  readonly chunkSize: number;
}

/** Number of chunk objects for content of `size` bytes. */
export function chunkCount(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

function writeUvarint(out: Buffer, pos: number, value: number): number {
  while (value >= 0x80) {
    out[pos++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[pos++] = value;
  return pos;
}

/** An INLINE record's header: tag and a uvarint of at most MAX_INLINE_RECORD (3 bytes). */
const INLINE_HEADER_MAX = 4;
/** First size of the encoder's buffer; it doubles as needed. */
const INITIAL_ENCODER_BYTES = 64 * 1024;

function uvarintLength(value: number): number {
  let n = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 0x80)) n++;
  return n;
}

/**
 * Encodes records into one growing buffer; {@link SplitstreamEncoder.take} hands out what is
 * ready. Consecutive inline bytes are merged into one record (cut at MAX_INLINE_RECORD).
 *
 * Object records may be written before their hashes are known ({@link SplitstreamEncoder.objectLater},
 * {@link SplitstreamEncoder.chunkedLater}): they get placeholders, filled in record order by
 * {@link SplitstreamEncoder.fill}, and `take` stops at the first placeholder still empty. The
 * importer writes each record when its entry starts and fills the hashes when the workers return
 * them, so nothing is queued but these bytes.
 */
export class SplitstreamEncoder {
  readonly params: SplitstreamParams;
  #buf = Buffer.allocUnsafe(INITIAL_ENCODER_BYTES);
  #len = 0;
  /** Where the open inline run's reserved header starts (-1: none). */
  #runStart = -1;
  /** Positions of placeholders not filled yet, in order (from #placeholderHead). */
  #placeholders: number[] = [];
  #placeholderHead = 0;

  constructor(params: SplitstreamParams) {
    this.params = params;
    this.#reserve(SPLITSTREAM_MAGIC.length + 2 * MAX_UVARINT_BYTES);
    this.#len += SPLITSTREAM_MAGIC.copy(this.#buf, this.#len);
    this.#len = writeUvarint(this.#buf, this.#len, params.inlineMax);
    this.#len = writeUvarint(this.#buf, this.#len, params.chunkSize);
  }

  /** Encoded bytes ready to be taken (before the first empty placeholder or the open inline run). */
  get readyBytes(): number {
    return this.#ready(false);
  }

  /** Encoded bytes not yet taken, ready or not. */
  get pendingBytes(): number {
    return this.#len;
  }

  /** Placeholders written and not filled yet. */
  get unfilled(): number {
    return this.#placeholders.length - this.#placeholderHead;
  }

  /** Appends inline bytes (copied). */
  inline(bytes: Uint8Array): void {
    let pos = 0;
    while (pos < bytes.length) {
      if (this.#runStart < 0) {
        this.#reserve(INLINE_HEADER_MAX);
        this.#runStart = this.#len;
        this.#len += INLINE_HEADER_MAX;
      }
      const room = MAX_INLINE_RECORD - (this.#len - this.#runStart - INLINE_HEADER_MAX);
      const n = Math.min(room, bytes.length - pos);
      this.#reserve(n);
      this.#buf.set(bytes.subarray(pos, pos + n), this.#len);
      this.#len += n;
      pos += n;
      if (n === room) this.#closeRun();
    }
  }

  object(size: number, hash: Uint8Array): void {
    this.objectLater(size);
    this.fill(hash);
  }

  chunked(size: number, hashes: readonly Uint8Array[]): void {
    if (hashes.length !== chunkCount(size, this.params.chunkSize)) {
      throw new Error(
        `chunked record of ${size} bytes needs ${chunkCount(size, this.params.chunkSize)} hashes`,
      );
    }
    this.chunkedLater(size);
    for (const h of hashes) this.fill(h);
  }

  /** An OBJECT record whose hash comes later (one placeholder). */
  objectLater(size: number): void {
    this.#record(TAG_OBJECT, size, 1);
  }

  /** A CHUNKED record whose hashes come later (one placeholder per chunk). */
  chunkedLater(size: number): void {
    this.#record(TAG_CHUNKED, size, chunkCount(size, this.params.chunkSize));
  }

  /** Fills the first empty placeholder with `hash`. */
  fill(hash: Uint8Array): void {
    if (this.#placeholderHead === this.#placeholders.length) throw new Error('no placeholder to fill');
    this.#buf.set(hash, this.#placeholders[this.#placeholderHead++]);
    if (this.#placeholderHead === this.#placeholders.length) {
      this.#placeholders = [];
      this.#placeholderHead = 0;
    }
  }

  end(diffID: Uint8Array, size: number): void {
    this.#closeRun();
    this.#reserve(1 + HASH_BYTES + MAX_UVARINT_BYTES);
    this.#buf[this.#len++] = TAG_END;
    this.#buf.set(diffID, this.#len);
    this.#len = writeUvarint(this.#buf, this.#len + HASH_BYTES, size);
  }

  /**
   * Takes the ready bytes (a copy); with `all`, also closes the open inline run (every placeholder
   * must be filled then).
   */
  take(all = false): Buffer {
    if (all) {
      if (this.unfilled > 0) throw new Error(`${this.unfilled} object hashes still missing`);
      this.#closeRun();
    }
    const n = this.#ready(all);
    const out = Buffer.allocUnsafe(n);
    this.#buf.copy(out, 0, 0, n);
    this.#buf.copyWithin(0, n, this.#len);
    this.#len -= n;
    if (this.#runStart >= 0) this.#runStart -= n;
    for (let i = this.#placeholderHead; i < this.#placeholders.length; i++) this.#placeholders[i]! -= n;
    return out;
  }

  #ready(all: boolean): number {
    let n = this.#len;
    if (!all && this.#runStart >= 0) n = this.#runStart;
    if (this.#placeholderHead < this.#placeholders.length)
      n = Math.min(n, this.#placeholders[this.#placeholderHead]!);
    return n;
  }

  #record(tag: number, size: number, hashes: number): void {
    this.#closeRun();
    this.#reserve(1 + MAX_UVARINT_BYTES + HASH_BYTES * hashes);
    this.#buf[this.#len++] = tag;
    this.#len = writeUvarint(this.#buf, this.#len, size);
    for (let i = 0; i < hashes; i++) {
      this.#placeholders.push(this.#len);
      this.#len += HASH_BYTES;
    }
  }

  /** Writes the open inline run's header, sliding its bytes down over the unused header room. */
  #closeRun(): void {
    const start = this.#runStart;
    if (start < 0) return;
    this.#runStart = -1;
    const dataStart = start + INLINE_HEADER_MAX;
    const length = this.#len - dataStart;
    if (length === 0) {
      this.#len = start;
      return;
    }
    const header = 1 + uvarintLength(length);
    this.#buf.copyWithin(start + header, dataStart, this.#len);
    this.#buf[start] = TAG_INLINE;
    writeUvarint(this.#buf, start + 1, length);
    this.#len -= INLINE_HEADER_MAX - header;
  }

  #reserve(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#len + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }
}

type DecoderState = 'magic' | 'tag' | 'inline' | 'done';

/**
 * Streaming decoder: {@link SplitstreamDecoder.push} yields records as soon as they are complete;
 * inline records come out in pieces as their bytes arrive.
 */
export class SplitstreamDecoder {
  #carry: Buffer = Buffer.alloc(0);
  #state: DecoderState = 'magic';
  #inlineLeft = 0;
  #params: SplitstreamParams | undefined;
  /** Where errors are reported: the splitstream's key. */
  readonly source: string;

  constructor(source: string) {
    this.source = source;
  }

  /** Parameters from the header; known after the first record is decoded. */
  get params(): SplitstreamParams {
    if (this.#params === undefined)
      throw new InvalidFormatError(`splitstream ${this.source}: header not read yet`);
    return this.#params;
  }

  *push(chunk: Uint8Array): Generator<SplitRecord, void, undefined> {
    const buf =
      this.#carry.length === 0
        ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
        : Buffer.concat([this.#carry, chunk]);
    let pos = 0;
    for (;;) {
      if (this.#state === 'inline') {
        const n = Math.min(this.#inlineLeft, buf.length - pos);
        if (n === 0) break;
        this.#inlineLeft -= n;
        yield { kind: 'inline', bytes: buf.subarray(pos, pos + n) };
        pos += n;
        if (this.#inlineLeft === 0) this.#state = 'tag';
        continue;
      }
      if (pos === buf.length) break;
      if (this.#state === 'done') throw this.#error('bytes after the END record');
      const parsed = this.#state === 'magic' ? this.#parseMagic(buf, pos) : this.#parseRecord(buf, pos);
      if (parsed === undefined) break;
      pos = parsed.next;
      if (parsed.record !== undefined) yield parsed.record;
    }
    this.#carry = pos === buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(pos));
  }

  /** Throws unless the END record was decoded. */
  finish(): void {
    if (this.#state !== 'done') throw this.#error('truncated (no END record)');
  }

  #parseMagic(buf: Buffer, pos: number): { next: number; record?: SplitRecord } | undefined {
    if (buf.length - pos < SPLITSTREAM_MAGIC.length) return undefined;
    if (!buf.subarray(pos, pos + SPLITSTREAM_MAGIC.length).equals(SPLITSTREAM_MAGIC)) {
      throw this.#error('bad magic (not a splitstream, or an unknown version)');
    }
    const inlineMax = readUvarint(buf, pos + SPLITSTREAM_MAGIC.length);
    if (inlineMax === undefined) return undefined;
    const chunkSize = readUvarint(buf, inlineMax.next);
    if (chunkSize === undefined) return undefined;
    if (chunkSize.value === 0) throw this.#error('chunk size 0');
    this.#params = { inlineMax: inlineMax.value, chunkSize: chunkSize.value };
    this.#state = 'tag';
    return { next: chunkSize.next };
  }

  #parseRecord(buf: Buffer, pos: number): { next: number; record?: SplitRecord } | undefined {
    const tag = buf[pos]!;
    switch (tag) {
      case TAG_INLINE: {
        const len = readUvarint(buf, pos + 1);
        if (len === undefined) return undefined;
        this.#state = 'inline';
        this.#inlineLeft = len.value;
        if (len.value === 0) this.#state = 'tag';
        return { next: len.next };
      }
      case TAG_OBJECT: {
        const size = readUvarint(buf, pos + 1);
        if (size === undefined || buf.length < size.next + HASH_BYTES) return undefined;
        if (size.value > this.params.chunkSize)
          throw this.#error(`object record of ${size.value} bytes exceeds the chunk size`);
        const hash = Buffer.from(buf.subarray(size.next, size.next + HASH_BYTES));
        return { next: size.next + HASH_BYTES, record: { kind: 'object', size: size.value, hash } };
      }
      case TAG_CHUNKED: {
        const size = readUvarint(buf, pos + 1);
        if (size === undefined) return undefined;
        const n = chunkCount(size.value, this.params.chunkSize);
        if (buf.length < size.next + n * HASH_BYTES) return undefined;
        const hashes: Uint8Array[] = [];
        for (let i = 0; i < n; i++) {
          const at = size.next + i * HASH_BYTES;
          hashes.push(Buffer.from(buf.subarray(at, at + HASH_BYTES)));
        }
        return { next: size.next + n * HASH_BYTES, record: { kind: 'chunked', size: size.value, hashes } };
      }
      case TAG_END: {
        if (buf.length < pos + 1 + HASH_BYTES) return undefined;
        const size = readUvarint(buf, pos + 1 + HASH_BYTES);
        if (size === undefined) return undefined;
        this.#state = 'done';
        const diffID = Buffer.from(buf.subarray(pos + 1, pos + 1 + HASH_BYTES));
        return { next: size.next, record: { kind: 'end', diffID, size: size.value } };
      }
      default:
        throw this.#error(`unknown record tag 0x${tag.toString(16)}`);
    }
  }

  #error(message: string): InvalidFormatError {
    return new InvalidFormatError(`splitstream ${this.source}: ${message}`);
  }
}

/** Reads a uvarint at `pos`; undefined when the buffer ends first. */
function readUvarint(buf: Uint8Array, pos: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < MAX_UVARINT_BYTES; i++) {
    if (pos + i >= buf.length) return undefined;
    const b = buf[pos + i]!;
    value += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) return { value, next: pos + i + 1 };
    scale *= 0x80;
  }
  throw new InvalidFormatError(`splitstream: uvarint longer than ${MAX_UVARINT_BYTES} bytes`);
}
