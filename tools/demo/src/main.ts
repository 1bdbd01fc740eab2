/**
 * npm run demo: the whole product on one machine, against real servers on loopback.
 *
 * 1. Starts Redis and the distribution registry (behind a proxy that counts what it serves).
 * 2. Builds two images that share a base layer and pushes them.
 * 3. Starts the fetcher, hasher/compressor and committer as separate processes, and the API.
 * 4. Pulls both images at once through the queue, with a progress bar per layer.
 * 5. Prints the dedup figures: registry bytes served against unique bytes, and what the store holds.
 * 6. Exports one image with `stevedore export` and verifies the archive with skopeo.
 * 7. Reads the whole store back with `stevedore verify`.
 * 8. Removes app-b (`stevedore rm`) and collects what only it used (`stevedore gc`, while the
 *    workers wait behind its gate), then verifies again.
 * 9. Leaves the API and Bull Board running, with their address and credentials, until Ctrl-C
 *    (`npm run demo -- --exit` stops instead).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient, parseReference } from '@stevedore/oci';
import {
  PullSubmitter,
  plainView,
  producerConnection,
  terminalView,
  type PullStatus,
} from '@stevedore/pipeline';
import { openStore } from '@stevedore/store';
import {
  buildImageFromTrees,
  deriveTree,
  generateTree,
  pushImage,
  startApiProcess,
  startFaultProxy,
  startRedis,
  startRegistry,
  startWorkerProcess,
} from '@stevedore/testing';

const STATUS_INTERVAL_MS = 250;
const CLI = fileURLToPath(new URL('../../../apps/cli/bin/stevedore.mjs', import.meta.url));
const run = promisify(execFile);
const MB = 1000 * 1000;
/** 24 random bytes: a 32-character API token. */
const TOKEN_BYTES = 24;

function say(text = ''): void {
  process.stdout.write(`${text}\n`);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  await new Promise<void>((done) => server.close(() => done()));
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

async function follow(submitter: PullSubmitter, ids: readonly string[]): Promise<PullStatus[]> {
  const view = process.stdout.isTTY ? terminalView(process.stdout) : plainView(process.stdout);
  for (;;) {
    const statuses = (await Promise.all(ids.map((id) => submitter.status(id)))).filter(
      (s) => s !== undefined,
    );
    view.update(statuses);
    const failed = statuses.find((s) => s.state === 'failed');
    if (failed !== undefined) throw new Error(`pull ${failed.ref} failed: ${failed.failedReason ?? '?'}`);
    if (statuses.length === ids.length && statuses.every((s) => s.state === 'completed')) {
      view.done();
      return statuses;
    }
    await new Promise((r) => setTimeout(r, STATUS_INTERVAL_MS));
  }
}

async function main(): Promise<void> {
  const keepRunning = !process.argv.includes('--exit');
  const work = await mkdtemp(join(tmpdir(), 'stevedore-demo-'));
  const storeDir = join(work, 'store');
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.reverse()) await stop();
    await rm(work, { recursive: true, force: true });
  };
  try {
    const redis = await startRedis();
    stops.push(() => redis.stop());
    const registry = await startRegistry({ auth: 'none' });
    stops.push(() => registry.stop());
    const proxy = await startFaultProxy({ upstream: registry.url });
    stops.push(() => proxy.stop());
    say(`redis     ${redis.url}`);
    say(`registry  ${registry.url} (served through a counting proxy at ${proxy.url})`);
    say(`store     ${storeDir}`);

    say('\n1. building two images that share a base layer, and pushing them');
    const base = generateTree({ seed: 1, files: 1500, largeFiles: 3, content: 'mixed' });
    const appA = generateTree({ seed: 2, files: 300, root: 'app' });
    const appB = deriveTree(appA, { seed: 3, fraction: 0.05 }).tree;
    const imageA = await buildImageFromTrees([base, appA], { compression: 'gzip' });
    const imageB = await buildImageFromTrees([base, appB], { compression: 'gzip' });
    const client = new RegistryClient();
    const refs = [`${proxy.host}/demo/app-a:1.0`, `${proxy.host}/demo/app-b:1.0`];
    await pushImage(client, parseReference(refs[0] ?? ''), imageA);
    await pushImage(client, parseReference(refs[1] ?? ''), imageB);
    const unique = new Map<string, number>();
    for (const image of [imageA, imageB]) {
      for (const layer of image.layerDescriptors) unique.set(layer.digest, layer.size);
      unique.set(image.config.descriptor.digest, image.config.descriptor.size);
    }
    const uniqueBytes = [...unique.values()].reduce((a, b) => a + b, 0);
    const pushedTwice = [imageA, imageB].flatMap((i) => i.layerDescriptors).reduce((n, l) => n + l.size, 0);
    proxy.resetCounters();

    say('2. starting the fetcher, the hasher/compressor and the committer (separate processes), and the API');
    const env = { STEVEDORE_REDIS_URL: redis.url, STEVEDORE_STORE: storeDir };
    for (const role of ['fetcher', 'hasher', 'committer'] as const) {
      const worker = await startWorkerProcess({ role, env });
      stops.push(() => worker.stop());
    }
    const token = randomBytes(TOKEN_BYTES).toString('base64url');
    const apiPort = await freePort();
    const api = await startApiProcess({
      env: {
        ...env,
        STEVEDORE_API_TOKEN: token,
        STEVEDORE_API_PORT: String(apiPort),
        STEVEDORE_API_HOST: '127.0.0.1',
      },
    });
    stops.push(() => api.stop());

    say('3. pulling both images at once through the queue\n');
    const connection = producerConnection(redis.url);
    const submitter = new PullSubmitter(connection);
    stops.push(async () => {
      await submitter.close();
      connection.disconnect();
    });
    const started = Date.now();
    const ids = await Promise.all(refs.map((ref) => submitter.submit(ref)));
    const done = await follow(submitter, ids);
    const seconds = (Date.now() - started) / 1000;

    const served = proxy.bytesServed(/\/blobs\/sha256:/, 'GET');
    const store = await openStore({ backend: { kind: 'directory', path: storeDir } });
    const layers = await store.listLayers();
    const uncompressed = layers.reduce((n, l) => n + l.size, 0);
    const stored = layers.reduce(
      (n, l) => n + l.stats.bytesStored + l.stats.splitstreamBytes + l.stats.inlineBytes,
      0,
    );
    const reused = layers.reduce((n, l) => n + l.stats.objectsReused, 0);
    const written = layers.reduce((n, l) => n + l.stats.objectsWritten, 0);
    await store.close();

    say('\n4. dedup figures');
    for (const s of done)
      say(`   pulled ${s.ref} -> ${s.result?.resolvedDigest ?? '?'} in ${seconds.toFixed(1)} s`);
    say(
      `   registry bytes served       ${(served / MB).toFixed(2)} MB for ${(uniqueBytes / MB).toFixed(2)} MB of unique blobs: ratio ${(served / uniqueBytes).toFixed(2)}`,
    );
    say(`   (two independent pulls would transfer ${(pushedTwice / MB).toFixed(2)} MB of layers)`);
    say(`   layers stored               ${layers.length} (${(uncompressed / MB).toFixed(2)} MB of tar)`);
    say(`   file objects                ${written} written, ${reused} reused`);
    say(
      `   store bytes for the layers  ${(stored / MB).toFixed(2)} MB (objects zstd-compressed where it pays)`,
    );

    say('\n5. exporting app-a as a docker archive, and checking it with skopeo');
    const archive = join(work, 'app-a.tar');
    const exported = await run(
      process.execPath,
      [CLI, 'export', refs[0] ?? '', '-o', archive, '--format', 'docker'],
      {
        env: { ...process.env, ...env },
      },
    );
    say(`   ${exported.stderr.trim() || exported.stdout.trim()}`);
    say(`   ${archive}: ${((await stat(archive)).size / MB).toFixed(2)} MB`);
    const inspected = await run('skopeo', ['inspect', '--config', `docker-archive:${archive}`]).catch(
      (err: unknown) => err,
    );
    if (inspected instanceof Error) {
      say(`   skopeo could not check it: ${inspected.message}`);
    } else {
      const config = JSON.parse((inspected as { stdout: string }).stdout) as {
        rootfs: { diff_ids: string[] };
      };
      const same =
        JSON.stringify(config.rootfs.diff_ids) === JSON.stringify(imageA.layers.map((l) => l.diffId));
      say(`   skopeo reads it; its layers' diffIDs ${same ? 'equal' : 'DIFFER FROM'} the pushed image's`);
      if (!same) throw new Error('the exported archive does not hold the pushed image');
    }

    say('\n6. reading the whole store back with `stevedore verify` (every layer rebuilt to its diffID)');
    const verified = await run(process.execPath, [CLI, 'verify'], { env: { ...process.env, ...env } });
    say(`   ${verified.stdout.trim()}`);

    say('\n7. removing app-b and collecting what only it used (`stevedore rm`, `stevedore gc`)');
    const cli = (args: string[]): Promise<{ stdout: string; stderr: string }> =>
      run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    say(`   ${(await cli(['rm', refs[1] ?? ''])).stdout.trim()}`);
    for (const line of (await cli(['gc'])).stdout.trim().split('\n')) say(`   ${line}`);
    say(`   ${(await cli(['verify'])).stdout.trim()}`);

    say('\n8. the API and Bull Board');
    say(`   api         http://127.0.0.1:${apiPort}/v1/images   (Authorization: Bearer ${token})`);
    say(`   bull board  http://127.0.0.1:${apiPort}/admin/queues   (user admin, password ${token})`);
    say(`   metrics     http://127.0.0.1:${apiPort}/metrics`);
    if (keepRunning) {
      say('\nrunning until Ctrl-C');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
  } finally {
    await stopAll();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
