/**
 * The S3 backend (@aws-sdk/client-s3). Keys live under an optional prefix in one bucket.
 *
 * - Puts of bytes are one PutObject; puts of streams go through @aws-sdk/lib-storage's Upload (one
 *   PutObject when the stream is shorter than a part, else a multipart upload that becomes visible
 *   only when completed, and is aborted if the stream errors). So nothing partial is ever visible.
 * - Endpoint, region, path-style and credentials come from the config, falling back to the SDK's
 *   standard chain (AWS_REGION, AWS_ACCESS_KEY_ID, shared config files, …).
 * - `requestChecksumCalculation` / `responseChecksumValidation` default to WHEN_REQUIRED: the store
 *   verifies every object against its sha256 on read, and several S3-compatible servers reject the
 *   aws-chunked uploads that WHEN_SUPPORTED produces for streams.
 * - Every HTTP request (including retries and multipart parts) is counted by method, LIST apart.
 */
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { Readable } from 'node:stream';
import { isPassThrough, ObjectNotFoundError } from '../errors.ts';
import { noteBufferChurn } from '../heap-tuning.ts';
import {
  countBytes,
  newStats,
  ScatterCopy,
  type Backend,
  type BackendStats,
  type ByteRange,
  type GetOptions,
  type ListOptions,
  type ListPage,
  type ObjectInfo,
  type PutOptions,
  type RequestKind,
} from './backend.ts';
import { checkKey } from './directory.ts';

export type ChecksumMode = 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';

export interface S3BackendConfig {
  readonly bucket: string;
  /** Key prefix inside the bucket (no leading or trailing `/` needed). */
  readonly prefix?: string;
  readonly endpoint?: string;
  readonly region?: string;
  readonly forcePathStyle?: boolean;
  /** Static credentials; omitted means the SDK's default provider chain. */
  readonly credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  readonly requestChecksumCalculation?: ChecksumMode;
  readonly responseChecksumValidation?: ChecksumMode;
  readonly maxAttempts?: number;
  /**
   * Multipart part size for stream puts (bytes, >= 5 MiB). Default 8 MiB: streams shorter than
   * that are one PUT.
   */
  readonly partSize?: number;
}

/** S3's minimum part size, and our default: a stream under 8 MiB is a single PUT. */
const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
/** Parts uploaded at once per stream put (memory: queueSize × partSize). */
const UPLOAD_QUEUE_SIZE = 2;
const HTTP_NOT_FOUND = 404;

function isNotFound(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return err.name === 'NoSuchKey' || err.name === 'NotFound' || status === HTTP_NOT_FOUND;
}

export class S3Backend implements Backend {
  readonly description: string;
  readonly stats: BackendStats = newStats();
  readonly client: S3Client;
  readonly bucket: string;
  readonly #prefix: string;
  readonly #partSize: number;

  constructor(config: S3BackendConfig) {
    this.bucket = config.bucket;
    const p = (config.prefix ?? '').replace(/^\/+|\/+$/g, '');
    this.#prefix = p === '' ? '' : `${p}/`;
    this.#partSize = config.partSize ?? DEFAULT_PART_SIZE;
    this.description = `s3://${config.bucket}/${this.#prefix}`;
    const clientConfig: S3ClientConfig = {
      requestChecksumCalculation: config.requestChecksumCalculation ?? 'WHEN_REQUIRED',
      responseChecksumValidation: config.responseChecksumValidation ?? 'WHEN_REQUIRED',
    };
    if (config.endpoint !== undefined) clientConfig.endpoint = config.endpoint;
    if (config.region !== undefined) clientConfig.region = config.region;
    if (config.forcePathStyle !== undefined) clientConfig.forcePathStyle = config.forcePathStyle;
    if (config.credentials !== undefined) clientConfig.credentials = config.credentials;
    if (config.maxAttempts !== undefined) clientConfig.maxAttempts = config.maxAttempts;
    this.client = new S3Client(clientConfig);
    this.client.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { method?: string; query?: Record<string, unknown> };
        this.stats.requests[requestKind(request.method, request.query)]++;
        return next(args);
      },
      // Low priority in finalizeRequest runs inside the retry middleware: every attempt counts.
      { step: 'finalizeRequest', priority: 'low', name: 'stevedoreRequestCounter' },
    );
  }

  #key(key: string): string {
    checkKey(key);
    return this.#prefix + key;
  }

  async put(key: string, body: Uint8Array | Readable, options: PutOptions = {}): Promise<void> {
    const Key = this.#key(key);
    try {
      if (body instanceof Uint8Array) {
        await this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key, Body: body, ContentLength: body.length }),
          { abortSignal: options.signal },
        );
        this.stats.bytesWritten += body.length;
        return;
      }
      let sent = 0;
      const counted = countBytes(body, (n) => {
        sent += n;
      });
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.bucket, Key, Body: counted, ContentLength: options.size },
        partSize: this.#partSize,
        queueSize: UPLOAD_QUEUE_SIZE,
        leavePartsOnError: false,
      });
      const onAbort = (): void => void upload.abort();
      options.signal?.addEventListener('abort', onAbort, { once: true });
      // The body's own failure (a blob that fails its digest, a broken source) ends the put with
      // that error. lib-storage does not always settle done() when its body errors at an unlucky
      // moment (aws-sdk-js-v3 #6118 is one such case): seen here as a pull that never finished.
      const bodyFailed = new Promise<never>((_, reject) => counted.once('error', reject));
      const done = upload.done();
      // The race below reports whichever comes first; the other must not go unhandled.
      done.catch(() => undefined);
      bodyFailed.catch(() => undefined);
      try {
        await Promise.race([done, bodyFailed]);
      } catch (err) {
        void upload.abort().catch(() => undefined);
        throw err;
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
        if (!counted.destroyed && !counted.readableEnded) counted.destroy();
      }
      this.stats.bytesWritten += sent;
    } catch (err) {
      throw wrap(err, `put ${key} to ${this.description} failed`);
    }
  }

  async get(key: string, options: GetOptions = {}): Promise<Readable> {
    const range = options.range;
    if (range?.length === 0) return Readable.from([]);
    try {
      const out = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.#key(key),
          Range: range === undefined ? undefined : `bytes=${range.offset}-${range.offset + range.length - 1}`,
        }),
        { abortSignal: options.signal },
      );
      const body = out.Body as Readable | undefined;
      if (body === undefined) return Readable.from([]);
      return countBytes(body, (n) => {
        this.stats.bytesRead += n;
      });
    } catch (err) {
      if (isNotFound(err))
        throw new ObjectNotFoundError(key, `not found: ${key} in ${this.description}`, { cause: err });
      throw wrap(err, `get ${key} from ${this.description} failed`);
    }
  }

  async getBytes(key: string, options: GetOptions = {}): Promise<Buffer> {
    const range = options.range;
    if (range !== undefined) {
      // A range's length is known: the body goes straight into one buffer (gathering the parts
      // and concatenating them held each range twice, the rebuild's largest allocation on S3).
      const buf = Buffer.allocUnsafe(range.length);
      const filled = await this.getBytesInto(key, range, [buf], options.signal);
      return filled === buf.length ? buf : buf.subarray(0, filled);
    }
    const stream = await this.get(key, options);
    try {
      const parts: Buffer[] = [];
      let length = 0;
      for await (const chunk of stream) {
        parts.push(chunk as Buffer);
        length += (chunk as Buffer).length;
      }
      return Buffer.concat(parts, length);
    } catch (err) {
      throw wrap(err, `get ${key} from ${this.description} failed`);
    }
  }

  async getBytesInto(
    key: string,
    range: ByteRange,
    parts: readonly Uint8Array[],
    signal?: AbortSignal,
  ): Promise<number> {
    if (range.length === 0) return 0;
    const stream = await this.get(key, { range, signal });
    try {
      // Each chunk of the response is copied once, straight to its place; the chunks are garbage
      // then (heap-tuning.ts paces GCs to it).
      const into = new ScatterCopy(parts);
      for await (const chunk of stream) {
        if (!into.write(chunk as Buffer)) {
          throw new Error(`${this.description} sent more than the ${range.length} bytes asked for`);
        }
      }
      noteBufferChurn(into.filled);
      return into.filled;
    } catch (err) {
      throw wrap(err, `get ${key} from ${this.description} failed`);
    }
  }

  async head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    try {
      const out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }),
        {
          abortSignal: options.signal,
        },
      );
      return { key, size: out.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw wrap(err, `head ${key} in ${this.description} failed`);
    }
  }

  async list(prefix: string, options: ListOptions = {}): Promise<ListPage> {
    try {
      const out = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: this.#prefix + prefix,
          StartAfter: options.after === undefined ? undefined : this.#prefix + options.after,
          MaxKeys: options.limit,
        }),
        { abortSignal: options.signal },
      );
      const objects = (out.Contents ?? []).map((o) => ({
        key: (o.Key ?? '').slice(this.#prefix.length),
        size: o.Size ?? 0,
        modified: o.LastModified?.getTime(),
      }));
      const last = objects.at(-1);
      return { objects, cursor: out.IsTruncated === true && last !== undefined ? last.key : undefined };
    } catch (err) {
      throw wrap(err, `list ${prefix} in ${this.description} failed`);
    }
  }

  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }), {
        abortSignal: options.signal,
      });
    } catch (err) {
      if (isNotFound(err)) return;
      throw wrap(err, `delete ${key} in ${this.description} failed`);
    }
  }

  /** S3 acknowledges a PUT once it is durable: nothing to do. */
  async sync(): Promise<void> {}

  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }
}

function requestKind(method: string | undefined, query: Record<string, unknown> | undefined): RequestKind {
  switch (method) {
    case 'PUT':
      return 'PUT';
    case 'HEAD':
      return 'HEAD';
    case 'DELETE':
      return 'DELETE';
    case 'POST':
      return 'POST';
    default:
      return query !== undefined && 'list-type' in query ? 'LIST' : 'GET';
  }
}

/** Store errors raised by a body stream (digest mismatch, malformed tar) pass through unwrapped. */
function wrap(err: unknown, message: string): Error {
  if (isPassThrough(err)) return err;
  return new Error(message, { cause: err });
}
