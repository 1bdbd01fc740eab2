/**
 * Writing files past the page cache (O_DIRECT), for data written once and not read back soon: the
 * store's packs and exported archives. On the VMs measured here a buffered write cost 1.5-3 CPU-s
 * per GB in the kernel (page cache pages the hypervisor maps on first touch), a direct write 0.15.
 *
 * Direct I/O needs the buffer's address, the length and the file offset aligned to the device's
 * block. JavaScript cannot see an address, so the aligned place in a buffer is found by probing:
 * the kernel refuses a misaligned buffer with EINVAL before any I/O. Callers allocate
 * {@link DIRECT_WRITE_SLACK} extra bytes, write whole blocks (the last one past the data's end) and
 * truncate the file to its length.
 */
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';

/**
 * Alignment of direct writes: buffer address, length and file offset. 4096 covers disks with 512
 * and 4096-byte logical blocks; larger ones fail the probe and writes stay buffered.
 */
export const DIRECT_ALIGN = 4096;
/**
 * Extra bytes a caller allocates for an aligned view: room to align the view's start and to round
 * its end up to {@link DIRECT_ALIGN}.
 */
export const DIRECT_WRITE_SLACK = 2 * DIRECT_ALIGN;
/** Steps of the alignment probe (allocations are at least 16-byte aligned). */
const PROBE_STEP = 16;
/** O_DIRECT where the platform has it (Linux); 0 elsewhere (no direct writes). */
const O_DIRECT: number = constants.O_DIRECT ?? 0;
/** Flags of a new file written directly (fails if the file exists). */
const DIRECT_CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | O_DIRECT;

/**
 * Creates `path` (it must not exist) for direct writes. Undefined where direct I/O is refused: the
 * platform has no O_DIRECT, or the filesystem rejects it (EINVAL: tmpfs before Linux 6.6, some
 * network filesystems). Other errors (the file exists, no permission) are thrown.
 */
export async function openDirect(path: string, mode: number): Promise<FileHandle | undefined> {
  if (O_DIRECT === 0) return undefined;
  try {
    return await open(path, DIRECT_CREATE_FLAGS, mode);
  } catch (err) {
    if (isEinval(err)) return undefined;
    throw err;
  }
}

/** `n` rounded up to {@link DIRECT_ALIGN}. */
export function alignUp(n: number): number {
  return Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;
}

function isEinval(err: unknown): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === 'EINVAL';
}

/**
 * The first offset of `buffer` whose address suits a direct write to `fh` (a file opened with
 * O_DIRECT), or undefined if none does. Writes one block at file offset 0 when it succeeds: probe
 * before writing the file's first block.
 */
export async function probeAlignment(fh: FileHandle, buffer: ArrayBufferLike): Promise<number | undefined> {
  for (let at = 0; at < DIRECT_ALIGN && at + DIRECT_ALIGN <= buffer.byteLength; at += PROBE_STEP) {
    try {
      await fh.write(new Uint8Array(buffer, at, DIRECT_ALIGN), 0, DIRECT_ALIGN, 0);
      return at;
    } catch (err) {
      if (!isEinval(err)) throw err;
    }
  }
  return undefined;
}

/**
 * Writes all of `bytes` at `position` (on a file opened with O_DIRECT: an aligned view, a multiple
 * of DIRECT_ALIGN long, at an aligned position).
 */
export async function writeAll(fh: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    const { bytesWritten } = await fh.write(bytes, written, bytes.length - written, position + written);
    if (bytesWritten === 0) throw new Error(`write stopped at ${position + written} bytes`);
    written += bytesWritten;
  }
}
