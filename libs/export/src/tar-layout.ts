/**
 * The byte layout of the archives' tar (what tar-stream's `pack` writes for our members): each
 * member is a 512-byte ustar header and its content padded to 512 bytes; the archive ends with two
 * zero blocks. Member names are ASCII and at most 100 bytes, so no PAX or GNU long-name header is
 * ever needed, and sizes of 8 GiB and more use the base-256 size field, still in the one header.
 * This is what makes the size of an uncompressed archive known before its first byte.
 */

export const BLOCK = 512;
/** tar-stream's `finalize()`: two zero blocks. */
export const END_OF_ARCHIVE = 2 * BLOCK;
/** The ustar `name` field. */
export const MAX_NAME_BYTES = 100;

/** Fixed header fields of every member: the archive depends only on the content exported. */
export const MEMBER_MODE = 0o644;
export const MEMBER_MTIME = new Date(0);

const ASCII_NAME = /^[\x21-\x7e]+$/;

/** Throws unless `name` fits a plain ustar header (the layout above depends on it). */
export function checkMemberName(name: string): void {
  if (!ASCII_NAME.test(name) || name.length > MAX_NAME_BYTES) {
    throw new Error(`tar member name "${name}" is not printable ASCII of at most ${MAX_NAME_BYTES} bytes`);
  }
}

/** Bytes one member takes: header plus content padded to a block. */
export function memberBytes(size: number): number {
  return BLOCK + Math.ceil(size / BLOCK) * BLOCK;
}

/** Exact size of a tar of members with these names and sizes. */
export function tarSize(members: readonly { readonly name: string; readonly size: number }[]): number {
  let total = END_OF_ARCHIVE;
  for (const m of members) {
    checkMemberName(m.name);
    total += memberBytes(m.size);
  }
  return total;
}

const USTAR_MAGIC_VERSION = Buffer.from('ustar\x0000', 'latin1');

/** `value` in octal, zero-padded to `digits`, then a space (tar-stream's encodeOct). */
function octal(value: number, digits: number): string {
  return value.toString(8).padStart(digits, '0') + ' ';
}

/** Header checksum: the header's bytes summed with the checksum field read as spaces. */
function checksum(header: Uint8Array): number {
  let sum = 8 * 0x20;
  for (let i = 0; i < 148; i++) sum += header[i]!;
  for (let i = 156; i < BLOCK; i++) sum += header[i]!;
  return sum;
}

/**
 * The ustar header of a member, byte for byte what tar-stream's `pack` writes for the same entry
 * (mode {@link MEMBER_MODE}, mtime {@link MEMBER_MTIME}, uid and gid 0, a regular file; sizes past
 * 11 octal digits in base-256), so either writer gives the same archive.
 */
export function memberHeader(name: string, size: number): Buffer {
  checkMemberName(name);
  const h = Buffer.alloc(BLOCK);
  h.write(name, 0, 'latin1');
  h.write(octal(MEMBER_MODE, 6), 100, 'latin1');
  h.write(octal(0, 6), 108, 'latin1');
  h.write(octal(0, 6), 116, 'latin1');
  if (size.toString(8).length > 11) {
    h[124] = 0x80;
    let n = size;
    for (let i = 11; i > 0; i--) {
      h[124 + i] = n & 0xff;
      n = Math.floor(n / 0x100);
    }
  } else {
    h.write(octal(size, 11), 124, 'latin1');
  }
  h.write(octal(Math.floor(MEMBER_MTIME.getTime() / 1000), 11), 136, 'latin1');
  h[156] = 0x30; // '0': a regular file
  USTAR_MAGIC_VERSION.copy(h, 257);
  h.write(octal(0, 6), 329, 'latin1');
  h.write(octal(0, 6), 337, 'latin1');
  h.write(octal(checksum(h), 6), 148, 'latin1');
  return h;
}

/** Zero bytes that pad a member's content of `size` bytes to a block. */
export function memberPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}
