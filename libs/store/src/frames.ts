/**
 * One zstd frame per call, compressed on the limiter's worker pool with a context each worker keeps
 * per level (worker.ts zstd-frame). For callers that need the same frame for the same bytes every
 * time (libs/export's recorded layer variants): a kept context makes other frames than Node's
 * one-shot `zstdCompress` (both valid), and skips building a context per call.
 */
import type { Limiter } from './limiter.ts';
import { ZstdContext, type ZstdFrameRequest } from './worker.ts';

let available: boolean | undefined;

/** Whether this Node lets the workers keep zstd contexts (worker.ts ZstdContext). */
export function zstdFramesAvailable(): boolean {
  available ??= ZstdContext.compressor(1).available;
  return available;
}

/**
 * `block` as one zstd frame at `level`. `block`'s memory is handed to the worker when it is a
 * whole ArrayBuffer of its own (the caller must not use it afterwards), else copied.
 */
export async function compressZstdFrame(limiter: Limiter, block: Uint8Array, level: number): Promise<Buffer> {
  const own =
    block.byteOffset === 0 && block.buffer instanceof ArrayBuffer && block.buffer.byteLength === block.length;
  const data = own ? block.buffer : new Uint8Array(block).buffer;
  const res = await limiter.pool.run<ZstdFrameRequest>(
    { op: 'zstd-frame', data, length: block.length, level },
    [data],
  );
  return Buffer.from(res.out, 0, res.length);
}
