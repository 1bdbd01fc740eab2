/**
 * Writing an archive to a file, published atomically: the archive is written under a temporary
 * name in the target's directory and renamed to the target only once complete, so a failed or
 * interrupted export leaves no file under the target name (and an existing file stays as it was).
 * This is the publish step, not a copy: the bytes are written once.
 *
 * The file is written past the page cache (O_DIRECT, the store's direct-io.ts) where the
 * filesystem allows it: an archive is written once and read later by another program, and a
 * buffered write cost this VM's kernel 1.5-3 CPU-s per GB. The bytes go through a few aligned
 * staging buffers ({@link ArchiveFileWriter}); elsewhere the same writer writes them buffered.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { alignUp, DIRECT_WRITE_SLACK, openDirect, probeAlignment, writeAll } from '@stevedore/store';
import type { ExportPlan } from './plan.ts';
import type { ExportStore } from './resolve.ts';
import { writeArchive, type ArchiveResult, type WriteOptions } from './writer.ts';

/** Bytes of one staging buffer: one write(2) each. */
const STAGE_BYTES = 4 * 1024 * 1024;
/** Staging buffers: one filling while the others are being written. */
const STAGES = 3;

/**
 * A Writable onto a new file (it must not exist), written in {@link STAGE_BYTES} writes from
 * staging buffers, with O_DIRECT where the filesystem takes it (then the last block is written
 * whole and the file truncated to its length). `bytesWritten` counts the bytes taken.
 */
export class ArchiveFileWriter extends Writable {
  readonly path: string;
  #fh: FileHandle | undefined;
  #direct = false;
  readonly #stages: Uint8Array[] = [];
  /** The write in flight of each stage. */
  readonly #writing: (Promise<void> | undefined)[] = [];
  #stage = 0;
  #fill = 0;
  /** File offset of the current stage's first byte. */
  #position = 0;
  bytesWritten = 0;

  constructor(path: string) {
    super({ highWaterMark: STAGE_BYTES });
    this.path = path;
  }

  override _construct(callback: (err?: Error | null) => void): void {
    this.#open().then(() => callback(), callback);
  }

  async #open(): Promise<void> {
    const buffers = Array.from({ length: STAGES }, () => new ArrayBuffer(STAGE_BYTES + DIRECT_WRITE_SLACK));
    this.#fh = await openDirect(this.path, 0o644);
    if (this.#fh !== undefined) {
      const places = [];
      for (const buffer of buffers) places.push(await probeAlignment(this.#fh, buffer));
      if (places.every((at) => at !== undefined)) {
        places.forEach((at, i) => this.#stages.push(new Uint8Array(buffers[i]!, at, STAGE_BYTES)));
        this.#direct = true;
      } else {
        // No aligned place (a device block larger than DIRECT_ALIGN): write through the page cache.
        await this.#fh.close();
        await rm(this.path, { force: true });
      }
    }
    if (!this.#direct) {
      this.#fh = await open(this.path, 'wx', 0o644);
      for (const buffer of buffers) this.#stages.push(new Uint8Array(buffer, 0, STAGE_BYTES));
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#take(chunk).then(() => callback(), callback);
  }

  async #take(chunk: Uint8Array): Promise<void> {
    let taken = 0;
    while (taken < chunk.length) {
      const stage = this.#stages[this.#stage]!;
      const n = Math.min(STAGE_BYTES - this.#fill, chunk.length - taken);
      stage.set(chunk.subarray(taken, taken + n), this.#fill);
      this.#fill += n;
      taken += n;
      if (this.#fill === STAGE_BYTES) await this.#next();
    }
    this.bytesWritten += chunk.length;
  }

  /** Starts writing the full current stage and moves to the next one once its own write is done. */
  async #next(): Promise<void> {
    const write = writeAll(this.#fh!, this.#stages[this.#stage]!, this.#position);
    write.catch(() => undefined); // awaited before the stage is reused, or in _final
    this.#writing[this.#stage] = write;
    this.#position += STAGE_BYTES;
    this.#fill = 0;
    this.#stage = (this.#stage + 1) % STAGES;
    await this.#writing[this.#stage];
    this.#writing[this.#stage] = undefined;
  }

  #inFlight(): Promise<void>[] {
    return this.#writing.filter((w) => w !== undefined);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.#finish().then(() => callback(), callback);
  }

  async #finish(): Promise<void> {
    const fh = this.#fh!;
    if (this.#fill > 0) {
      const stage = this.#stages[this.#stage]!;
      const length = this.#direct ? alignUp(this.#fill) : this.#fill;
      // A direct write of the last block reads past the stage: the slack after it is ours.
      await writeAll(fh, new Uint8Array(stage.buffer, stage.byteOffset, length), this.#position);
    }
    await Promise.all(this.#inFlight());
    const size = this.#position + this.#fill;
    if (this.#direct) await fh.truncate(size);
    await fh.close();
    this.#fh = undefined;
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const fh = this.#fh;
    this.#fh = undefined;
    if (fh === undefined) {
      callback(err);
      return;
    }
    Promise.allSettled(this.#inFlight())
      .then(() => fh.close())
      .then(
        () => callback(err),
        (closeErr: unknown) => callback(err ?? (closeErr as Error)),
      );
  }
}

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
  const out = new ArchiveFileWriter(temporary);
  try {
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
