/**
 * Starts the benchmarks' S3 server (s3-server.ts) as a child process, so its CPU and memory are not
 * counted as the store's. `stop` ends it.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export async function startS3(bucket: string): Promise<{ endpoint: string; stop: () => void }> {
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
