/**
 * Test support: a directory store with fixture images written into it as the pipeline would
 * (blobs, split layers, layer blob records, image records, references), and small readers of the
 * archives the tests produce.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { extract } from 'tar-stream';
import { parseReference } from '@stevedore/oci';
import { openStore, type BlobPolicy, type Store } from '@stevedore/store';
import { storeFixtureImage, type FixtureImage, type FixtureIndex } from '@stevedore/testing';

export interface TestStore {
  readonly store: Store;
  readonly dir: string;
  close(): Promise<void>;
}

export async function openTestStore(blobPolicy: BlobPolicy = 'keep'): Promise<TestStore> {
  const dir = await mkdtemp(join(tmpdir(), 'stevedore-export-test-'));
  const store = await openStore({ backend: { kind: 'directory', path: join(dir, 'store') }, blobPolicy });
  return {
    store,
    dir,
    async close() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Writes an index and the given platform images (others stay unpulled), and tags the index. */
export async function storeIndex(
  store: Store,
  index: FixtureIndex,
  images: readonly FixtureImage[],
  reference: string,
): Promise<void> {
  for (const image of images) await storeFixtureImage(store, image);
  await store.putBlob(index.manifest.descriptor.digest, index.manifest.bytes);
  await store.setReference(parseReference(reference), index.manifest.descriptor.digest);
}

/** Collects a stream in memory (small test archives only). */
export class MemorySink extends Writable {
  readonly chunks: Buffer[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.chunks.push(chunk);
    callback();
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/**
 * Copies each chunk before its callback, as a file writer does: an output that may borrow the
 * store's blocks (WriteOptions.lendBlocks). MemorySink keeps the chunks themselves and may not.
 */
export class CopyingSink extends MemorySink {
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.chunks.push(Buffer.from(chunk));
    // Later, as a file writer's stage flushes: the chunk must stay readable until then.
    setImmediate(callback);
  }
}

export interface TarMember {
  readonly name: string;
  readonly size: number;
  readonly mode: number | undefined;
  readonly mtime: number | undefined;
  readonly bytes: Buffer;
}

/** The members of a (small) tar, in order, with their content. */
export async function readTar(tar: Uint8Array): Promise<TarMember[]> {
  const members: TarMember[] = [];
  const ex = extract();
  const done = pipeline(Readable.from([tar]), ex);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    members.push({
      name: entry.header.name,
      size: entry.header.size ?? 0,
      mode: entry.header.mode,
      mtime: entry.header.mtime?.getTime(),
      bytes: Buffer.concat(chunks),
    });
  }
  await done;
  return members;
}
