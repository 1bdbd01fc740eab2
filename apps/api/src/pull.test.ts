/**
 * A whole pull through the API: POST /v1/pulls, the pipeline's workers run in this process (only
 * here: the API itself never runs workers) against the stack's registry and Redis, then the pull's
 * status, the stored image and the metrics the workers recorded are read back over HTTP.
 */
import { Job, Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RedisPipelineMetrics } from '@stevedore/metrics';
import { parseReference, RegistryClient } from '@stevedore/oci';
import { createLogger, pipelineStore, ROLES, startWorkerHost, type WorkerHost } from '@stevedore/pipeline';
import { QUEUE_PREFIX, QUEUES, type PullResult } from '@stevedore/queue';
import { buildImageFromTrees, generateTree, pushImage, type FixtureImage } from '@stevedore/testing';
import { redisUrl, startApi, type TestApi } from '../test/support.ts';

const DB = 3;

let api: TestApi;
let host: WorkerHost;
let metrics: RedisPipelineMetrics;
let events: QueueEvents;
let image: FixtureImage;
let reference: string;
const flushErrors: Error[] = [];

beforeAll(async () => {
  api = await startApi(DB);
  const registryHost = inject('stack').registry.host;
  reference = `${registryHost}/api-test/demo:v1`;
  image = await buildImageFromTrees(
    [generateTree({ seed: 21, files: 40 }), generateTree({ seed: 22, files: 15, largeFiles: 1 })],
    { platform: { os: 'linux', architecture: 'amd64' } },
  );
  await pushImage(new RegistryClient({}), parseReference(reference), image);

  metrics = new RedisPipelineMetrics(api.workerRedis, { onError: (err) => flushErrors.push(err) });
  host = startWorkerHost({
    roles: ROLES,
    connection: api.workerRedis,
    store: pipelineStore(api.store),
    registry: new RegistryClient({}),
    logger: createLogger({ name: 'pull-test', level: 'silent' }),
    metrics,
    concurrency: {},
  });
  events = new QueueEvents(QUEUES.pull, {
    connection: new Redis(redisUrl(DB), { maxRetriesPerRequest: null }),
    prefix: QUEUE_PREFIX,
  });
  await events.waitUntilReady();
});

afterAll(async () => {
  await host.close();
  await metrics.close();
  await events.close();
  await api.close();
});

describe('a pull through the API', () => {
  it('queues, runs to completion, and shows the image, its progress and the metrics', async () => {
    const submitted = await api.request('/v1/pulls', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ref: reference, platform: 'linux/amd64' }),
    });
    expect(submitted.status).toBe(202);
    const { id } = (await submitted.json()) as { id: string };

    const pulls = new Queue(QUEUES.pull, { connection: api.workerRedis, prefix: QUEUE_PREFIX });
    const job = await Job.fromId(pulls, id);
    expect(job?.id).toBe(id);
    await job!.waitUntilFinished(events);
    await pulls.close();

    const manifestDigest = image.manifest.descriptor.digest;
    const layerBytes = image.layers.reduce((n, l) => n + l.descriptor.size, 0);
    const status = (await (await api.request(`/v1/pulls/${id}`)).json()) as Record<string, unknown>;
    expect(status).toEqual({
      id,
      ref: reference,
      platform: 'linux/amd64',
      state: 'completed',
      progress: { bytesDone: layerBytes, bytesTotal: layerBytes, layersDone: 2, layersTotal: 2 },
      layers: expect.any(Array) as unknown,
      error: null,
      result: {
        ref: reference,
        resolvedDigest: manifestDigest,
        images: [{ manifestDigest, platform: 'linux/amd64', layers: 2 }],
      } satisfies PullResult,
    });
    const layers = (
      status.layers as {
        digest: string;
        diffID: string;
        size: number;
        bytes: number;
        outcome: string;
        commitState: string;
      }[]
    )
      .map((l) => ({
        digest: l.digest,
        diffID: l.diffID,
        size: l.size,
        bytes: l.bytes,
        outcome: l.outcome,
        commitState: l.commitState,
      }))
      .sort((a, b) => (a.digest < b.digest ? -1 : 1));
    expect(layers).toEqual(
      image.layers
        .map((l) => ({
          digest: l.descriptor.digest,
          diffID: l.diffId,
          size: l.descriptor.size,
          bytes: l.descriptor.size,
          outcome: 'fetched',
          commitState: 'completed',
        }))
        .sort((a, b) => (a.digest < b.digest ? -1 : 1)),
    );

    const stored = (await (await api.request(`/v1/images/${reference}`)).json()) as {
      reference: string;
      digest: string;
      images: { manifest: { digest: string }; layers: { diffID: string; uncompressedSize: number }[] }[];
    };
    expect(stored.reference).toBe(reference);
    expect(stored.digest).toBe(manifestDigest);
    expect(stored.images.map((i) => i.manifest.digest)).toEqual([manifestDigest]);
    expect(stored.images[0]!.layers.map((l) => [l.diffID, l.uncompressedSize])).toEqual(
      image.layers.map((l) => [l.diffId, l.uncompressedSize]),
    );

    const records = await Promise.all(image.layers.map((l) => api.store.getLayer(l.diffId)));
    const objectsWritten = records.reduce((n, r) => n + r!.stats.objectsWritten, 0);
    expect(objectsWritten).toBeGreaterThan(0);

    // The workers' last increments reach Redis when their metrics are closed (as on SIGTERM).
    await host.close();
    await metrics.close();
    expect(flushErrors).toEqual([]);
    const text = await (await api.request('/metrics')).text();
    const lines = text.split('\n');
    expect(lines.filter((l) => /^stevedore_[a-z_]+_total /.test(l))).toEqual([
      `stevedore_bytes_fetched_total ${layerBytes}`,
      'stevedore_bytes_skipped_total 0',
      'stevedore_blobs_committed_total 2',
      'stevedore_layers_committed_total 2',
      `stevedore_objects_written_total ${objectsWritten}`,
      'stevedore_objects_reused_total 0',
      'stevedore_lock_waits_total 0',
    ]);
    expect(lines.filter((l) => l.startsWith('stevedore_stage_seconds_count'))).toEqual([
      'stevedore_stage_seconds_count{stage="fetch"} 2',
      'stevedore_stage_seconds_count{stage="split"} 2',
    ]);
    expect(lines.filter((l) => l.startsWith('stevedore_queue_jobs{queue="pull"'))).toEqual([
      'stevedore_queue_jobs{queue="pull",state="waiting"} 0',
      'stevedore_queue_jobs{queue="pull",state="active"} 0',
      'stevedore_queue_jobs{queue="pull",state="delayed"} 0',
      'stevedore_queue_jobs{queue="pull",state="waiting-children"} 0',
      'stevedore_queue_jobs{queue="pull",state="prioritized"} 0',
      'stevedore_queue_jobs{queue="pull",state="completed"} 1',
      'stevedore_queue_jobs{queue="pull",state="failed"} 0',
    ]);
  });
});
