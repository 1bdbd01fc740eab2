/**
 * Layer decompression: the codec is detected from the stream's first bytes and must agree with
 * the media type (a gzip layer labelled zstd is an error naming both), then decoded with
 * node:zlib (gzip and zstd are built into Node 24; no native addons).
 */
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { layerCompression, parseMediaType, type LayerCompression } from '@stevedore/oci';
import { chunksOf } from '@stevedore/oci/streams';
import { STREAM_CHUNK_BYTES, type LayerInput } from '@stevedore/store';
import { gunzipInPlace, nativeGunzipAvailable } from './gunzip.ts';

const GZIP_MAGIC = [0x1f, 0x8b];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
/** The longest magic number we look for. */
const SNIFF_BYTES = 4;

export class CompressionMismatchError extends Error {
  override readonly name = 'CompressionMismatchError';
}

export function sniffCompression(head: Uint8Array): LayerCompression {
  const starts = (magic: number[]): boolean => magic.every((b, i) => head[i] === b);
  if (starts(GZIP_MAGIC)) return 'gzip';
  if (starts(ZSTD_MAGIC)) return 'zstd';
  return 'none';
}

/** A decoder with the store's stream chunk size (Node's 16 KiB default costs more than inflating). */
function decoder(compression: Exclude<LayerCompression, 'none'>): Transform {
  switch (compression) {
    case 'gzip':
      return createGunzip({ chunkSize: STREAM_CHUNK_BYTES });
    case 'zstd':
      return createZstdDecompress({ chunkSize: STREAM_CHUNK_BYTES });
  }
}

/**
 * Returns the uncompressed tar of a layer blob, for the store's import: gzip and uncompressed
 * layers as an iterable read in place (each chunk must be copied before the next is asked for;
 * gzip's two output buffers are reused), zstd as a stream. `what` names the layer in errors. The
 * first chunk is inspected and then fed to the decoder, so nothing is read twice.
 */
export async function decompressLayer(blob: Readable, mediaType: string, what: string): Promise<LayerInput> {
  const declared = layerCompression(parseMediaType(mediaType));
  const iterator = chunksOf(blob, STREAM_CHUNK_BYTES);
  let head = Buffer.alloc(0);
  const firstChunks: Buffer[] = [];
  while (head.length < SNIFF_BYTES) {
    const next = await iterator.next();
    if (next.done === true) break;
    firstChunks.push(next.value);
    head = Buffer.concat([head, next.value]);
  }
  const actual = head.length === 0 ? declared : sniffCompression(head);
  if (actual !== declared && !(declared === 'none' && actual !== 'none' && head.length < SNIFF_BYTES)) {
    blob.destroy();
    throw new CompressionMismatchError(
      `${what}: media type ${mediaType} says ${declared}, but the content is ${actual}`,
    );
  }
  /** The blob's chunks, the sniffed ones first; the blob stops when its reader stops early. */
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      yield* firstChunks;
      yield* iterator;
    } finally {
      await iterator.return(undefined);
    }
  }
  // Read in place by the store (see LayerInput): no stream between the blob and the split.
  if (declared === 'none') return replay();
  if (declared === 'gzip' && nativeGunzipAvailable) {
    // A reader that stops early stops the blob at once, even while the decoder waits for it.
    return namedErrors(
      gunzipInPlace(replay(), () => blob.destroy()),
      what,
      declared,
    );
  }
  const out = decoder(declared);
  // pipeline ties the blob's lifetime to the decoder's (an abort downstream stops the blob).
  pipeline(Readable.from(replay()), out).catch((err: unknown) => {
    blob.destroy();
    out.destroy(err instanceof Error ? err : new Error(String(err)));
  });
  return Readable.from(namedErrors(out as AsyncIterable<Buffer>, what, declared), { objectMode: false });
}

/** The decoder's own errors ("incorrect header check") say nothing of which layer: this names it. */
async function* namedErrors<T>(
  chunks: AsyncIterable<T>,
  what: string,
  codec: LayerCompression,
): AsyncGenerator<T> {
  try {
    yield* chunks;
  } catch (err) {
    if (!isDecoderError(err)) throw err;
    throw new CorruptLayerError(`${what}: its ${codec} data is corrupt: ${err.message}`, { cause: err });
  }
}

/** zlib's and zstd's errors for data that does not decode (their `code`s; see errors.ts). */
function isDecoderError(err: unknown): err is Error {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && (code.startsWith('Z_') || code.includes('ZSTD'));
}

/** A layer blob whose compressed data does not decode; its cause is the decoder's error. */
export class CorruptLayerError extends Error {
  override readonly name = 'CorruptLayerError';
}
