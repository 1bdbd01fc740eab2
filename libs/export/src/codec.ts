/**
 * Deterministic compression: the same tar and recipe always give the same bytes, so a layer's
 * recompressed digest and size can be recorded once and trusted by every later export
 * (docs/export.md). Everything runs in node:zlib, whose async streams work on the libuv thread
 * pool, off the event loop.
 *
 * - gzip: zlib level {@link GZIP_LEVEL}; Node writes the gzip header without a file name and with
 *   mtime 0, so it depends on nothing but the input.
 * - zstd: level {@link ZSTD_LEVEL}, single-threaded (multithreaded zstd frames depend on the number
 *   of workers), no checksum, the content size pledged (it is in the layer record; zstd then sizes
 *   its window to the input and writes the size in the frame header).
 *
 * zstd's streaming output depends on how its input is cut into writes (measured: 4 KiB and 60,000
 * byte writes give other frames than 64 KiB or 1 MiB ones), and the store's rebuilt tar comes in
 * pieces whose sizes are not part of any format. So the input is re-cut into writes of exactly
 * {@link COMPRESS_WRITE_BYTES} (the last one shorter) before either codec sees it: the output is then
 * a function of the input bytes and the recipe alone. The write size is part of the recipe's codec
 * name, since changing it changes the bytes.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { createGzip, createZstdCompress, constants } from 'node:zlib';
import type { VariantCompression, VariantRecipe } from '@stevedore/store';

/** zlib's default: what docker and most registries' images use. */
export const GZIP_LEVEL = 6;
/** zstd's default level: fast enough to stream at disk speed, and what the fixtures use. */
export const ZSTD_LEVEL = 3;
/**
 * Output buffer of the compressors: 256 KiB halves the chunks (and the per-chunk work of hashing,
 * packing and writing) compared with zlib's 16 KiB default, at no cost in memory that matters.
 */
export const COMPRESS_CHUNK_BYTES = 256 * 1024;
/** Size of every write into a compressor (see the module comment): large, so there are few calls. */
export const COMPRESS_WRITE_BYTES = 1024 * 1024;

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
 * The recipe of a compression with this Node's bundled codec: library, version and write size are
 * part of its name (and of the variant record's key).
 */
export function recipeOf(compression: VariantCompression): VariantRecipe {
  const writes = `w${COMPRESS_WRITE_BYTES}`;
  switch (compression) {
    case 'gzip':
      return {
        compression,
        level: GZIP_LEVEL,
        codec: `zlib ${process.versions.zlib ?? 'unknown'} ${writes}`,
      };
    case 'zstd':
      return {
        compression,
        level: ZSTD_LEVEL,
        codec: `zstd ${process.versions.zstd ?? 'unknown'} ${writes}`,
      };
  }
}

/**
 * The stages compressing with `recipe`: re-cutting into fixed writes, then the codec. `size`, when
 * known, is the exact input length (zstd pledges it).
 */
export function compressorFor(recipe: VariantRecipe, size?: number): [Transform, Transform] {
  return [new Reblock(COMPRESS_WRITE_BYTES), codecFor(recipe, size)];
}

function codecFor(recipe: VariantRecipe, size: number | undefined): Transform {
  switch (recipe.compression) {
    case 'gzip':
      return createGzip({ level: recipe.level, chunkSize: COMPRESS_CHUNK_BYTES });
    case 'zstd':
      return createZstdCompress({
        chunkSize: COMPRESS_CHUNK_BYTES,
        ...(size === undefined ? {} : { pledgedSrcSize: size }),
        params: {
          [constants.ZSTD_c_compressionLevel]: recipe.level,
          [constants.ZSTD_c_checksumFlag]: 0,
          [constants.ZSTD_c_nbWorkers]: 0,
        },
      });
  }
}
