/**
 * A streaming tar splitter: it walks a tar byte stream block by block and says which bytes are
 * headers and padding (kept inline in a splitstream) and which are file content (stored as
 * objects). It never reorders or rewrites a byte, so the stream can be rebuilt exactly; see
 * docs/store-format.md ("Splitting a tar").
 *
 * Parsing follows Go's archive/tar (what Docker, containerd and most image builders use): v7, ustar,
 * GNU and PAX headers; PAX `size`/`path`/`linkpath` and GNU long names apply to the next entry;
 * link, symlink, device, directory and fifo entries have no content whatever their size field says;
 * old GNU sparse headers are followed by their extension blocks. Names are data: `../x`, `/etc/x`
 * and device nodes are kept as they are (sanitising is an extractor's job). Everything after the
 * first all-zero block (the end-of-archive marker) is kept inline as a trailer.
 *
 * Pure: no I/O. The store's importer feeds it the input, the layer reader feeds it the inline parts
 * of a splitstream.
 */
import { MalformedTarError } from './errors.ts';

/** Tar works in 512-byte blocks (POSIX ustar). */
export const BLOCK_SIZE = 512;

/**
 * Largest PAX or GNU long-name entry accepted: 1 MiB, Go archive/tar's `maxSpecialFileSize`, so a
 * layer the store accepts is one container runtimes can read.
 */
export const MAX_META_SIZE = 1 << 20;

/** Header field offsets and lengths (POSIX ustar, GNU tar manual "Standard"). */
const F = {
  name: [0, 100],
  mode: [100, 8],
  size: [124, 12],
  chksum: [148, 8],
  typeflag: [156, 1],
  linkname: [157, 100],
  magic: [257, 6],
  version: [263, 2],
  prefix: [345, 155],
} as const;
/** Old GNU sparse header: "isextended" flag in the header and in each extension block. */
const GNU_SPARSE_ISEXTENDED = 482;
const GNU_SPARSE_EXT_ISEXTENDED = 504;
const ASCII_SPACE = 0x20;
const ASCII_ZERO = 0x30;

const MAGIC_USTAR = 'ustar\0';
const VERSION_USTAR = '00';
const MAGIC_GNU = 'ustar ';
const VERSION_GNU = ' \0';

export type TarFormat = 'v7' | 'ustar' | 'gnu';

/** A parsed header block, before PAX / GNU long-name overrides. */
export interface RawHeader {
  readonly name: string;
  readonly linkname: string;
  /** The type flag character; `'\0'` for old regular files. */
  readonly typeflag: string;
  readonly mode: number;
  readonly size: number;
  readonly format: TarFormat;
  /** Old GNU sparse: extension blocks follow the header. */
  readonly sparseExtended: boolean;
}

/** How an entry's content is handled by the splitter. */
export type ContentMode = 'none' | 'inline' | 'external';

/** One archive entry as it applies (PAX and GNU long names merged in). */
export interface TarEntry {
  /** Path as stored (PAX `path`, GNU long name, ustar prefix + name), decoded as UTF-8. */
  readonly name: string;
  readonly linkname: string;
  /** Type flag as it applies: `'0'` for regular files (also old `'\0'` ones), `'5'` for directories. */
  readonly typeflag: string;
  readonly mode: number;
  /** Content bytes following the header (0 for header-only types). */
  readonly size: number;
  readonly content: ContentMode;
  /** Offset of the entry's first header block (its PAX / long-name header if it has one). */
  readonly offset: number;
}

export type SplitEvent =
  /** Bytes kept in the splitstream. `content` marks entry content kept inline (small files, metadata). */
  | { readonly kind: 'inline'; readonly bytes: Uint8Array; readonly content: boolean }
  /** An entry's headers are complete; its content (if any) follows. */
  | { readonly kind: 'entry'; readonly entry: TarEntry }
  /** A piece of external content (stored as objects). */
  | { readonly kind: 'data'; readonly bytes: Uint8Array }
  /** The external content of the current entry is complete. */
  | { readonly kind: 'data-end' };

/** Type flags whose entries never have content (Go archive/tar `isHeaderOnlyType`). */
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);
const TYPE_PAX = 'x';
const TYPE_PAX_GLOBAL = 'g';
const TYPE_GNU_LONGNAME = 'L';
const TYPE_GNU_LONGLINK = 'K';
const TYPE_GNU_SPARSE = 'S';
const TYPE_REG = '0';
const TYPE_REG_OLD = '\0';
const TYPE_DIR = '5';

/** True when the block is all zeros (end-of-archive marker). */
export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

function field(block: Uint8Array, [start, length]: readonly [number, number]): Uint8Array {
  return block.subarray(start, start + length);
}

function cString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return Buffer.from(bytes.buffer, bytes.byteOffset, nul < 0 ? bytes.length : nul).toString('utf8');
}

/** True when `block` holds the ASCII `text` at `at`. */
function equalsAscii(block: Uint8Array, at: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (block[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
}

/**
 * Parses a numeric header field: octal text padded with spaces or NULs, or GNU base-256 (high bit
 * of the first byte set). Throws on anything else, on negative values and on values above 2^53.
 */
export function parseNumeric(bytes: Uint8Array, what: string, offset: number): number {
  if (bytes.length > 0 && (bytes[0]! & 0x80) !== 0) {
    if ((bytes[0]! & 0x40) !== 0) throw new MalformedTarError(offset, `negative ${what} (base-256)`);
    let value = 0n;
    for (let i = 0; i < bytes.length; i++) {
      value = (value << 8n) | BigInt(i === 0 ? bytes[i]! & 0x7f : bytes[i]!);
    }
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new MalformedTarError(offset, `${what} ${value} (base-256) is too large`);
    }
    return Number(value);
  }
  // Fast path (every header has three of these): octal digits between spaces or NULs.
  let start = 0;
  let end = bytes.length;
  while (start < end && (bytes[start] === ASCII_SPACE || bytes[start] === 0)) start++;
  while (end > start && (bytes[end - 1] === ASCII_SPACE || bytes[end - 1] === 0)) end--;
  let fast = 0;
  for (let i = start; i < end; i++) {
    const digit = bytes[i]! - ASCII_ZERO;
    if (digit < 0 || digit > 7) return parseNumericText(bytes, what, offset);
    fast = fast * 8 + digit;
  }
  if (Number.isSafeInteger(fast)) return fast;
  return parseNumericText(bytes, what, offset);
}

/** {@link parseNumeric} of an octal field that is not plain digits (names the problem). */
function parseNumericText(bytes: Uint8Array, what: string, offset: number): number {
  const text = latin1(bytes).replace(/^[ \0]+|[ \0]+$/g, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text))
    throw new MalformedTarError(offset, `invalid ${what} field ${JSON.stringify(text)}`);
  const value = parseInt(text, 8);
  if (!Number.isSafeInteger(value))
    throw new MalformedTarError(offset, `${what} ${text} (octal) is too large`);
  return value;
}

/** Parses and checksums one header block (not a zero block). `offset` is for error messages. */
export function parseHeader(block: Uint8Array, offset: number): RawHeader {
  const stored = parseNumeric(field(block, F.chksum), 'checksum', offset);
  const [chkStart, chkLength] = F.chksum;
  // The checksum field itself counts as spaces.
  let unsigned = ASCII_SPACE * chkLength;
  for (let i = 0; i < chkStart; i++) unsigned += block[i]!;
  for (let i = chkStart + chkLength; i < BLOCK_SIZE; i++) unsigned += block[i]!;
  // Historic tars summed signed chars; Go and GNU tar accept either sum.
  if (stored !== unsigned) {
    let signed = unsigned;
    for (let i = 0; i < BLOCK_SIZE; i++) {
      if (i >= chkStart && i < chkStart + chkLength) continue;
      if (block[i]! >= 0x80) signed -= 0x100;
    }
    if (stored !== signed) {
      throw new MalformedTarError(
        offset,
        `header checksum mismatch (stored ${stored}, computed ${unsigned})`,
      );
    }
  }
  const format: TarFormat =
    equalsAscii(block, F.magic[0], MAGIC_USTAR) && equalsAscii(block, F.version[0], VERSION_USTAR)
      ? 'ustar'
      : equalsAscii(block, F.magic[0], MAGIC_GNU) && equalsAscii(block, F.version[0], VERSION_GNU)
        ? 'gnu'
        : 'v7';
  let name = cString(field(block, F.name));
  if (format === 'ustar') {
    const prefix = cString(field(block, F.prefix));
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  const typeflag = String.fromCharCode(block[F.typeflag[0]]!);
  return {
    name,
    linkname: cString(field(block, F.linkname)),
    typeflag,
    mode: parseNumeric(field(block, F.mode), 'mode', offset),
    size: parseNumeric(field(block, F.size), 'size', offset),
    format,
    sparseExtended: typeflag === TYPE_GNU_SPARSE && format === 'gnu' && block[GNU_SPARSE_ISEXTENDED] !== 0,
  };
}

/** PAX records that change how the stream is read or named. */
export interface PaxOverrides {
  path?: string;
  linkpath?: string;
  size?: number;
}

/**
 * Parses PAX extended header records (`"%d %s=%s\n"`, the length counting the whole record) and
 * returns the ones that matter here. Throws on malformed records.
 */
export function parsePax(data: Uint8Array, offset: number): PaxOverrides {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.length);
  const out: PaxOverrides = {};
  let pos = 0;
  while (pos < buf.length) {
    // Some writers pad the data with NULs; Go stops at the first one.
    if (buf[pos] === 0) break;
    const space = buf.indexOf(ASCII_SPACE, pos);
    const lengthText = space < 0 ? '' : buf.toString('latin1', pos, space);
    if (!/^[0-9]+$/.test(lengthText)) throw new MalformedTarError(offset, 'invalid PAX record length');
    const length = Number(lengthText);
    const end = pos + length;
    if (end > buf.length || length <= space - pos + 1 || buf[end - 1] !== 0x0a) {
      throw new MalformedTarError(offset, 'PAX record length does not match its content');
    }
    const record = buf.toString('utf8', space + 1, end - 1);
    const eq = record.indexOf('=');
    if (eq <= 0) throw new MalformedTarError(offset, 'PAX record without "key="');
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    switch (key) {
      case 'path':
        out.path = value;
        break;
      case 'linkpath':
        out.linkpath = value;
        break;
      case 'size': {
        if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) {
          throw new MalformedTarError(offset, `invalid PAX size ${JSON.stringify(value)}`);
        }
        out.size = Number(value);
        break;
      }
      default:
        break;
    }
    pos = end;
  }
  return out;
}

type State = 'header' | 'sparse-ext' | 'content' | 'padding' | 'trailer';
type ContentKind = 'inline' | 'external' | 'meta';

function paddingOf(size: number): number {
  return (BLOCK_SIZE - (size % BLOCK_SIZE)) % BLOCK_SIZE;
}

/**
 * The splitter state machine. Feed chunks with {@link TarSplitter.push} (a generator of events:
 * consume them before pushing again; event bytes may alias the chunk or an internal buffer and are
 * valid only until the next event), then call {@link TarSplitter.finish} at the end of the stream.
 */
export class TarSplitter {
  /** Regular content of at most this many bytes stays inline (not worth an object). */
  readonly inlineMax: number;
  #state: State = 'header';
  #block = Buffer.alloc(BLOCK_SIZE);
  #blockFill = 0;
  #offset = 0;
  #remaining = 0;
  #contentKind: ContentKind = 'inline';
  #meta: Buffer | undefined;
  #metaFill = 0;
  #metaType = '';
  #pending: PaxOverrides & { gnuName?: string; gnuLink?: string } = {};
  #entryOffset = 0;
  /** Content bytes of the current entry (after PAX `size`, 0 for header-only types). */
  #contentSize = 0;
  #header: RawHeader | undefined;
  #entries = 0;

  constructor(inlineMax: number) {
    this.inlineMax = inlineMax;
  }

  /** Bytes consumed so far. */
  get offset(): number {
    return this.#offset;
  }

  /** Entries seen so far (each real entry once; PAX and long-name headers are part of theirs). */
  get entries(): number {
    return this.#entries;
  }

  /** True once the end-of-archive marker has been seen. */
  get ended(): boolean {
    return this.#state === 'trailer';
  }

  /** True when the splitter waits for the external content of the current entry. */
  get expectsExternal(): boolean {
    return this.#state === 'content' && this.#contentKind === 'external';
  }

  *push(chunk: Uint8Array): Generator<SplitEvent, void, undefined> {
    let pos = 0;
    while (pos < chunk.length) {
      switch (this.#state) {
        case 'trailer': {
          const bytes = chunk.subarray(pos);
          pos = chunk.length;
          this.#offset += bytes.length;
          yield { kind: 'inline', bytes, content: false };
          break;
        }
        case 'header':
        case 'sparse-ext': {
          let block: Uint8Array;
          if (this.#blockFill === 0 && chunk.length - pos >= BLOCK_SIZE) {
            block = chunk.subarray(pos, pos + BLOCK_SIZE);
            pos += BLOCK_SIZE;
          } else {
            const n = Math.min(BLOCK_SIZE - this.#blockFill, chunk.length - pos);
            this.#block.set(chunk.subarray(pos, pos + n), this.#blockFill);
            this.#blockFill += n;
            pos += n;
            if (this.#blockFill < BLOCK_SIZE) break;
            this.#blockFill = 0;
            block = this.#block;
          }
          const blockOffset = this.#offset;
          this.#offset += BLOCK_SIZE;
          yield { kind: 'inline', bytes: block, content: false };
          if (this.#state === 'sparse-ext') {
            if (block[GNU_SPARSE_EXT_ISEXTENDED] === 0) yield* this.#beginContent();
          } else {
            yield* this.#onHeader(block, blockOffset);
          }
          break;
        }
        case 'content': {
          const n = Math.min(this.#remaining, chunk.length - pos);
          const bytes = chunk.subarray(pos, pos + n);
          pos += n;
          this.#offset += n;
          this.#remaining -= n;
          switch (this.#contentKind) {
            case 'external':
              yield { kind: 'data', bytes };
              break;
            case 'meta':
              this.#meta!.set(bytes, this.#metaFill);
              this.#metaFill += n;
              yield { kind: 'inline', bytes, content: true };
              break;
            case 'inline':
              yield { kind: 'inline', bytes, content: true };
              break;
          }
          if (this.#remaining === 0) yield* this.#endContent();
          break;
        }
        case 'padding': {
          const n = Math.min(this.#remaining, chunk.length - pos);
          const bytes = chunk.subarray(pos, pos + n);
          pos += n;
          this.#offset += n;
          this.#remaining -= n;
          yield { kind: 'inline', bytes, content: false };
          if (this.#remaining === 0) this.#state = 'header';
          break;
        }
      }
    }
  }

  /**
   * The current entry's external content was supplied out of band (a splitstream object
   * reference): skips it. Throws unless exactly `size` external bytes were expected.
   */
  skipExternal(size: number): void {
    if (!this.expectsExternal || this.#remaining !== size) {
      throw new MalformedTarError(
        this.#offset,
        `splitstream object of ${size} bytes where the tar expects ${this.expectsExternal ? this.#remaining : 'no'} content`,
      );
    }
    this.#offset += size;
    this.#remaining = 0;
    // Only 'data-end' can come out of the generator for external content: nothing to report.
    for (const _ of this.#endContent()) {
      /* drained */
    }
  }

  /** Call at the end of the stream: throws if the archive is truncated. */
  finish(): void {
    if (this.#state === 'trailer') return;
    if (this.#state === 'header' && this.#blockFill === 0) {
      throw new MalformedTarError(
        this.#offset,
        this.#offset === 0 ? 'empty stream' : 'missing end-of-archive marker (truncated?)',
      );
    }
    const inEntry = this.#state !== 'header' && this.#header !== undefined;
    const name = inEntry ? ` of entry ${JSON.stringify(this.#header!.name)}` : '';
    throw new MalformedTarError(this.#offset + this.#blockFill, `truncated in ${this.#state}${name}`);
  }

  *#onHeader(block: Uint8Array, blockOffset: number): Generator<SplitEvent, void, undefined> {
    if (isZeroBlock(block)) {
      this.#state = 'trailer';
      return;
    }
    const header = parseHeader(block, blockOffset);
    if (this.#header === undefined || !isMetaType(this.#header.typeflag)) this.#entryOffset = blockOffset;
    this.#header = header;
    if (header.sparseExtended) {
      this.#state = 'sparse-ext';
      return;
    }
    yield* this.#beginContent();
  }

  *#beginContent(): Generator<SplitEvent, void, undefined> {
    const h = this.#header!;
    let size: number;
    let kind: ContentKind;
    let mode: ContentMode;
    let entry: TarEntry;
    if (isMetaType(h.typeflag)) {
      size = h.size;
      if (size > MAX_META_SIZE) {
        throw new MalformedTarError(
          this.#entryOffset,
          `extended header of ${size} bytes exceeds ${MAX_META_SIZE}`,
        );
      }
      kind = 'meta';
      mode = size === 0 ? 'none' : 'inline';
      this.#meta = Buffer.allocUnsafe(size);
      this.#metaFill = 0;
      this.#metaType = h.typeflag;
      entry = { ...h, content: mode, offset: this.#entryOffset };
    } else {
      const p = this.#pending;
      this.#pending = {};
      const name = p.path ?? p.gnuName ?? h.name;
      let typeflag = h.typeflag;
      if (typeflag === TYPE_REG_OLD) typeflag = name.endsWith('/') ? TYPE_DIR : TYPE_REG;
      size = HEADER_ONLY.has(typeflag) ? 0 : (p.size ?? h.size);
      kind = size > this.inlineMax ? 'external' : 'inline';
      mode = size === 0 ? 'none' : kind;
      entry = {
        name,
        linkname: p.linkpath ?? p.gnuLink ?? h.linkname,
        typeflag,
        mode: h.mode,
        size,
        content: mode,
        offset: this.#entryOffset,
      };
      this.#entries++;
    }
    yield { kind: 'entry', entry };
    this.#contentKind = kind;
    this.#contentSize = size;
    this.#remaining = size;
    if (size === 0) {
      yield* this.#endContent();
    } else {
      this.#state = 'content';
    }
  }

  *#endContent(): Generator<SplitEvent, void, undefined> {
    if (this.#contentKind === 'external') yield { kind: 'data-end' };
    if (this.#contentKind === 'meta') {
      const data = this.#meta!;
      this.#meta = undefined;
      switch (this.#metaType) {
        case TYPE_PAX: {
          // A second PAX header replaces the first (as in Go); GNU long names survive.
          const { gnuName, gnuLink } = this.#pending;
          this.#pending = { ...parsePax(data, this.#entryOffset), gnuName, gnuLink };
          break;
        }
        case TYPE_GNU_LONGNAME:
          this.#pending.gnuName = cString(data);
          break;
        case TYPE_GNU_LONGLINK:
          this.#pending.gnuLink = cString(data);
          break;
        default:
          break;
      }
    }
    const padding = paddingOf(this.#contentSize);
    this.#remaining = padding;
    this.#state = padding === 0 ? 'header' : 'padding';
  }
}

/** Entries that describe the next entry (or all: PAX global) rather than being one. */
function isMetaType(typeflag: string): boolean {
  return (
    typeflag === TYPE_PAX ||
    typeflag === TYPE_PAX_GLOBAL ||
    typeflag === TYPE_GNU_LONGNAME ||
    typeflag === TYPE_GNU_LONGLINK
  );
}
