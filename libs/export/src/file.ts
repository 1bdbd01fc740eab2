/**
 * Writing an archive to a file, published atomically: the archive is written under a temporary
 * name in the target's directory and renamed to the target only once complete, so a failed or
 * interrupted export leaves no file under the target name (and an existing file stays as it was).
 * This is the publish step, not a copy: the bytes are written once.
 *
 * The file is written past the page cache (O_DIRECT, the store's direct-io.ts) where the
 * filesystem allows it: an archive is written once and read later by another program, and a
 * buffered write cost this VM's kernel 1.5-3 CPU-s per GB. The bytes go through a few aligned
 * staging buffers ({@link DirectFileWriter}, shared with the store's directory backend); elsewhere
 * the same writer writes them buffered.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { DirectFileWriter } from '@stevedore/store';
import type { ExportPlan } from './plan.ts';
import type { ExportStore } from './resolve.ts';
import { writeArchive, type ArchiveResult, type WriteOptions } from './writer.ts';

/** Staging buffers of 4 MiB: one write(2) each (an export is one stream; memory is not short). */
const ARCHIVE_STAGE_BYTES = 4 * 1024 * 1024;

/** Random bytes in a temporary name (hex): unique among concurrent exports to one directory. */
const TEMP_NAME_RANDOM_BYTES = 6;

/** The temporary name an export to `path` writes first (hidden, same directory, so rename is atomic). */
export function temporaryPathFor(path: string): string {
  const full = resolve(path);
  return join(
    dirname(full),
    `.${basename(full)}.${randomBytes(TEMP_NAME_RANDOM_BYTES).toString('hex')}.partial`,
  );
}

/** Writes the archive of `plan` to `path`; see the module comment. */
export async function writeArchiveFile(
  store: ExportStore,
  plan: ExportPlan,
  path: string,
  options: WriteOptions = {},
): Promise<ArchiveResult> {
  const temporary = temporaryPathFor(path);
  const out = new DirectFileWriter(temporary, { stageBytes: ARCHIVE_STAGE_BYTES });
  try {
    // A file always drains: layers can be lent to it in place (writer.ts writeTarLent).
    const result = await writeArchive(store, plan, out, { ...options, lendBlocks: true });
    if (!out.closed) await once(out, 'close');
    await rename(temporary, resolve(path));
    return result;
  } catch (err) {
    // Closed before the file is removed: a writer destroyed while still opening its file creates
    // it afterwards (its open completes before its destroy runs).
    const closed = out.closed
      ? undefined
      : new Promise<void>((resolve) => out.once('close', () => resolve()));
    out.destroy();
    await closed;
    await rm(temporary, { force: true });
    throw err;
  }
}
