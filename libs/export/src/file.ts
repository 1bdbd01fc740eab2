/**
 * Writing an archive to a file, published atomically: the archive is written under a temporary
 * name in the target's directory and renamed to the target only once complete, so a failed or
 * interrupted export leaves no file under the target name (and an existing file stays as it was).
 * This is the publish step, not a copy: the bytes are written once.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { ExportPlan } from './plan.ts';
import type { ExportStore } from './resolve.ts';
import { writeArchive, type ArchiveResult, type WriteOptions } from './writer.ts';

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
  const out = createWriteStream(temporary, { flags: 'wx' });
  try {
    await once(out, 'open');
    const result = await writeArchive(store, plan, out, options);
    if (!out.closed) await once(out, 'close');
    await rename(temporary, resolve(path));
    return result;
  } catch (err) {
    out.destroy();
    await rm(temporary, { force: true });
    throw err;
  }
}
