/**
 * npm run demo: starts Redis and a registry on free loopback ports, builds and pushes two images
 * that share a base layer, runs the three services as separate processes on a directory store,
 * pulls both images at once through the queue, and prints what the registry served against the
 * unique bytes, and what the store holds.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient, parseReference } from '@stevedore/oci';
import { PullSubmitter, producerConnection, type PullStatus } from '@stevedore/pipeline';
import { openStore } from '@stevedore/store';
import {
  buildImageFromTrees,
  deriveTree,
  generateTree,
  pushImage,
  startFaultProxy,
  startRedis,
  startRegistry,
  startWorkerProcess,
  type WorkerProcess,
} from '@stevedore/testing';

const STATUS_INTERVAL_MS = 400;
const MiB = 1024 * 1024;

function line(text = ''): void {
  process.stdout.write(`${text}\n`);
}

async function follow(submitter: PullSubmitter, ids: readonly string[]): Promise<PullStatus[]> {
  const shown = new Map<string, string>();
  for (;;) {
    const statuses = await Promise.all(ids.map((id) => submitter.status(id)));
    for (const status of statuses) {
      if (status === undefined) throw new Error('a pull disappeared from the queue');
      for (const layer of status.layers) {
        const text = `${status.ref.padEnd(34)} ${layer.digest.slice(7, 19)} ${layer.outcome.padEnd(8)} ${(layer.bytes / MiB).toFixed(1).padStart(6)}/${(layer.size / MiB).toFixed(1)} MiB  ${layer.commitState === 'completed' ? 'committed' : ''}`;
        const key = `${status.id}/${layer.digest}`;
        if (shown.get(key) !== text) {
          shown.set(key, text);
          line(`  ${text}`);
        }
      }
      if (status.state === 'failed')
        throw new Error(`pull ${status.ref} failed: ${status.failedReason ?? '?'}`);
    }
    if (statuses.every((s) => s?.state === 'completed')) return statuses as PullStatus[];
    await new Promise((r) => setTimeout(r, STATUS_INTERVAL_MS));
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'stevedore-demo-'));
  const storeDir = join(work, 'store');
  const redis = await startRedis();
  const registry = await startRegistry({ auth: 'none' });
  const proxy = await startFaultProxy({ upstream: registry.url });
  const workers: WorkerProcess[] = [];
  try {
    line(`redis ${redis.url}   registry ${registry.url} (counted through ${proxy.url})   store ${storeDir}`);

    line('building two images that share a base layer ...');
    const base = generateTree({ seed: 1, files: 400, largeFiles: 2, content: 'mixed' });
    const appA = generateTree({ seed: 2, files: 120, root: 'app' });
    const appB = deriveTree(appA, { seed: 3, fraction: 0.05 }).tree;
    const imageA = await buildImageFromTrees([base, appA], { compression: 'gzip' });
    const imageB = await buildImageFromTrees([base, appB], { compression: 'gzip' });
    const client = new RegistryClient();
    const refA = parseReference(`${proxy.host}/demo/app-a:1.0`);
    const refB = parseReference(`${proxy.host}/demo/app-b:1.0`);
    await pushImage(client, refA, imageA);
    await pushImage(client, refB, imageB);
    proxy.resetCounters();
    const unique = new Map<string, number>();
    for (const image of [imageA, imageB]) {
      for (const l of image.layerDescriptors) unique.set(l.digest, l.size);
      unique.set(image.config.descriptor.digest, image.config.descriptor.size);
    }
    const uniqueBytes = [...unique.values()].reduce((a, b) => a + b, 0);

    line('starting fetcher, hasher and committer as separate processes ...');
    const env = { STEVEDORE_REDIS_URL: redis.url, STEVEDORE_STORE: storeDir, STEVEDORE_LOG_LEVEL: 'info' };
    for (const role of ['fetcher', 'hasher', 'committer'] as const)
      workers.push(await startWorkerProcess({ role, env }));

    const connection = producerConnection(redis.url);
    const submitter = new PullSubmitter(connection);
    line(`pulling ${refA.repository} and ${refB.repository} at once ...`);
    const started = Date.now();
    const ids = await Promise.all([
      submitter.submit(`${proxy.host}/demo/app-a:1.0`),
      submitter.submit(`${proxy.host}/demo/app-b:1.0`),
    ]);
    const done = await follow(submitter, ids);
    const seconds = (Date.now() - started) / 1000;
    await submitter.close();
    connection.disconnect();

    const served = proxy.bytesServed(/\/blobs\/sha256:/, 'GET');
    const store = await openStore({ backend: { kind: 'directory', path: storeDir } });
    const refs = await store.listReferences();
    line();
    for (const s of done)
      line(`pulled ${s.ref} → ${s.result?.resolvedDigest ?? '?'} (${s.layersTotal} layers)`);
    line(`references in the store: ${refs.map((r) => r.reference).join(', ')}`);
    line(`wall time ${seconds.toFixed(1)} s`);
    line(`registry blob bytes served ${served} / unique layer and config bytes ${uniqueBytes}`);
    line(`registry bytes / unique bytes = ${(served / uniqueBytes).toFixed(2)}`);
    await store.close();
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    await proxy.stop();
    await registry.stop();
    await redis.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
