/**
 * Child-process entry of {@link startS3}: fauxqs's S3 (its Fastify app, in memory) listening on
 * 127.0.0.1 port 0. `startFauxqs()` always binds 0.0.0.0, so this builds the app and listens
 * itself. Prints one JSON line `{"port":N}` once the bucket exists and the port accepts
 * connections. Exits when its stdin closes (the parent is gone) or on SIGTERM.
 *
 * argv: REGION BUCKET
 */
import { buildApp } from 'fauxqs';

const [region, bucket] = process.argv.slice(2);
if (region === undefined || bucket === undefined) throw new Error('usage: s3-server-main.ts REGION BUCKET');

const app = buildApp({ logger: false, defaultRegion: region });
const created = await app.inject({ method: 'PUT', url: `/${bucket}` });
if (created.statusCode !== 200) {
  throw new Error(`creating bucket ${bucket} answered ${created.statusCode}: ${created.body}`);
}
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error('fauxqs: no TCP address');

const shutdown = (): void => {
  app.close().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error('fauxqs close failed', err);
      process.exit(1);
    },
  );
};
process.once('SIGTERM', shutdown);
process.stdin.on('end', shutdown);
process.stdin.resume();
process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
