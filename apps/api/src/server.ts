/**
 * The HTTP API (Fastify). Dependencies are passed in; nothing here reads the environment or runs
 * workers (the API is a producer: it queues pulls and reads state).
 *
 *     POST   /v1/pulls              queue a pull            GET /healthz   liveness (no auth)
 *     GET    /v1/pulls/:id          follow it               GET /readyz    Redis and store (no auth)
 *     GET    /v1/images             references and images   GET /metrics   Prometheus
 *     GET    /v1/images/*           one image in detail     GET /openapi.json
 *     DELETE /v1/images/*           remove a tag reference  /admin/queues  Bull Board (Basic or bearer)
 *     POST   /v1/exports/download   stream an archive       POST /v1/exports, GET /v1/exports[/:id[/archive]],
 *                                                            DELETE /v1/exports/:id: export jobs (exports.ts)
 */
import { inspect } from 'node:util';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { Queue } from 'bullmq';
import fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { Redis } from 'ioredis';
import type { Registry } from 'prom-client';
import { registerPipelineMetrics, registerQueueMetrics, readPipelineMetrics } from '@stevedore/metrics';
import { InvalidPlatformError, InvalidReferenceError } from '@stevedore/oci';
import type { Logger, PullStatus, PullSubmitter, StoreReadLease } from '@stevedore/pipeline';
import { ALL_QUEUES, QUEUE_PREFIX, QUEUES, type QueueName } from '@stevedore/queue';
import { Authenticator, bearerChallenge, boardChallenges } from './auth.ts';
import type { ApiConfig } from './config.ts';
import type { ExportStore } from '@stevedore/export';
import { registerExportRoutes } from './exports.ts';
import { BadRequestError, deleteReference, describeImage, listImages, type ImageStore } from './images.ts';
import { OpenApiBuilder, routeSchema } from './openapi.ts';
import {
  errorSchema,
  healthSchema,
  imageListSchema,
  imageLookupSchema,
  pullCreatedSchema,
  pullRequestSchema,
  pullStatusSchema,
  readySchema,
  refParams,
} from './schemas.ts';
import { formatValidationError } from './validation.ts';

export const BOARD_PATH = '/admin/queues';
/** A readiness check that takes longer than this counts as failed (probes have short timeouts). */
export const READY_CHECK_TIMEOUT_MS = 2_000;
/** Causes followed when describing a failed check. */
const MAX_CAUSE_DEPTH = 4;
/** Largest request body: a pull request is a few hundred bytes. */
const BODY_LIMIT_BYTES = 16 * 1024;

const QUEUE_DESCRIPTIONS: { readonly [Q in QueueName]: string } = {
  pull: 'fetcher: resolve a reference, store manifests and configs, fan out the layers',
  fetch: 'fetcher: stream one blob from a registry into the store',
  split: 'hasher: split a layer into file objects and a splitstream',
  commit: 'committer: layer and image records, then references',
  export: 'hasher: write an export archive into the store',
};

export interface ApiDeps {
  readonly config: Pick<
    ApiConfig,
    'STEVEDORE_API_TOKEN' | 'STEVEDORE_BOARD_USER' | 'STEVEDORE_BOARD_PASSWORD'
  >;
  /** A producer connection (fail-fast): Bull Board, queue counts, pipeline metrics, readiness. */
  readonly redis: Redis;
  readonly submitter: Pick<PullSubmitter, 'submit' | 'status'>;
  readonly store: ImageStore &
    ExportStore & {
      readonly backend: {
        list(prefix: string, options: { limit: number; signal: AbortSignal }): Promise<unknown>;
      };
    };
  /** Where /metrics comes from; the server registers the queue and pipeline metrics in it. */
  readonly metrics: Registry;
  /**
   * Before a download reads layers from the store: a read lease that a garbage collection waits
   * for, refused while one runs; forgets the object index after one (libs/pipeline
   * StoreGate.beginRead).
   */
  readonly beginStoreRead?: (what: string) => Promise<StoreReadLease>;
  readonly logger?: Logger;
  readonly version?: string;
}

/**
 * Routes that read or write the queues (or a read lease): 503 while Redis is not connected. The
 * metrics too: their queue and pipeline gauges are read from Redis at scrape time, and a scrape
 * that fails at once says more than one that times out.
 */
const QUEUE_ROUTES = new Set([
  'GET /metrics',
  'POST /v1/pulls',
  'GET /v1/pulls/:id',
  'POST /v1/exports/download',
  'POST /v1/exports',
  'GET /v1/exports/:id',
  'DELETE /v1/exports/:id',
]);
/** Retry-After of a request refused while Redis is not connected: a restart takes seconds. */
const REDIS_RETRY_AFTER_S = 5;

function pullView(status: PullStatus): Record<string, unknown> {
  return {
    id: status.id,
    ref: status.ref,
    platform: status.platform,
    state: status.state,
    progress: {
      bytesDone: status.bytesDone,
      bytesTotal: status.bytesTotal,
      layersDone: status.layersDone,
      layersTotal: status.layersTotal,
    },
    layers: status.layers,
    error: status.failedReason ?? null,
    result: status.result ?? null,
  };
}

/** An error's message followed by its causes' (`a: b: c`), for probe answers. */
export function messageChain(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && depth < MAX_CAUSE_DEPTH; depth++) {
    parts.push(e instanceof Error ? e.message : inspect(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ');
}

async function withTimeout<T>(what: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const signal = AbortSignal.timeout(READY_CHECK_TIMEOUT_MS);
  return Promise.race([
    run(signal),
    new Promise<never>((_, reject) => {
      signal.addEventListener(
        'abort',
        () => reject(new Error(`${what}: no answer within ${READY_CHECK_TIMEOUT_MS} ms`)),
        {
          once: true,
        },
      );
    }),
  ]);
}

export async function buildServer(deps: ApiDeps): Promise<FastifyInstance> {
  const app = fastify({
    ...(deps.logger === undefined ? { logger: false } : { loggerInstance: deps.logger }),
    bodyLimit: BODY_LIMIT_BYTES,
    // Reject what the schema does not describe instead of silently dropping or converting it.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    schemaErrorFormatter: formatValidationError,
  }) as unknown as FastifyInstance;

  const openapi = new OpenApiBuilder({
    title: 'stevedore API',
    version: deps.version ?? '0.1.0',
    description: 'Pull container images into the deduplicated store, follow pulls, inspect stored images.',
  });
  app.addHook('onRoute', (route) => openapi.add(route));

  const auth = new Authenticator({
    token: deps.config.STEVEDORE_API_TOKEN,
    boardUser: deps.config.STEVEDORE_BOARD_USER,
    boardPassword: deps.config.STEVEDORE_BOARD_PASSWORD,
  });
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    // The matched route's pattern, not the raw URL: no encoding trick reaches a route unchecked.
    const route = request.routeOptions.url;
    if (route === '/healthz' || route === '/readyz') return undefined;
    const header = request.headers.authorization;
    if (route !== undefined && (route === BOARD_PATH || route.startsWith(`${BOARD_PATH}/`))) {
      const result = auth.board(header);
      if (result.ok) return undefined;
      return reply.code(401).header('www-authenticate', boardChallenges()).send({ error: result.message });
    }
    const result = auth.api(header);
    if (result.ok) return undefined;
    return reply
      .code(401)
      .header('www-authenticate', bearerChallenge(result))
      .send({ error: result.message });
  });

  // BullMQ waits for an unreachable Redis without end: a request that goes to the queues while the
  // connection is down answers 503 at once instead of hanging until Redis is back.
  app.addHook('preHandler', async (request: FastifyRequest, reply: FastifyReply) => {
    if (!QUEUE_ROUTES.has(`${request.method} ${request.routeOptions.url ?? ''}`)) return undefined;
    if (deps.redis.status === 'ready') return undefined;
    return reply
      .code(503)
      .header('retry-after', String(REDIS_RETRY_AFTER_S))
      .send({ error: `the queues' Redis is unreachable (connection ${deps.redis.status}): try again later` });
  });

  app.setErrorHandler(async (error: FastifyError, request, reply) => {
    if (error.validation !== undefined) return reply.code(400).send({ error: error.message });
    if (error instanceof BadRequestError) return reply.code(400).send({ error: error.message });
    const status = error.statusCode ?? 500;
    if (status >= 500) request.log.error({ err: error }, 'request failed');
    return reply.code(status).send({ error: error.message });
  });
  app.setNotFoundHandler(async (request, reply) =>
    reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}` }),
  );

  const queues = ALL_QUEUES.map((name) => new Queue(name, { connection: deps.redis, prefix: QUEUE_PREFIX }));
  app.addHook('onClose', async () => {
    await Promise.all(queues.map((q) => q.close()));
  });
  registerQueueMetrics(deps.metrics, queues);
  registerPipelineMetrics(deps.metrics, () => readPipelineMetrics(deps.redis));

  // ---- probes, metrics, document ------------------------------------------------------------

  app.get(
    '/healthz',
    {
      schema: routeSchema({
        summary: 'Liveness',
        tags: ['probes'],
        authenticated: false,
        response: { 200: healthSchema },
      }),
    },
    () => Promise.resolve({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      schema: routeSchema({
        summary: 'Readiness: Redis answers PING and the store answers a listing',
        tags: ['probes'],
        authenticated: false,
        response: { 200: readySchema, 503: readySchema },
      }),
    },
    async (_request, reply) => {
      const checks: Record<string, () => Promise<unknown>> = {
        redis: () => withTimeout('Redis PING', () => deps.redis.ping()),
        store: () =>
          withTimeout('store listing', (signal) => deps.store.backend.list('', { limit: 1, signal })),
      };
      const failed: Record<string, string> = {};
      await Promise.all(
        Object.entries(checks).map(async ([name, check]) => {
          try {
            await check();
          } catch (err) {
            failed[name] = messageChain(err);
          }
        }),
      );
      const ready = Object.keys(failed).length === 0;
      return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not ready', failed });
    },
  );

  app.get(
    '/metrics',
    {
      schema: routeSchema({
        summary: 'Prometheus metrics: queue job counts and pipeline counters and histograms',
        tags: ['metrics'],
        produces: 'text/plain',
        response: { 200: { type: 'string' }, 503: errorSchema },
      }),
    },
    async (_request, reply) => {
      const text = await deps.metrics.metrics();
      return reply.type(deps.metrics.contentType).send(text);
    },
  );

  app.get(
    '/openapi.json',
    {
      schema: routeSchema({
        summary: 'This document',
        tags: ['meta'],
        response: { 200: { type: 'object' } },
      }),
    },
    async (_request, reply) =>
      reply.type('application/json').serializer(JSON.stringify).send(openapi.document(errorSchema)),
  );

  // ---- pulls ----------------------------------------------------------------------------------

  app.post<{ Body: { ref: string; platform?: string } }>(
    '/v1/pulls',
    {
      schema: routeSchema({
        summary: 'Queue a pull of an image reference',
        tags: ['pulls'],
        body: pullRequestSchema,
        response: { 202: pullCreatedSchema, 400: errorSchema, 503: errorSchema },
      }),
    },
    async (request, reply) => {
      const { ref, platform } = request.body;
      let id: string;
      try {
        id = await deps.submitter.submit(ref, platform);
      } catch (err) {
        if (err instanceof InvalidReferenceError || err instanceof InvalidPlatformError) {
          throw new BadRequestError(err.message, { cause: err });
        }
        throw new Error(`queueing the pull of "${ref}" failed`, { cause: err });
      }
      return reply.code(202).send({ id });
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/pulls/:id',
    {
      schema: routeSchema({
        summary: 'State and progress of a pull',
        tags: ['pulls'],
        params: {
          type: 'object',
          required: ['id'],
          properties: {
            id: {
              type: 'string',
              minLength: 1,
              maxLength: 256,
              description: 'The id POST /v1/pulls returned.',
            },
          },
        },
        response: { 200: pullStatusSchema, 404: errorSchema, 503: errorSchema },
      }),
    },
    async (request, reply) => {
      const status = await deps.submitter.status(request.params.id);
      if (status === undefined)
        return reply.code(404).send({ error: `no pull with id "${request.params.id}"` });
      return pullView(status);
    },
  );

  // ---- images ---------------------------------------------------------------------------------

  app.get(
    '/v1/images',
    {
      schema: routeSchema({
        summary: 'References and images in the store',
        tags: ['images'],
        response: { 200: imageListSchema },
      }),
    },
    async () => listImages(deps.store),
  );

  app.get<{ Params: { '*': string } }>(
    '/v1/images/*',
    {
      schema: routeSchema({
        summary:
          'One reference or digest: manifest, config, layers, sizes and dedup figures per platform image',
        tags: ['images'],
        params: refParams,
        response: { 200: imageLookupSchema, 400: errorSchema, 404: errorSchema },
      }),
    },
    async (request, reply) => {
      const input = request.params['*'];
      const found = await describeImage(deps.store, input);
      if (found === undefined) return reply.code(404).send({ error: `no image "${input}" in the store` });
      return found;
    },
  );

  app.delete<{ Params: { '*': string } }>(
    '/v1/images/*',
    {
      schema: routeSchema({
        summary: 'Remove a reference: a tag, or the `repo@sha256:…` a pull by digest keeps',
        description:
          'Images, layers and blobs stay until garbage collection (stevedore gc; in Kubernetes a daily CronJob). A bare digest names no reference: 400.',
        tags: ['images'],
        params: refParams,
        response: { 204: { type: 'null', description: 'Removed' }, 400: errorSchema, 404: errorSchema },
      }),
    },
    async (request, reply) => {
      const input = request.params['*'];
      const removed = await deleteReference(deps.store, input);
      if (removed === undefined)
        return reply.code(404).send({ error: `no reference "${input}" in the store` });
      return reply.code(204).send();
    },
  );

  // ---- exports --------------------------------------------------------------------------------

  registerExportRoutes(app, {
    store: deps.store,
    queue: queues.find((q) => q.name === QUEUES.export)!,
    ...(deps.beginStoreRead === undefined ? {} : { beginRead: deps.beginStoreRead }),
  });

  // ---- Bull Board -----------------------------------------------------------------------------

  const board = new FastifyAdapter();
  board.setBasePath(BOARD_PATH);
  createBullBoard({
    // Read-only: the board is for watching; retrying or cleaning queues is an operator action
    // through BullMQ, not a click behind a shared password.
    queues: queues.map(
      (q) =>
        new BullMQAdapter(q, {
          readOnlyMode: true,
          description: QUEUE_DESCRIPTIONS[q.name as QueueName],
        }),
    ),
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'stevedore', hideDocsLink: true } },
  });
  await app.register(board.registerPlugin(), { prefix: BOARD_PATH });

  return app;
}
