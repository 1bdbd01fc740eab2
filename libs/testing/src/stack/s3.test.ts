import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  GetObjectCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type ListObjectsV2CommandOutput,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Digester } from '@stevedore/oci';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAlive } from './process.ts';
import { startS3, type S3Server } from './s3.ts';

const MIB = 1024 * 1024;
/** Over two 5 MiB parts, so lib-storage's Upload goes multipart with three parts. */
const UPLOAD_SIZE = 12 * MIB + 12_345;
const CHUNK = 64 * 1024;

/** Deterministic bytes of unknown length to the SDK, hashed as they are produced. */
function generated(size: number, digester: Digester): Readable {
  let produced = 0;
  return Readable.from(
    (function* () {
      while (produced < size) {
        const chunk = Buffer.alloc(Math.min(CHUNK, size - produced));
        for (let i = 0; i < chunk.length; i++) chunk[i] = (produced + i) % 251;
        produced += chunk.length;
        digester.update(chunk);
        yield chunk;
      }
    })(),
  );
}

describe('startS3', () => {
  let s3: S3Server;
  let client: S3Client;
  beforeAll(async () => {
    s3 = await startS3();
    // Default checksum settings on purpose: the SDK's CRC32 trailers and aws-chunked bodies.
    client = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: s3.forcePathStyle,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
  });
  afterAll(async () => {
    client.destroy();
    await s3.stop();
  });

  it('serves on 127.0.0.1 with the bucket created', async () => {
    expect(s3.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const head = await client.send(new HeadBucketCommand({ Bucket: s3.bucket }));
    expect(head.$metadata.httpStatusCode).toBe(200);
  });

  it('takes a streamed multipart upload of unknown length and reads it back intact', async () => {
    const written = new Digester('sha256');
    const upload = new Upload({
      client,
      params: { Bucket: s3.bucket, Key: 'big/object', Body: generated(UPLOAD_SIZE, written) },
    });
    const parts: number[] = [];
    upload.on('httpUploadProgress', (p) => {
      if (p.part !== undefined) parts.push(p.part);
    });
    const done = await upload.done();
    expect(done.ETag).toMatch(/^"[0-9a-f]{32}-3"$/);
    expect(parts.sort()).toEqual([1, 2, 3]);

    const got = await client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: 'big/object' }));
    expect(got.ContentLength).toBe(UPLOAD_SIZE);
    const read = new Digester('sha256');
    await pipeline(got.Body as Readable, async (source: AsyncIterable<Buffer>) => {
      for await (const chunk of source) read.update(chunk);
    });
    expect(read.size).toBe(UPLOAD_SIZE);
    expect(read.digest()).toBe(written.digest());
  });

  it('paginates ListObjectsV2 and groups by Delimiter', async () => {
    const keys = [
      ...Array.from({ length: 7 }, (_, i) => `list/a/${i}`),
      ...Array.from({ length: 5 }, (_, i) => `list/b/${i}`),
      'list/top-1',
      'list/top-2',
    ];
    await Promise.all(
      keys.map((Key) => client.send(new PutObjectCommand({ Bucket: s3.bucket, Key, Body: Key }))),
    );

    const pages: string[][] = [];
    let token: string | undefined;
    do {
      const page: ListObjectsV2CommandOutput = await client.send(
        new ListObjectsV2Command({
          Bucket: s3.bucket,
          Prefix: 'list/',
          MaxKeys: 5,
          ContinuationToken: token,
        }),
      );
      pages.push((page.Contents ?? []).map((o) => o.Key!));
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    expect(pages.map((p) => p.length)).toEqual([5, 5, 4]);
    expect(pages.flat()).toEqual([...keys].sort());

    const grouped = await client.send(
      new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: 'list/', Delimiter: '/' }),
    );
    expect(grouped.CommonPrefixes?.map((p) => p.Prefix)).toEqual(['list/a/', 'list/b/']);
    expect(grouped.Contents?.map((o) => o.Key)).toEqual(['list/top-1', 'list/top-2']);
    expect(grouped.KeyCount).toBe(4);
  });

  // Last: it stops the shared server (a second fauxqs would cost a second of startup).
  it('stop() kills the server; twice is fine', async () => {
    expect(isAlive(s3.pid)).toBe(true);
    await s3.stop();
    await s3.stop();
    expect(isAlive(s3.pid)).toBe(false);
    await expect(fetch(s3.endpoint)).rejects.toThrow();
  });
});
