/**
 * The store suite, run against both backends: a directory in a temp dir, and S3 on the stack's
 * S3 server (a fresh key prefix per store).
 */
import { digestOf, parseDiffID, parseMediaType, parseReference, type Digest } from '@stevedore/oci';
import '@stevedore/testing';
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setImmediate as turn } from 'node:timers/promises';
import { buffer } from 'node:stream/consumers';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { describe, expect, inject, it } from 'vitest';
import {
  CorruptObjectError,
  DigestMismatchError,
  DIRECT_WRITE_SLACK,
  DirectoryBackend,
  diffStats,
  listAll,
  MalformedTarError,
  MissingDependencyError,
  ObjectNotFoundError,
  openStore,
  snapshotStats,
  type BlobPolicy,
  type Store,
} from '../src/index.ts';
import {
  BIG,
  chunked,
  collect,
  gnuTar,
  handcraftedTar,
  KiB,
  makeTree,
  MiB,
  packTar,
  randomFiles,
  TEXT,
  tarStreamEntries,
} from './fixtures.ts';
import { BACKENDS, keys, tempDir, trackStore } from './backends.ts';
import { entry, header, tarOf } from './tar-builder.ts';

async function totalBytes(store: Store): Promise<number> {
  let n = 0;
  for await (const o of listAll(store.backend, '')) n += o.size;
  return n;
}

async function flipByte(store: Store, key: string, offset: number): Promise<void> {
  const bytes = await store.backend.getBytes(key);
  bytes[offset] = bytes[offset]! ^ 0xff;
  await store.backend.put(key, bytes);
}

const diffIDOf = (tar: Uint8Array) => parseDiffID(digestOf(tar));
const LAYER_GZIP = parseMediaType('application/vnd.oci.image.layer.v1.tar+gzip');
const LAYER_ZSTD = parseMediaType('application/vnd.oci.image.layer.v1.tar+zstd');

describe.each(BACKENDS)('store on $name', (backend) => {
  async function freshStore(policy?: BlobPolicy): Promise<Store> {
    return (await backend.location())(policy);
  }

  describe('backend contract', () => {
    it('puts bytes and streams, reads ranges, lists in key order with a cursor, deletes idempotently', async () => {
      const { backend: b } = await freshStore();
      const started = Date.now();
      await b.put('x/b', Buffer.from('bytes'));
      await b.put('x/a-z', chunked(TEXT, 1000));
      await b.put('x/a/c', Buffer.alloc(0));
      expect((await b.getBytes('x/a-z')).equals(TEXT)).toBe(true);
      expect(
        (await b.getBytes('x/a-z', { range: { offset: 1000, length: 10 } })).equals(
          TEXT.subarray(1000, 1010),
        ),
      ).toBe(true);
      expect(
        (await collect(await b.get('x/a-z', { range: { offset: 5, length: 3 } }))).equals(
          TEXT.subarray(5, 8),
        ),
      ).toBe(true);
      // A range that runs past the end gives the bytes there are (the caller checks the length).
      expect(
        (await b.getBytes('x/a-z', { range: { offset: TEXT.length - 4, length: 10 } })).equals(
          TEXT.subarray(TEXT.length - 4),
        ),
      ).toBe(true);
      // A range of many network chunks, filled into one buffer.
      const big = Buffer.alloc(3 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
      await b.put('x/big', big);
      const middle = await b.getBytes('x/big', { range: { offset: 1024 * 1024 + 3, length: 1536 * 1024 } });
      expect(middle.equals(big.subarray(1024 * 1024 + 3, 1024 * 1024 + 3 + 1536 * 1024))).toBe(true);
      await b.delete('x/big');
      expect(await b.head('x/b')).toEqual({ key: 'x/b', size: 5 });
      expect(await b.head('x/missing')).toBeUndefined();
      await expect(b.getBytes('x/missing')).rejects.toThrow(ObjectNotFoundError);
      const first = await b.list('x/', { limit: 2 });
      expect(first.objects.map((o) => o.key)).toEqual(['x/a-z', 'x/a/c']);
      const second = await b.list('x/', { after: first.cursor, limit: 2 });
      // With when it was written (S3's LastModified has whole seconds).
      expect(second).toEqual({
        objects: [{ key: 'x/b', size: 5, modified: expect.any(Number) as number }],
        cursor: undefined,
      });
      const modified = second.objects[0]!.modified!;
      expect(modified).toBeGreaterThan(started - 2000);
      expect(modified).toBeLessThanOrEqual(Date.now());
      expect((await b.list('x/a', {})).objects.map((o) => o.key)).toEqual(['x/a-z', 'x/a/c']);
      await b.delete('x/b');
      await b.delete('x/b');
      expect(await b.head('x/b')).toBeUndefined();
    });

    it('reads a range straight into scattered parts (many chunks, a short end, too many bytes)', async () => {
      const { backend: b } = await freshStore();
      const into = b.getBytesInto.bind(b);
      const big = Buffer.alloc(3 * MiB);
      for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
      await b.put('x/big', big);
      // Parts of many sizes, more than one preadv takes (IOV_MAX 1024), views of one shared buffer.
      const shared = new Uint8Array(new SharedArrayBuffer(2 * MiB + 4096));
      const sizes = Array.from({ length: 1500 }, (_, i) => (i % 7) * 300 + 1);
      const total = sizes.reduce((n, x) => n + x, 0);
      let at = 0;
      const parts = sizes.map((n) => {
        const view = shared.subarray(at, at + n);
        at += n + 1; // a byte between parts that no read may touch
        return view;
      });
      shared.fill(0xee);
      const offset = MiB + 5;
      expect(await into('x/big', { offset, length: total }, parts)).toBe(total);
      expect(Buffer.concat(parts).equals(big.subarray(offset, offset + total))).toBe(true);
      let gap = 0;
      for (const n of sizes) {
        gap += n;
        expect(shared[gap]).toBe(0xee);
        gap += 1;
      }
      // A range that runs past the end: the bytes there are, and how many.
      const tail = [new Uint8Array(6), new Uint8Array(10)];
      expect(await into('x/big', { offset: big.length - 8, length: 16 }, tail)).toBe(8);
      expect(Buffer.from(tail[0]!).equals(big.subarray(big.length - 8, big.length - 2))).toBe(true);
      expect(Buffer.from(tail[1]!.subarray(0, 2)).equals(big.subarray(big.length - 2))).toBe(true);
      await expect(into('x/missing', { offset: 0, length: 4 }, [new Uint8Array(4)])).rejects.toThrow(
        ObjectNotFoundError,
      );
      await b.delete('x/big');
    });

    it('publishes nothing when a stream put fails', async () => {
      const { backend: b } = await freshStore();
      const failing = Readable.from(
        (function* () {
          yield Buffer.alloc(9 * MiB, 1); // on S3: one part uploaded, then the upload is aborted
          throw new Error('source failed');
        })(),
      );
      await expect(b.put('x/failed', failing)).rejects.toThrow();
      expect(await b.head('x/failed')).toBeUndefined();
    });
  });

  describe('round trips byte for byte', () => {
    const cases: [string, () => Promise<{ tar: Buffer; files: [string, Buffer][] }>][] = [
      [
        'tar-stream: files, links, empty and long names',
        async () => ({
          tar: await packTar(tarStreamEntries()),
          files: [
            ['usr/share/doc/text.txt', TEXT],
            ['/usr/lib/big.so', BIG],
            ['usr/lib/big-link.so', BIG],
            ['./etc/os-release', Buffer.from('ID=stevedore')],
            ['empty', Buffer.alloc(0)],
            [`deep/${'a'.repeat(120)}/${'b'.repeat(90)}.txt`, Buffer.from('long!')],
            ['ünïcødé/файл', Buffer.from('utf8')],
          ],
        }),
      ],
      ...(['gnu', 'pax'] as const).map((format): (typeof cases)[number] => [
        `GNU tar --format=${format} of a real directory`,
        async () => {
          const dir = await tempDir('stevedore-tree-');
          await makeTree(dir);
          return {
            tar: await gnuTar(dir, format),
            files: [
              ['text.txt', TEXT],
              ['text-hardlink.txt', TEXT],
              ['big.bin', BIG],
              ['empty.txt', Buffer.alloc(0)],
              [`${'x'.repeat(80)}/${'y'.repeat(80)}/${'z'.repeat(100)}.txt`, TEXT.subarray(0, 5000)],
            ],
          };
        },
      ]),
      [
        'handcrafted: devices with huge sizes, hostile names, v7, PAX size, GNU long name, base-256',
        () =>
          Promise.resolve({
            tar: handcraftedTar(),
            files: [
              ['../../etc/passwd', Buffer.from('root:x:0:0::/root:/bin/sh\n')],
              ['/absolute/path', Buffer.from('root:x:0:0::/root:/bin/sh\n')],
              ['pax/renamed/entry', Buffer.alloc(100, 0x70)],
              [`gnu/${'long-'.repeat(40)}name`, Buffer.alloc(65, 0x47)],
              ['v7-file', Buffer.from('old style')],
              ['base256-sized', Buffer.alloc(513, 0x42)],
            ],
          }),
      ],
    ];

    it.each(cases)('%s', async (_name, make) => {
      const { tar, files } = await make();
      const store = await freshStore();
      const result = await store.importLayer(chunked(tar, 10_000));
      expect(result.diffID).toBe(diffIDOf(tar));
      expect(result.size).toBe(tar.length);
      expect(result.alreadyPresent).toBe(false);
      const rebuilt = await collect(await store.openLayer(result.diffID));
      expect(rebuilt.length).toBe(tar.length);
      expect(rebuilt.equals(tar)).toBe(true);
      for (const [path, content] of files) {
        const got = await collect(await store.readFile(result.diffID, path));
        expect(got.equals(content), path).toBe(true);
      }
    });

    it('reads an iterable in place: its producer may reuse a chunk once the next is asked for', async () => {
      const tar = await packTar(tarStreamEntries());
      // One buffer for every chunk, scribbled over as soon as the store asks for the next: a store
      // that kept a chunk (or a view of it) past that point would store the scribble.
      const reused = Buffer.alloc(10_000);
      let pulled = 0;
      async function* inPlace(): AsyncGenerator<Uint8Array> {
        for (let i = 0; i < tar.length; i += reused.length) {
          await turn(); // as a producer reading a file would: the store's other work runs meanwhile
          const n = tar.copy(reused, 0, i, i + reused.length);
          pulled++;
          yield reused.subarray(0, n);
          reused.fill(0xa5);
        }
      }
      const store = await freshStore();
      const result = await store.importLayer(inPlace());
      expect(result.diffID).toBe(diffIDOf(tar));
      expect(pulled).toBe(Math.ceil(tar.length / reused.length));
      expect((await collect(await store.openLayer(result.diffID))).equals(tar)).toBe(true);
      expect((await collect(await store.readFile(result.diffID, '/usr/lib/big.so'))).equals(BIG)).toBe(true);

      // Already stored: returns early without reading the iterable.
      pulled = 0;
      const again = await store.importLayer(inPlace(), { expectedDiffID: result.diffID });
      expect(again.alreadyPresent).toBe(true);
      expect(pulled).toBe(0);

      // An iterable that fails halfway: the import fails with its error and publishes nothing.
      const other = await packTar(randomFiles(300, 20, 30 * KiB));
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield other.subarray(0, other.length >> 1);
        await turn();
        throw new Error('producer failed');
      }
      await expect(store.importLayer(failing())).rejects.toThrow('producer failed');
      expect(await store.hasLayer(diffIDOf(other))).toBe(false);
    });

    it('pins the diffID of the handcrafted fixture', async () => {
      const store = await freshStore();
      const result = await store.importLayer(chunked(handcraftedTar()));
      expect(result.diffID).toBe('sha256:d1dc565bf26c9fddfc1824ff1bd8be064c2907176dd843e78b7f4958e8e29809');
    });
  });

  it('stores the same layer once: a second import writes no object, an expected diffID returns early', async () => {
    const store = await freshStore();
    const tar = await packTar(randomFiles(100, 50, 20 * KiB));
    const first = await store.importLayer(chunked(tar));
    expect(first.stats).toMatchObject({
      objectsWritten: 50,
      objectsReused: 0,
      bytesWritten: 50 * 20 * KiB,
      packsWritten: 1,
    });
    const before = await keys(store);

    const again = await store.importLayer(chunked(tar));
    expect(again.alreadyPresent).toBe(true);
    expect(again.stats).toMatchObject({
      objectsWritten: 0,
      objectsReused: 50,
      bytesWritten: 0,
      packsWritten: 0,
    });
    expect(await keys(store)).toEqual(before);

    const stats = snapshotStats(store.stats);
    const early = await store.importLayer(chunked(tar), { expectedDiffID: first.diffID });
    expect(early.alreadyPresent).toBe(true);
    expect(early.record).toEqual(first.record);
    expect(diffStats(store.stats, stats).requests).toMatchObject({ PUT: 0, DELETE: 0, LIST: 0 });
  });

  it('stores gzip and zstd versions of one tar once, by diffID', async () => {
    const store = await freshStore('drop');
    const tar = await packTar(randomFiles(200, 20, 10 * KiB));
    const diffID = diffIDOf(tar);
    const blobs = [
      { bytes: gzipSync(tar), mediaType: LAYER_GZIP, decompress: 'gunzip' as const },
      { bytes: zstdCompressSync(tar), mediaType: LAYER_ZSTD, decompress: 'zstd' as const },
    ];
    const results = [];
    for (const b of blobs) {
      const digest = digestOf(b.bytes);
      await store.putBlob(digest, chunked(b.bytes), { size: b.bytes.length });
      const { createGunzip, createZstdDecompress } = await import('node:zlib');
      const blob = await store.getBlob(digest);
      const tarStream = blob.pipe(b.decompress === 'gunzip' ? createGunzip() : createZstdDecompress());
      const r = await store.importLayer(tarStream, {});
      results.push(r);
      await store.commitLayer({ digest, diffID: r.diffID, size: b.bytes.length, mediaType: b.mediaType });
      expect(await store.hasBlob(digest)).toBe(false); // dropped: the policy is drop
      expect((await store.getLayerBlob(digest))?.diffID).toBe(diffID);
    }
    expect(results.map((r) => [r.diffID, r.alreadyPresent, r.stats.objectsWritten])).toEqual([
      [diffID, false, 20],
      [diffID, true, 0],
    ]);
    expect((await store.listLayers()).map((l) => l.diffID)).toEqual([diffID]);
    expect((await store.listLayerBlobs()).map((l) => l.diffID)).toEqual([diffID, diffID]);
  });

  it('adds about the changed files when 1% of the files change (drop policy)', async () => {
    const store = await freshStore('drop');
    const files = randomFiles(1000, 400, 25 * KiB);
    const a = await packTar(files);
    const changed = files.map((f, i) =>
      i % 100 === 7 ? { ...f, content: Buffer.from(randomFiles(5000 + i, 1, 25 * KiB)[0]!.content!) } : f,
    );
    const b = await packTar(changed);
    await store.importLayer(chunked(a));
    const bytesBefore = await totalBytes(store);

    const gz = gzipSync(b);
    const gzDigest = digestOf(gz);
    await store.putBlob(gzDigest, gz);
    const result = await store.importLayer(chunked(b));
    await store.commitLayer({
      digest: gzDigest,
      diffID: result.diffID,
      size: gz.length,
      mediaType: LAYER_GZIP,
    });

    expect(result.stats).toMatchObject({ objectsWritten: 4, objectsReused: 396, bytesWritten: 4 * 25 * KiB });
    const added = (await totalBytes(store)) - bytesBefore;
    expect(added).toBeGreaterThan(4 * 25 * KiB);
    expect(added / b.length).toBeLessThan(0.02);
    expect((await collect(await store.openLayer(result.diffID))).equals(b)).toBe(true);
  });

  it('writes one PUT per 8 MiB of new data plus a constant per layer', async () => {
    const store = await freshStore();
    // 400 x 100 KiB: packs flush at 8 MiB, i.e. every 82 files: 4 full packs and a last one.
    const tar = await packTar(randomFiles(3000, 400, 100 * KiB));
    const before = snapshotStats(store.stats);
    const r = await store.importLayer(chunked(tar));
    const d = diffStats(store.stats, before);
    expect(r.stats.packsWritten).toBe(5);
    // 5 packs, the splitstream, the index file, the layer record.
    expect(d.requests.PUT).toBe(8);
    expect(d.requests.POST).toBe(0);
  });

  describe('bad input leaves nothing visible', () => {
    const good = (): Promise<Buffer> => packTar(randomFiles(4000, 30, 10 * KiB));
    const cases: [string, () => Promise<Buffer>, RegExp, unknown][] = [
      [
        'a truncated tar',
        async () => (await good()).subarray(0, 150_000),
        /truncated in content/,
        MalformedTarError,
      ],
      [
        'a tar without end marker',
        async () => (await good()).subarray(0, 30 * (512 + 10 * KiB)),
        /missing end-of-archive marker/,
        MalformedTarError,
      ],
      ['an empty stream', () => Promise.resolve(Buffer.alloc(0)), /empty stream/, MalformedTarError],
      [
        'a bad header checksum',
        () => Promise.resolve(tarOf(entry({ name: 'x', content: TEXT, checksumDelta: 3 }))),
        /checksum mismatch/,
        MalformedTarError,
      ],
      [
        'garbage',
        () => Promise.resolve(Buffer.from(TEXT.subarray(0, 4096))),
        /malformed tar at byte 0/,
        MalformedTarError,
      ],
      [
        'a truncated tar after packs were written',
        async () => (await packTar(randomFiles(5000, 300, 100 * KiB))).subarray(0, 25 * MiB),
        /truncated in content/,
        MalformedTarError,
      ],
    ];
    it.each(cases)('%s', async (_name, make, message, errorClass) => {
      const store = await freshStore();
      const before = await keys(store);
      const tar = await make();
      const err: unknown = await store.importLayer(chunked(tar)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(errorClass);
      expect((err as Error).message).toMatch(message);
      expect(await keys(store)).toEqual(before);
      expect(await store.listLayers()).toEqual([]);
    });

    it('a diffID mismatch', async () => {
      const store = await freshStore();
      const before = await keys(store);
      const tar = await good();
      const wrong = parseDiffID(digestOf('not this layer'));
      const err: unknown = await store
        .importLayer(chunked(tar), { expectedDiffID: wrong })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DigestMismatchError);
      expect((err as DigestMismatchError).actual).toBe(diffIDOf(tar));
      expect(await keys(store)).toEqual(before);
    });

    it('a publish refused by the fencing check: no layer record, and the objects stay usable', async () => {
      const store = await freshStore();
      const tar = await good();
      const fenced = new Error('lock layer:x (fence 1) was lost before publishing');
      await expect(
        store.importLayer(chunked(tar), { beforePublish: () => Promise.reject(fenced) }),
      ).rejects.toBe(fenced);
      expect(await store.listLayers()).toEqual([]);
      // The next holder imports the same layer: it reuses the objects the fenced import indexed.
      const second = await store.importLayer(chunked(tar));
      expect(second.diffID).toBe(diffIDOf(tar));
      expect(second.stats.objectsWritten).toBe(0);
      const rebuilt = await buffer(await store.openLayer(second.diffID));
      expect(Buffer.compare(rebuilt, tar)).toBe(0);
    });

    it('an aborted import', async () => {
      const store = await freshStore();
      const before = await keys(store);
      const controller = new AbortController();
      const tar = await good();
      const slow = Readable.from(
        (function* () {
          yield tar.subarray(0, 100_000);
          controller.abort(new Error('stop now'));
          yield tar.subarray(100_000);
        })(),
      );
      await expect(store.importLayer(slow, { signal: controller.signal })).rejects.toThrow();
      expect(await keys(store)).toEqual(before);
    });
  });

  describe('corruption is detected on read, naming the key', () => {
    it('a flipped byte in a pack fails openLayer and readFile', async () => {
      const store = await freshStore();
      const tar = await packTar([{ header: { name: 'only.txt', size: TEXT.length }, content: TEXT }]);
      const { diffID } = await store.importLayer(chunked(tar));
      const [pack] = (await keys(store)).filter((k) => k.startsWith('packs/')).map((k) => k.split(' ')[0]!);
      await flipByte(store, pack!, 100);
      for (const read of [() => store.openLayer(diffID), () => store.readFile(diffID, 'only.txt')]) {
        const err: unknown = await read()
          .then((s) => collect(s))
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(CorruptObjectError);
        expect((err as CorruptObjectError).key).toBe(pack);
        expect((err as Error).message).toContain(`object sha256:${digestOf(TEXT).slice(7)}`);
      }
    });

    it('a flipped byte in a raw object fails openLayer at the diffID, and the second pass names the object', async () => {
      const store = await freshStore();
      const files = randomFiles(4242, 3, 100 * KiB); // incompressible: stored raw, no zstd frame to fail
      const tar = await packTar(files);
      const { diffID } = await store.importLayer(chunked(tar));
      const [pack] = (await keys(store)).filter((k) => k.startsWith('packs/')).map((k) => k.split(' ')[0]!);
      await flipByte(store, pack!, 100 * KiB + 10); // inside the second file's bytes
      const err: unknown = await collect(await store.openLayer(diffID)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CorruptObjectError);
      expect((err as CorruptObjectError).key).toBe(pack);
      expect((err as Error).message).toContain(
        `object sha256:${digestOf(files[1]!.content!).slice(7)} at offset ${100 * KiB}`,
      );
    });

    it('a flipped byte in a splitstream or a blob', async () => {
      const store = await freshStore();
      const tar = await packTar(randomFiles(6000, 5, 1000));
      const { diffID, record } = await store.importLayer(chunked(tar));
      await flipByte(store, record.splitstream.key, record.splitstream.size - 3);
      const err: unknown = await collect(await store.openLayer(diffID)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(CorruptObjectError);
      expect((err as CorruptObjectError).key).toBe(record.splitstream.key);

      const blob = Buffer.from('{"schemaVersion":2}');
      const digest = digestOf(blob);
      await store.putBlob(digest, blob);
      await flipByte(store, `blobs/sha256/${digest.slice(7)}`, 2);
      await expect(store.getBlobBytes(digest)).rejects.toThrow(CorruptObjectError);
      await expect(collect(await store.getBlob(digest))).rejects.toThrow(
        `corrupt object blobs/sha256/${digest.slice(7)}`,
      );
    });
  });

  it('imports the same layer concurrently, in one and in two store instances, safely', async () => {
    const open = await backend.location();
    const [s1, s2] = [await open(), await open()];
    const tar = await packTar(randomFiles(7000, 60, 50 * KiB));
    const results = await Promise.all([s1, s1, s2, s2].map((s) => s.importLayer(chunked(tar, 32 * KiB))));
    expect(new Set(results.map((r) => r.diffID))).toEqual(new Set([diffIDOf(tar)]));
    expect((await s2.listLayers()).length).toBe(1);
    for (const s of [s1, s2])
      expect((await collect(await s.openLayer(diffIDOf(tar)))).equals(tar)).toBe(true);
    // A later import in either instance finds every object.
    const again = await s1.importLayer(chunked(tar));
    expect(again.stats.objectsWritten).toBe(0);
  });

  it('reads a file by path: last entry wins, hard links followed, misses named', async () => {
    const store = await freshStore();
    const tar = tarOf(
      entry({
        name: 'dup.txt',
        content: Buffer.from('first version, long enough to be an object: '.repeat(3)),
      }),
      entry({ name: './dup.txt', content: Buffer.from('second') }),
      header({ name: 'link', typeflag: '1', linkname: 'dup.txt' }),
      header({ name: 'dir/', typeflag: '5' }),
    );
    const { diffID } = await store.importLayer(chunked(tar));
    expect((await collect(await store.readFile(diffID, 'dup.txt'))).toString()).toBe('second');
    expect((await collect(await store.readFile(diffID, '/link'))).toString()).toBe('second');
    await expect(store.readFile(diffID, 'missing')).rejects.toThrow(ObjectNotFoundError);
    await expect(store.readFile(diffID, 'dir')).rejects.toThrow('not a regular file');
  });

  it('verifies blobs on put and publishes nothing on mismatch', async () => {
    const store = await freshStore();
    const data = Buffer.from(TEXT.subarray(0, 70_000));
    const digest = digestOf(data);
    const wrong = digestOf('other');
    await expect(store.putBlob(wrong, chunked(data, 1000))).rejects.toThrow(DigestMismatchError);
    await expect(store.putBlob(wrong, data)).rejects.toThrow(DigestMismatchError);
    await expect(store.putBlob(digest, chunked(data), { size: data.length + 1 })).rejects.toThrow(
      DigestMismatchError,
    );
    expect(await store.hasBlob(wrong)).toBe(false);
    expect(await store.hasBlob(digest)).toBe(false);
    expect(await store.putBlob(digest, chunked(data))).toEqual({ written: true });
    expect(await store.putBlob(digest, chunked(data))).toEqual({ written: false });
    expect((await store.getBlobBytes(digest)).equals(data)).toBe(true);
    expect(await store.listBlobs()).toEqual([{ digest, size: data.length }]);
  });

  it('trusts a source that verifies itself only as far as its end: a failed source publishes nothing', async () => {
    const store = await freshStore();
    const data = Buffer.from(TEXT.subarray(0, 70_000));
    const digest = digestOf(data);
    // A source that fails after most of its bytes, as a registry stream does on a digest mismatch.
    async function* failing(): AsyncGenerator<Buffer> {
      yield data.subarray(0, 60_000);
      await new Promise((resolve) => setImmediate(resolve));
      throw new DigestMismatchError(`blob ${digest}`, digest, digestOf('other'));
    }
    await expect(
      store.putBlob(digest, Readable.from(failing()), { size: data.length, verifiedBySource: true }),
    ).rejects.toThrow(DigestMismatchError);
    expect(await store.hasBlob(digest)).toBe(false);
    expect(await store.putBlob(digest, chunked(data), { verifiedBySource: true })).toEqual({ written: true });
    expect((await store.getBlobBytes(digest)).equals(data)).toBe(true);

    // verify: false hands out the stored bytes as they are (its caller checks what it makes of them).
    await flipByte(store, `blobs/sha256/${digest.slice(7)}`, 2);
    await expect(collect(await store.getBlob(digest))).rejects.toThrow(CorruptObjectError);
    const raw = await collect(await store.getBlob(digest, { verify: false }));
    expect(raw.length).toBe(data.length);
    expect(raw.equals(data)).toBe(false);
  });

  it('publishes images after their layers and references last, and reindexes everything', async () => {
    const store = await freshStore();
    const tar = await packTar(randomFiles(8000, 3, 1000));
    const layerBlob = gzipSync(tar);
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const manifest = Buffer.from('{"schemaVersion":2,"layers":[]}');
    const [layerDigest, configDigest, manifestDigest] = [layerBlob, config, manifest].map((b) =>
      digestOf(b),
    ) as [Digest, Digest, Digest];
    const diffID = diffIDOf(tar);
    const image = {
      manifest: {
        digest: manifestDigest,
        size: manifest.length,
        mediaType: parseMediaType('application/vnd.oci.image.manifest.v1+json'),
      },
      config: {
        digest: configDigest,
        size: config.length,
        mediaType: parseMediaType('application/vnd.oci.image.config.v1+json'),
      },
      platform: { os: 'linux', architecture: 'amd64' },
      layers: [{ digest: layerDigest, diffID, size: layerBlob.length, mediaType: LAYER_GZIP }],
    };
    const ref = parseReference('localhost:5000/team/app:1.0');

    await expect(store.putImage(image)).rejects.toThrow(MissingDependencyError);
    await expect(store.setReference(ref, manifestDigest)).rejects.toThrow(MissingDependencyError);
    await expect(
      store.commitLayer({ digest: layerDigest, diffID, size: layerBlob.length, mediaType: LAYER_GZIP }),
    ).rejects.toThrow(`layer ${diffID} is not in the store`);

    await store.putBlob(layerDigest, layerBlob);
    await store.importLayer(chunked(tar));
    const link = await store.commitLayer({
      digest: layerDigest,
      diffID,
      size: layerBlob.length,
      mediaType: LAYER_GZIP,
    });
    expect(await store.hasBlob(layerDigest)).toBe(true); // keep policy
    await store.putBlob(configDigest, config);
    await store.putBlob(manifestDigest, manifest);
    const imageRecord = await store.putImage(image);
    const refRecord = await store.setReference(ref, manifestDigest);
    expect(refRecord.reference).toBe('localhost:5000/team/app:1.0');
    expect(await store.getReference(ref)).toEqual(refRecord);
    expect(await store.getImage(manifestDigest)).toEqual(imageRecord);

    const all = await store.reindex();
    expect(all.layers.map((l) => l.diffID)).toEqual([diffID]);
    expect(all.layerBlobs).toEqual([link]);
    expect(all.images).toEqual([imageRecord]);
    expect(all.references).toEqual([refRecord]);
    expect(all.blobs.map((b) => b.digest).sort()).toEqual([layerDigest, configDigest, manifestDigest].sort());

    await store.deleteReference(ref);
    expect(await store.listReferences()).toEqual([]);
  });

  it('keeps digest references next to tags: round trip, listing, deletion, pinned to their own digest', async () => {
    const store = await freshStore();
    const a = Buffer.from('{"schemaVersion":2,"a":1}');
    const b = Buffer.from('{"schemaVersion":2,"b":1}');
    const [digestA, digestB] = [digestOf(a), digestOf(b)];
    await store.putBlob(digestA, a);
    await store.putBlob(digestB, b);
    const tagRef = parseReference('localhost:5000/team/app:1.0');
    const digestRef = parseReference(`localhost:5000/team/app@${digestA}`);

    const tagRecord = await store.setReference(tagRef, digestB);
    const digestRecord = await store.setReference(digestRef, digestA);
    expect([digestRecord.reference, digestRecord.digest]).toEqual([
      `localhost:5000/team/app@${digestA}`,
      digestA,
    ]);
    expect(await store.getReference(digestRef)).toEqual(digestRecord);
    expect(await store.getReference(tagRef)).toEqual(tagRecord);
    const refKeys = (await keys(store)).filter((k) => k.startsWith('refs/')).map((k) => k.split(' ')[0]);
    expect(refKeys).toEqual([
      `refs/localhost:5000/team/app/_digests/sha256/${digestA.slice('sha256:'.length)}.json`,
      'refs/localhost:5000/team/app/_tags/1.0.json',
    ]);
    const byName = (x: { reference: string }, y: { reference: string }): number =>
      x.reference < y.reference ? -1 : 1;
    expect((await store.listReferences()).sort(byName)).toEqual([digestRecord, tagRecord].sort(byName));
    expect((await store.reindex()).references.sort(byName)).toEqual([digestRecord, tagRecord].sort(byName));

    // A digest reference points at its own digest and nothing else; the record stays as it was.
    await expect(store.setReference(digestRef, digestB)).rejects.toThrow(
      new DigestMismatchError(
        `cannot point localhost:5000/team/app@${digestA} at another digest than its own`,
        digestA,
        digestB,
      ),
    );
    expect(await store.getReference(digestRef)).toEqual(digestRecord);
    const absent = digestOf(Buffer.from('not stored'));
    await expect(
      store.setReference(parseReference(`localhost:5000/team/app@${absent}`), absent),
    ).rejects.toThrow(
      new MissingDependencyError(
        `cannot point localhost:5000/team/app@${absent} at ${absent}: blob not in the store`,
      ),
    );

    // With a tag and a digest, the reference is the tag's, pinned: it may only be set to that digest.
    const pinnedTag = parseReference(`localhost:5000/team/app:1.0@${digestA}`);
    await expect(store.setReference(pinnedTag, digestB)).rejects.toThrow(DigestMismatchError);
    const moved = await store.setReference(pinnedTag, digestA);
    expect([moved.reference, moved.digest]).toEqual(['localhost:5000/team/app:1.0', digestA]);
    expect(await store.getReference(tagRef)).toEqual(moved);
    expect(await store.getReference(pinnedTag)).toEqual(moved);

    await store.deleteReference(digestRef);
    expect(await store.getReference(digestRef)).toBeUndefined();
    expect(await store.listReferences()).toEqual([moved]);
    // Deleting again is not an error (as for tags); the blobs stay until garbage collection.
    await store.deleteReference(digestRef);
    expect([await store.hasBlob(digestA), await store.hasBlob(digestB)]).toEqual([true, true]);
  });
});

describe('S3 checksum modes', () => {
  it.each(['WHEN_SUPPORTED', 'WHEN_REQUIRED'] as const)(
    '%s: bytes and multipart streams round-trip',
    async (mode) => {
      const s3 = inject('stack').s3;
      const store = await openStore({
        backend: {
          kind: 's3',
          bucket: s3.bucket,
          prefix: `checksum-${randomUUID()}`,
          endpoint: s3.endpoint,
          region: s3.region,
          forcePathStyle: s3.forcePathStyle,
          credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
          requestChecksumCalculation: mode,
          responseChecksumValidation: mode,
        },
      });
      trackStore(store);
      const big = Buffer.concat([BIG, BIG, TEXT]); // over 8 MiB: a multipart upload
      const before = snapshotStats(store.stats);
      await store.backend.put('x/stream', chunked(big));
      await store.backend.put('x/bytes', TEXT);
      expect(diffStats(store.stats, before).requests).toMatchObject({ PUT: 3, POST: 2 });
      expect((await store.backend.getBytes('x/stream')).equals(big)).toBe(true);
      expect((await store.backend.getBytes('x/bytes')).equals(TEXT)).toBe(true);
    },
  );
});

describe('directory backend', () => {
  it('leaves no temporary files behind after failed imports', async () => {
    const path = await tempDir('stevedore-store-');
    const store = await openStore({ backend: { kind: 'directory', path } });
    trackStore(store);
    const tar = await packTar(randomFiles(9000, 200, 100 * KiB));
    await expect(store.importLayer(chunked(tar.subarray(0, tar.length - 5000)))).rejects.toThrow(
      MalformedTarError,
    );
    expect(await readdir(join(path, '.tmp'))).toEqual([]);
  });

  it('writes direct-write views exactly, whatever their length, and leaves no probe file', async () => {
    const path = await tempDir('stevedore-store-');
    const backend = await DirectoryBackend.open(path);
    const length = 3 * 4096 + 100;
    const buffer = new ArrayBuffer(length + DIRECT_WRITE_SLACK);
    const view = await backend.directWriteView(buffer, length);
    // The temp dir is on ext4 here (Linux, O_DIRECT): the view must be usable.
    expect(view).toBeInstanceOf(Uint8Array);
    expect(view!.length).toBe(length);
    expect(await backend.directWriteView(buffer, length)).toEqual(view); // the same place again
    const bytes = randomBytes(length);
    for (const n of [1, 4095, 4096, 4097, length]) {
      view!.set(bytes.subarray(0, n));
      await backend.put(`packs/p${n}`, view!.subarray(0, n));
      expect(await backend.getBytes(`packs/p${n}`)).toEqual(bytes.subarray(0, n));
    }
    expect(await readdir(join(path, '.tmp'))).toEqual([]);
    await expect(backend.directWriteView(new ArrayBuffer(length), length)).rejects.toThrow(
      /DIRECT_WRITE_SLACK/,
    );
  });
});
