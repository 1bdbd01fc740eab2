import { fileURLToPath } from 'node:url';
import { LOOPBACK } from './ports.ts';
import { spawnManaged } from './process.ts';

export interface S3Options {
  /** Bucket created at start. */
  readonly bucket?: string;
  readonly region?: string;
}

/** What an S3 client needs; fauxqs accepts any credentials, these are for the SDK's signer. */
export interface S3Info {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly region: string;
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Path-style URLs: virtual-host style would need `BUCKET.127.0.0.1` to resolve. */
  readonly forcePathStyle: true;
}

export interface S3Server extends S3Info {
  /** The server's pid (also its process group id). */
  readonly pid: number;
  /** What the server printed. */
  logs(): string;
  /** Kills the server; its objects (kept in its memory) are gone. Safe to call twice. */
  stop(): Promise<void>;
}

export const DEFAULT_S3_BUCKET = 'stevedore-test';
export const DEFAULT_S3_REGION = 'us-east-1';
const SERVER_MAIN = fileURLToPath(new URL('./s3-server-main.ts', import.meta.url));

/**
 * The S3 wire protocol from the fauxqs package, in a child Node process on a free loopback port
 * (the child binds port 0 itself and reports it, so no port race), with a bucket created.
 * Objects live in the child's memory. fauxqs limits a request body to 11 MiB: single PUTs must be
 * smaller, larger objects go multipart (lib-storage `Upload` uses 5 MiB parts by default).
 */
export async function startS3(opts: S3Options = {}): Promise<S3Server> {
  const bucket = opts.bucket ?? DEFAULT_S3_BUCKET;
  const region = opts.region ?? DEFAULT_S3_REGION;
  const proc = spawnManaged(process.execPath, [SERVER_MAIN, region, bucket], { name: 'S3 server (fauxqs)' });
  let port: number;
  try {
    const [line] = await proc.waitForOutput(/\{"port":\d+\}/);
    port = (JSON.parse(line) as { port: number }).port;
  } catch (err) {
    await proc.stop();
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    endpoint: `http://${LOOPBACK}:${port}`,
    region,
    bucket,
    accessKeyId: 'stevedore-test',
    secretAccessKey: 'stevedore-test-secret',
    forcePathStyle: true,
    pid: proc.pid,
    logs: proc.output,
    stop: () => (stopped ??= proc.stop()),
  };
}
