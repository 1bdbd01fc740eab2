/**
 * Deterministic, parallel compression: the same tar and recipe always give the same bytes, so a
 * layer's recompressed digest and size can be recorded once and trusted by every later export
 * (docs/export.md), and one large layer still uses every core.
 *
 * The input is cut into fixed blocks ({@link Reblock}) compressed independently on the libuv
 * thread pool (node:zlib's async one-shot functions: off the event loop), at most
 * {@link BLOCKS_IN_FLIGHT} per stream and {@link COMPRESS_SLOTS} in the process, and written in order:
 *
 * - gzip: one gzip member, as pigz writes it. Each {@link GZIP_BLOCK_BYTES} block is raw deflate at
 *   level {@link GZIP_LEVEL} primed with the previous block's last 32 KiB (so the ratio is that of
 *   a single stream) and ended with a sync flush, the last one with the final block; then the CRC-32
 *   and length. Header without name, mtime 0, OS Unix: what Node's own gzip writes.
 * - zstd: one frame per {@link ZSTD_BLOCK_BYTES} block (a zstd stream may be several frames; every
 *   decoder reads them in sequence), level {@link ZSTD_LEVEL}, each with its content size, no
 *   checksum.
 *
 * Why blocks: zstd's streaming output depends on how its input is cut into writes (measured: 4 KiB
 * and 60,000-byte writes give other frames than 64 KiB or 1 MiB ones), zstd's multithreaded
 * streaming crashes Node's zlib binding (push after EOF), and the store's rebuilt tar comes in pieces
 * whose sizes are in no format. With fixed blocks compressed one-shot, the output is a function of
 * the input bytes and the recipe alone; the block size is part of the recipe's codec name.
 */
import { availableParallelism } from 'node:os';
import { Transform, type TransformCallback } from 'node:stream';
import { promisify } from 'node:util';
import { constants, crc32, deflateRaw, zstdCompress, type ZlibOptions, type ZstdOptions } from 'node:zlib';
import type { VariantCompression, VariantRecipe } from '@stevedore/store';

/** zlib's default: what docker and most registries' images use. */
export const GZIP_LEVEL = 6;
/** zstd's default level: fast, and what the fixtures use. */
export const ZSTD_LEVEL = 3;
/** gzip blocks: pigz's idea with larger blocks (fewer tasks; the priming keeps the ratio). */
export const GZIP_BLOCK_BYTES = 1024 * 1024;
/**
 * zstd frames: each starts with no history, so larger than zstd level 3's 2 MiB window to lose
 * little ratio, small enough to keep every core busy on one layer.
 */
export const ZSTD_BLOCK_BYTES = 4 * 1024 * 1024;
/** Blocks a stream has handed to the pool and not yet written out: one per core, at most 4. */
export const BLOCKS_IN_FLIGHT = Math.min(4, availableParallelism());
/**
 * Blocks compressed at once in the whole process (all streams: the layer being written and those
 * prepared ahead share the cores): one per core plus one, so a core never waits for the next task.
 */
export const COMPRESS_SLOTS = Math.min(4, availableParallelism()) + 1;
/** deflate's window: how much of the previous block primes the next one. */
const DEFLATE_WINDOW = 32 * 1024;
/** RFC 1952: ID1 ID2, CM deflate, FLG none, MTIME 0, XFL 0, OS 3 (Unix). */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
const UINT32 = 2 ** 32;

const deflateRawAsync = promisify<Buffer, ZlibOptions, Buffer>(deflateRaw);
const zstdCompressAsync = promisify<Buffer, ZstdOptions, Buffer>(zstdCompress);

/** A FIFO counting semaphore: the process-wide compression slots. */
class Slots {
  #free: number;
  readonly #waiters: (() => void)[] = [];

  constructor(count: number) {
    this.#free = count;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiters.push(resolve));
    try {
      return await task();
    } finally {
      const next = this.#waiters.shift();
      if (next === undefined) this.#free++;
      else next();
    }
  }
}

const slots = new Slots(COMPRESS_SLOTS);

/** Output buffer of a one-shot compression: the whole compressed block in one piece, no concat. */
function outputBytes(block: Buffer): number {
  // Both codecs' bounds: incompressible input grows by well under 1/128 plus a few bytes.
  return block.length + (block.length >> 7) + 64 * 1024;
}

/** Re-cuts a stream into chunks of exactly `size` bytes (the last one shorter). */
export class Reblock extends Transform {
  readonly #size: number;
  #pending: Buffer[] = [];
  #pendingBytes = 0;

  constructor(size: number) {
    super();
    this.#size = size;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    let offset = 0;
    if (this.#pendingBytes > 0) {
      const need = this.#size - this.#pendingBytes;
      if (chunk.length < need) {
        this.#pending.push(chunk);
        this.#pendingBytes += chunk.length;
        callback();
        return;
      }
      this.#pending.push(chunk.subarray(0, need));
      this.push(Buffer.concat(this.#pending, this.#size));
      this.#pending = [];
      this.#pendingBytes = 0;
      offset = need;
    }
    while (chunk.length - offset >= this.#size) {
      this.push(chunk.subarray(offset, offset + this.#size));
      offset += this.#size;
    }
    if (offset < chunk.length) {
      this.#pending.push(chunk.subarray(offset));
      this.#pendingBytes = chunk.length - offset;
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.#pendingBytes > 0) this.push(Buffer.concat(this.#pending, this.#pendingBytes));
    this.#pending = [];
    callback();
  }
}

/**
 * Compresses blocks (from a {@link Reblock}) in parallel, in order, into one gzip member or a
 * sequence of zstd frames (see the module comment).
 */
export class BlockCompressor extends Transform {
  readonly #recipe: VariantRecipe;
  readonly #inFlight: number;
  readonly #queue: Promise<Buffer>[] = [];
  /** gzip: the block held back until we know whether it is the last. */
  #held: Buffer | undefined;
  /** gzip: the last 32 KiB before the held block (its priming dictionary). */
  #dictionary: Buffer | undefined;
  #crc = 0;
  #length = 0;
  #started = false;

  constructor(recipe: VariantRecipe, inFlight = BLOCKS_IN_FLIGHT) {
    super();
    this.#recipe = recipe;
    this.#inFlight = Math.max(1, inFlight);
  }

  #launch(block: Buffer, last: boolean): void {
    const level = this.#recipe.level;
    if (this.#recipe.compression === 'zstd') {
      this.#queue.push(
        slots.run(() =>
          zstdCompressAsync(block, {
            chunkSize: outputBytes(block),
            // Node's async one-shot does not pledge the size by itself; the frame header then has none.
            pledgedSrcSize: block.length,
            params: {
              [constants.ZSTD_c_compressionLevel]: level,
              [constants.ZSTD_c_checksumFlag]: 0,
              [constants.ZSTD_c_contentSizeFlag]: 1,
            },
          }),
        ),
      );
      return;
    }
    const options: ZlibOptions = {
      level,
      chunkSize: outputBytes(block),
      finishFlush: last ? constants.Z_FINISH : constants.Z_SYNC_FLUSH,
      ...(this.#dictionary === undefined ? {} : { dictionary: this.#dictionary }),
    };
    this.#queue.push(slots.run(() => deflateRawAsync(block, options)));
    this.#dictionary =
      block.length >= DEFLATE_WINDOW ? block.subarray(block.length - DEFLATE_WINDOW) : undefined;
  }

  /** Pushes finished blocks in order until at most `keep` are in flight. */
  async #drain(keep: number): Promise<void> {
    if (!this.#started) {
      this.#started = true;
      if (this.#recipe.compression === 'gzip') this.push(GZIP_HEADER);
    }
    while (this.#queue.length > keep) this.push(await this.#queue.shift()!);
  }

  override _transform(block: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#recipe.compression === 'gzip') {
      this.#crc = crc32(block, this.#crc);
      this.#length = (this.#length + block.length) % UINT32;
      if (this.#held !== undefined) this.#launch(this.#held, false);
      this.#held = block;
    } else {
      this.#launch(block, false);
    }
    this.#drain(this.#inFlight - 1).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    if (this.#recipe.compression === 'gzip') {
      this.#launch(this.#held ?? Buffer.alloc(0), true);
      this.#held = undefined;
    } else if (!this.#started && this.#queue.length === 0) {
      // Empty input: one empty frame, so the output is still a zstd stream.
      this.#launch(Buffer.alloc(0), true);
    }
    this.#drain(0).then(() => {
      if (this.#recipe.compression === 'gzip') {
        const trailer = Buffer.alloc(8);
        trailer.writeUInt32LE(this.#crc >>> 0, 0);
        trailer.writeUInt32LE(this.#length, 4);
        this.push(trailer);
      }
      callback();
    }, callback);
  }
}

/**
 * The recipe of a compression with this Node's bundled codec: library, version and block layout
 * are part of its name (and of the variant record's key).
 */
export function recipeOf(compression: VariantCompression): VariantRecipe {
  switch (compression) {
    case 'gzip':
      return {
        compression,
        level: GZIP_LEVEL,
        codec: `zlib ${process.versions.zlib ?? 'unknown'} primed blocks ${GZIP_BLOCK_BYTES}`,
      };
    case 'zstd':
      return {
        compression,
        level: ZSTD_LEVEL,
        codec: `zstd ${process.versions.zstd ?? 'unknown'} frames ${ZSTD_BLOCK_BYTES}`,
      };
  }
}

/** The stages compressing with `recipe`: cutting into blocks, then compressing them in parallel. */
export function compressorFor(recipe: VariantRecipe, inFlight = BLOCKS_IN_FLIGHT): [Transform, Transform] {
  const block = recipe.compression === 'gzip' ? GZIP_BLOCK_BYTES : ZSTD_BLOCK_BYTES;
  return [new Reblock(block), new BlockCompressor(recipe, inFlight)];
}
