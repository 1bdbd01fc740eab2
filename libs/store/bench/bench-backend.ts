/**
 * Where the store benchmarks put their stores: a fresh temporary directory, or a fresh prefix on
 * S3: the local S3 server (s3-server.ts) as a child process, so its CPU and memory are not counted
 * as the store's, unless STEVEDORE_BENCH_S3_ENDPOINT names another (with STEVEDORE_BENCH_S3_BUCKET
 * and _REGION, credentials from the environment).
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BackendConfig } from '../src/index.ts';

async function startS3(bucket: string): Promise<{ endpoint: string; stop: () => void }> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./s3-server.ts', import.meta.url)), bucket], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      const m = /\{"port":(\d+)\}/.exec(s);
      if (m !== null) resolve(Number(m[1]));
    });
    child.on('close', (code) => reject(new Error(`S3 server exited with ${code}`)));
  });
  return { endpoint: `http://127.0.0.1:${port}`, stop: () => child.stdin.end() };
}

/** A fresh store location of `kind`, and how to remove it (and stop its S3 server). */
export async function benchBackend(
  kind: 'directory' | 's3',
): Promise<{ config: BackendConfig; cleanup: () => Promise<void> }> {
  if (kind === 'directory') {
    const path = await mkdtemp(join(tmpdir(), 'stevedore-bench-'));
    return { config: { kind: 'directory', path }, cleanup: () => rm(path, { recursive: true, force: true }) };
  }
  const bucket = process.env.STEVEDORE_BENCH_S3_BUCKET ?? 'bench';
  const external = process.env.STEVEDORE_BENCH_S3_ENDPOINT;
  const server = external === undefined ? await startS3(bucket) : undefined;
  return {
    config: {
      kind: 's3',
      bucket,
      prefix: `bench-${randomUUID()}`,
      endpoint: external ?? server!.endpoint,
      region: process.env.STEVEDORE_BENCH_S3_REGION ?? 'us-east-1',
      forcePathStyle: true,
      ...(external === undefined ? { credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } } : {}),
    },
    cleanup: () => Promise.resolve(server?.stop()),
  };
}
