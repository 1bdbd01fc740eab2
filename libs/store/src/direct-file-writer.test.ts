import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { DirectFileWriter } from './direct-file-writer.ts';

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'stevedore-direct-'));
  dirs.push(d);
  return d;
}

/** `bytes` cut into chunks of irregular sizes (1 byte to 3 MiB). */
function* irregularChunks(bytes: Buffer): Generator<Buffer> {
  const sizes = [1, 4095, 4097, 3 * 1024 * 1024, 100, 65536, 1_000_003];
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield bytes.subarray(at, at + n);
    at += n;
  }
}

describe('DirectFileWriter', () => {
  it.each([0, 1, 4096, 4 * 1024 * 1024, 13 * 1024 * 1024 + 17])(
    'writes exactly the bytes it is given (%i bytes, in irregular chunks, with staging buffers of 8 KiB, 1 MiB and 4 MiB)',
    async (size) => {
      const bytes = randomBytes(size);
      for (const stageBytes of [8192, 1024 * 1024, 4 * 1024 * 1024]) {
        const path = join(await tempDir(), `archive-${stageBytes}.tar`);
        const out = new DirectFileWriter(path, { stageBytes });
        await pipeline(Readable.from(irregularChunks(bytes)), out);
        expect(out.bytesWritten).toBe(size);
        expect((await readFile(path)).equals(bytes)).toBe(true);
      }
    },
  );

  it('takes only stage sizes that direct writes can use', () => {
    expect(() => new DirectFileWriter('/nonexistent/x', { stageBytes: 5000 })).toThrow(/multiple of 4096/);
  });

  it('refuses to overwrite an existing file', async () => {
    const path = join(await tempDir(), 'taken');
    await writeFile(path, 'keep me');
    await expect(pipeline(Readable.from([Buffer.from('x')]), new DirectFileWriter(path))).rejects.toThrow(
      /EEXIST/,
    );
    expect(await readFile(path, 'utf8')).toBe('keep me');
  });
});
