/**
 * The two backends the store's suites run against (a directory in a temp dir, and S3 on the
 * stack's S3 server with a fresh key prefix per store), and their cleanup after each file.
 */
import '@stevedore/testing';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, inject } from 'vitest';
import { listAll, openStore, type BlobPolicy, type Store } from '../src/index.ts';

const tempDirs: string[] = [];
const stores: Store[] = [];

/** Closed after the file's tests. */
export function trackStore(store: Store): void {
  stores.push(store);
}
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

export async function tempDir(prefix: string): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

export interface BackendCase {
  readonly name: string;
  /** A fresh, empty store location; `open` opens a store on it (call twice: two "processes"). */
  location(): Promise<(policy?: BlobPolicy) => Promise<Store>>;
}

export const BACKENDS: BackendCase[] = [
  {
    name: 'directory',
    async location() {
      const path = await tempDir('stevedore-store-');
      return async (blobPolicy) => {
        const s = await openStore({ backend: { kind: 'directory', path }, blobPolicy });
        stores.push(s);
        return s;
      };
    },
  },
  {
    name: 's3',
    location() {
      const s3 = inject('stack').s3;
      const prefix = `store-test-${randomUUID()}`;
      return Promise.resolve(async (blobPolicy?: BlobPolicy) => {
        const s = await openStore({
          backend: {
            kind: 's3',
            bucket: s3.bucket,
            prefix,
            endpoint: s3.endpoint,
            region: s3.region,
            forcePathStyle: s3.forcePathStyle,
            credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
          },
          blobPolicy,
        });
        stores.push(s);
        return s;
      });
    },
  },
];

/** Every key in the store with its size, sorted. */
export async function keys(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const o of listAll(store.backend, '')) out.push(`${o.key} ${o.size}`);
  return out;
}
