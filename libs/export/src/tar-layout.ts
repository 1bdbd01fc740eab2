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
