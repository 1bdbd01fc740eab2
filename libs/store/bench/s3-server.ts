/**
 * Child-process S3 server for the benchmark: fauxqs (in memory) on 127.0.0.1, a free port, with
 * the bucket created. Prints `{"port":N}` when ready; exits when stdin closes. A separate process,
 * so the server's CPU and memory are not counted as the store's.
 *
 * argv: BUCKET
 */
import { buildApp } from 'fauxqs';

const [bucket] = process.argv.slice(2);
if (bucket === undefined) throw new Error('usage: s3-server.ts BUCKET');
const app = buildApp({ logger: false, defaultRegion: 'us-east-1' });
const created = await app.inject({ method: 'PUT', url: `/${bucket}` });
if (created.statusCode !== 200)
  throw new Error(`creating bucket ${bucket}: ${created.statusCode} ${created.body}`);
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error('fauxqs: no TCP address');
process.stdin.on('end', () => {
  void app.close().then(() => process.exit(0));
});
process.stdin.resume();
process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
