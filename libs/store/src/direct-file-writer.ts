/**
 * Streaming a new file to disk past the page cache where the filesystem allows it (direct-io.ts
 * says why): the store's directory backend writes streamed blobs with it, the export its archives.
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import {
  alignUp,
  DIRECT_ALIGN,
  DIRECT_WRITE_SLACK,
  openDirect,
  probeAlignment,
  writeAll,
} from './direct-io.ts';

/** Default bytes of one staging buffer: one write(2) each. */
const DEFAULT_STAGE_BYTES = 1024 * 1024;
/** Staging buffers: one filling while the others are being written. */
const STAGES = 3;

/**
 * A Writable onto a new file (it must not exist), written in `stageBytes` writes (a multiple of
 * {@link DIRECT_ALIGN}; default 1 MiB) from three staging buffers, with O_DIRECT where the
 * filesystem takes it (then the last block is written whole and the file truncated to its length).
 * `bytesWritten` counts the bytes taken. For streams written once and not read back soon: exported
 * archives, and blobs in the directory backend.
 */
export class DirectFileWriter extends Writable {
  readonly path: string;
  readonly #stageBytes: number;
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

  constructor(path: string, options: { stageBytes?: number } = {}) {
    const stageBytes = options.stageBytes ?? DEFAULT_STAGE_BYTES;
    if (stageBytes <= 0 || stageBytes % DIRECT_ALIGN !== 0)
      throw new RangeError(`stageBytes ${stageBytes} is not a positive multiple of ${DIRECT_ALIGN}`);
    super({ highWaterMark: stageBytes });
    this.path = path;
    this.#stageBytes = stageBytes;
  }

  override _construct(callback: (err?: Error | null) => void): void {
    this.#open().then(() => callback(), callback);
  }

  async #open(): Promise<void> {
    const buffers = Array.from(
      { length: STAGES },
      () => new ArrayBuffer(this.#stageBytes + DIRECT_WRITE_SLACK),
    );
    this.#fh = await openDirect(this.path, 0o644);
    if (this.#fh !== undefined) {
      const places = [];
      for (const buffer of buffers) places.push(await probeAlignment(this.#fh, buffer));
      if (places.every((at) => at !== undefined)) {
        places.forEach((at, i) => this.#stages.push(new Uint8Array(buffers[i]!, at, this.#stageBytes)));
        this.#direct = true;
      } else {
        // No aligned place (a device block larger than DIRECT_ALIGN): write through the page cache.
        await this.#fh.close();
        await rm(this.path, { force: true });
      }
    }
    if (!this.#direct) {
      this.#fh = await open(this.path, 'wx', 0o644);
      for (const buffer of buffers) this.#stages.push(new Uint8Array(buffer, 0, this.#stageBytes));
    }
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    this.#take(chunk).then(() => callback(), callback);
  }

  async #take(chunk: Uint8Array): Promise<void> {
    let taken = 0;
    while (taken < chunk.length) {
      const stage = this.#stages[this.#stage]!;
      const n = Math.min(this.#stageBytes - this.#fill, chunk.length - taken);
      stage.set(chunk.subarray(taken, taken + n), this.#fill);
      this.#fill += n;
      taken += n;
      if (this.#fill === this.#stageBytes) await this.#next();
    }
    this.bytesWritten += chunk.length;
  }

  /** Starts writing the full current stage and moves to the next one once its own write is done. */
  async #next(): Promise<void> {
    const write = writeAll(this.#fh!, this.#stages[this.#stage]!, this.#position);
    write.catch(() => undefined); // awaited before the stage is reused, or in _final
    this.#writing[this.#stage] = write;
    this.#position += this.#stageBytes;
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
