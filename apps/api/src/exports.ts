/**
 * Export routes (docs/export.md "HTTP API"), authenticated like every other route:
 *
 *     POST /v1/exports/download    stream an archive now (Content-Length when known in advance)
 *     POST /v1/exports             queue an export job; the hasher writes the archive into the store
 *     GET  /v1/exports             the stored exports, newest first
 *     GET  /v1/exports/:id         the job's state, and where to fetch the archive when done
 *     GET  /v1/exports/:id/archive stream a stored export (verified against its record)
 *     DELETE /v1/exports/:id       delete a stored export (record, then archive) and its job
 *
 * Everything that can be checked before the first byte is (unknown reference 404, image not fully
 * committed 409, bad request 400). Once the 200 is sent, a failure resets the connection: the
 * client sees an error, never a clean end of a truncated archive.
 */
import type { ServerResponse } from 'node:http';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Job, Queue } from 'bullmq';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  archiveSuffix,
  ExportRequestError,
  exportId,
  findStoredExport,
  IncompleteImageError,
  isExportId,
  listStoredExportRecords,
  openStoredExport,
  parsePlatformChoice,
  removeStoredExport,
  planExport,
  resolveTargets,
  UnknownReferenceError,
  writeArchive,
  type ArchiveCompression,
  type ExportFormat,
  type ExportPlan,
  type ExportStore,
  type LayerCompressionChoice,
} from '@stevedore/export';
import { InvalidPlatformError } from '@stevedore/oci';
import { ObjectNotFoundError } from '@stevedore/store';
import { CollectionRunningError, exportPath, type StoreReadLease } from '@stevedore/pipeline';
import { JOBS, type ExportJob, type ExportResult } from '@stevedore/queue';
import { routeSchema } from './openapi.ts';
import { errorSchema } from './schemas.ts';

/** References in one export: enough for a release bundle, bounded against abuse. */
const MAX_REFS = 64;
const str = { type: 'string' } as const;

export const exportRequestSchema = {
  type: 'object',
  required: ['refs'],
  additionalProperties: false,
  properties: {
    refs: {
      type: 'array',
      minItems: 1,
      maxItems: MAX_REFS,
      items: { type: 'string', minLength: 1, maxLength: 512 },
      description:
        'References (`alpine:3.20`, `host/repo:tag`, `repo@sha256:…`) or digests; layers shared are written once.',
    },
    format: { type: 'string', enum: ['docker', 'oci'], description: 'Default `docker`.' },
    compression: {
      type: 'string',
      enum: ['original', 'none', 'gzip', 'zstd'],
      description: 'Layers as pulled (default; needs the keep blob policy), plain tars, or recompressed.',
    },
    archiveCompression: {
      type: 'string',
      enum: ['none', 'gzip', 'zstd'],
      description: 'Compression of the whole archive; default `none` (then Content-Length is sent).',
    },
    platform: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      description:
        '`os/arch[/variant]` or `all` (OCI only); default: every stored platform (oci), one (docker).',
    },
  },
} as const;

interface ExportBody {
  refs: string[];
  format?: ExportFormat;
  compression?: LayerCompressionChoice;
  archiveCompression?: ArchiveCompression;
  platform?: string;
}

const exportCreatedSchema = {
  type: 'object',
  required: ['id', 'status'],
  properties: {
    id: { type: 'string', description: 'The export id (derived from the request and the digests).' },
    status: { type: 'string', description: 'Where to follow it: GET this path.' },
  },
} as const;

const exportStatusSchema = {
  type: 'object',
  required: ['id', 'state', 'error', 'result'],
  properties: {
    id: str,
    state: { type: 'string', description: 'BullMQ state: waiting, active, completed, failed, …' },
    error: { type: ['string', 'null'], description: 'Why the export failed, when it did.' },
    result: {
      type: ['object', 'null'],
      properties: {
        exportId: str,
        key: str,
        digest: str,
        size: { type: 'integer', minimum: 0 },
        contentType: str,
        path: { type: 'string', description: 'GET this to download the archive.' },
        written: { type: 'boolean' },
      },
    },
  },
} as const;

const storedExportsSchema = {
  type: 'object',
  required: ['exports'],
  properties: {
    exports: {
      type: 'array',
      items: {
        type: 'object',
        required: ['id', 'digest', 'size', 'contentType', 'refs', 'digests', 'format', 'createdAt', 'path'],
        properties: {
          id: str,
          digest: { type: 'string', description: 'sha256 of the archive.' },
          size: { type: 'integer', minimum: 0 },
          contentType: str,
          refs: { type: 'array', items: str },
          digests: { type: 'array', items: str, description: 'What each reference pointed at.' },
          format: str,
          compression: str,
          archiveCompression: str,
          createdAt: { type: 'string', description: 'When its record was written (ISO 8601).' },
          path: { type: 'string', description: 'GET this to download the archive.' },
        },
      },
    },
  },
} as const;

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', minLength: 1, maxLength: 64, description: 'The export id.' } },
} as const;

const archiveResponse = {
  type: 'string',
  format: 'binary',
  description: 'The archive (application/x-tar, +gzip or +zstd).',
} as const;

/** Retry-After of a download refused while a garbage collection runs. */
const COLLECTION_RETRY_AFTER_S = 30;

export interface ExportRouteDeps {
  readonly store: ExportStore;
  /**
   * Called before a download reads the store: a read lease (a garbage collection waits until it
   * ends), or CollectionRunningError while a collection runs (503); makes the process forget its
   * object index after one (StoreGate.beginRead).
   */
  readonly beginRead?: (what: string) => Promise<StoreReadLease>;
  /** The `export` queue (a producer connection). */
  readonly queue: Queue;
}

/** A client error before any byte: the status and the message. */
function refusal(err: unknown): { status: number; message: string } | undefined {
  if (err instanceof UnknownReferenceError) return { status: 404, message: err.message };
  if (err instanceof IncompleteImageError) return { status: 409, message: err.message };
  if (err instanceof ExportRequestError || err instanceof InvalidPlatformError) {
    return { status: 400, message: err.message };
  }
  return undefined;
}

/** Aborted when the client goes away before the response is complete. */
function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new Error('the client closed the connection'));
  });
  return controller.signal;
}

/**
 * The response as a Writable whose destruction with an error resets the TCP connection (RST), so
 * a failure after the headers is an error on the client side, not a clean end.
 */
function resettingBody(res: ServerResponse): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (res.write(chunk)) callback();
      else res.once('drain', () => callback());
    },
    final(callback) {
      res.end(() => callback());
    },
    destroy(err, callback) {
      if (err !== null && !res.writableFinished) {
        const socket = res.socket;
        if (socket !== null && !socket.destroyed) socket.resetAndDestroy();
        else res.destroy(err);
      }
      callback(err);
    },
  });
}

function attachmentName(plan: Pick<ExportPlan, 'format' | 'archiveCompression'>, id?: string): string {
  return `${id ?? `stevedore-${plan.format}`}${archiveSuffix(plan.archiveCompression)}`;
}

async function stream(
  request: FastifyRequest,
  reply: FastifyReply,
  headers: Record<string, string>,
  write: (out: Writable) => Promise<unknown>,
): Promise<void> {
  reply.hijack();
  reply.raw.writeHead(200, headers);
  try {
    await write(resettingBody(reply.raw));
  } catch (err) {
    request.log.warn({ err, url: request.url }, 'export failed mid-stream: connection reset');
  }
}

export function registerExportRoutes(app: FastifyInstance, deps: ExportRouteDeps): void {
  const { store, queue } = deps;

  /** A kept job in `state` whose export has been deleted or has expired since it completed. */
  async function deletedSince(job: Job, state: string): Promise<boolean> {
    return state === 'completed' && (await findStoredExport(store, job.id!)) === undefined;
  }

  const request = (body: ExportBody) => ({
    format: body.format ?? 'docker',
    compression: body.compression ?? 'original',
    archiveCompression: body.archiveCompression ?? 'none',
    platform: parsePlatformChoice(body.platform),
  });

  app.post<{ Body: ExportBody }>(
    '/v1/exports/download',
    {
      schema: routeSchema({
        summary:
          'Download an archive of stored images now (streamed; Content-Length when not compressed as a whole)',
        tags: ['exports'],
        body: exportRequestSchema,
        produces: 'application/x-tar',
        response: {
          200: archiveResponse,
          400: errorSchema,
          404: errorSchema,
          409: errorSchema,
          503: errorSchema,
        },
      }),
    },
    async (req, reply) => {
      let lease: StoreReadLease | undefined;
      try {
        lease = await deps.beginRead?.(`api: download of ${req.body.refs.length} image reference(s)`);
      } catch (err) {
        if (!(err instanceof CollectionRunningError)) throw err;
        // A collection holds its gate for seconds to minutes: come back in a while.
        reply.header('retry-after', String(COLLECTION_RETRY_AFTER_S));
        return reply.code(503).send({ error: err.message });
      }
      try {
        const signal =
          lease === undefined ? clientGone(reply) : AbortSignal.any([clientGone(reply), lease.signal]);
        let plan: ExportPlan;
        try {
          const options = request(req.body);
          plan = await planExport(
            store,
            { targets: req.body.refs.map((input) => ({ input })), ...options },
            { signal },
          );
        } catch (err) {
          const refused = refusal(err);
          if (refused === undefined) throw err;
          return reply.code(refused.status).send({ error: refused.message });
        }
        await stream(
          req,
          reply,
          {
            'content-type': plan.contentType,
            'content-disposition': `attachment; filename="${attachmentName(plan)}"`,
            ...(plan.size === undefined ? {} : { 'content-length': String(plan.size) }),
          },
          (out) => writeArchive(store, plan, out, { signal }),
        );
        return reply;
      } finally {
        await lease?.end();
      }
    },
  );

  app.post<{ Body: ExportBody }>(
    '/v1/exports',
    {
      schema: routeSchema({
        summary: 'Queue an export job: the hasher writes the archive into the store, to download later',
        tags: ['exports'],
        body: exportRequestSchema,
        response: {
          202: exportCreatedSchema,
          400: errorSchema,
          404: errorSchema,
          409: errorSchema,
          503: errorSchema,
        },
      }),
    },
    async (req, reply) => {
      let data: ExportJob;
      try {
        const options = request(req.body);
        // Pin each reference to what it points at now: the job exports exactly that.
        const targets = await resolveTargets(
          store,
          req.body.refs.map((input) => ({ input })),
          {
            format: options.format,
            ...(options.platform === undefined ? {} : { platform: options.platform }),
          },
        );
        const digests = targets.map((t) => t.digest);
        const pinned = { refs: req.body.refs, digests, ...options };
        data = {
          exportId: exportId(pinned),
          refs: req.body.refs,
          digests,
          format: options.format,
          compression: options.compression,
          archiveCompression: options.archiveCompression,
          platform: req.body.platform ?? 'default',
        };
      } catch (err) {
        const refused = refusal(err);
        if (refused === undefined) throw err;
        return reply.code(refused.status).send({ error: refused.message });
      }
      // The id derives from the content: the same request is the same job (or its stored result).
      // A job that failed, or whose export has since been deleted or expired, is done with: the
      // request runs it again.
      const previous = await queue.getJob(data.exportId);
      if (previous !== undefined) {
        const state = await previous.getState();
        if (state === 'failed' || (await deletedSince(previous, state))) await removeUnlessRunning(previous);
      }
      await queue.add(JOBS.export, data, { jobId: data.exportId });
      return reply.code(202).send({ id: data.exportId, status: `/v1/exports/${data.exportId}` });
    },
  );

  app.get(
    '/v1/exports',
    {
      schema: routeSchema({
        summary: 'The exports stored by export jobs, newest first (they expire; see stevedore compact)',
        tags: ['exports'],
        response: { 200: storedExportsSchema },
      }),
    },
    async () => {
      const records = await listStoredExportRecords(store);
      return {
        exports: records.map((r) => ({
          id: r.id,
          digest: r.digest,
          size: r.size,
          contentType: r.contentType,
          refs: r.refs,
          digests: r.digests,
          format: r.format,
          compression: r.compression,
          archiveCompression: r.archiveCompression,
          createdAt: r.createdAt,
          path: exportPath(r.id),
        })),
      };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/exports/:id',
    {
      schema: routeSchema({
        summary: 'State of an export job, and where to download its archive once completed',
        tags: ['exports'],
        params: idParams,
        response: { 200: exportStatusSchema, 404: errorSchema, 503: errorSchema },
      }),
    },
    async (req, reply) => {
      const { id } = req.params;
      const job = isExportId(id) ? await queue.getJob(id) : undefined;
      // A completed job whose export has since been deleted or expired stands for nothing.
      const state = job === undefined ? undefined : await job.getState();
      if (job !== undefined && state !== undefined && !(await deletedSince(job, state))) {
        return {
          id,
          state,
          error: state === 'failed' ? (job.failedReason ?? 'failed') : null,
          result: state === 'completed' ? (job.returnvalue as ExportResult) : null,
        };
      }
      // Completed jobs are removed after a day; the archive and its record stay in the store.
      const record = isExportId(id) && job === undefined ? await findStoredExport(store, id) : undefined;
      if (record === undefined) return reply.code(404).send({ error: `no export with id "${id}"` });
      const result: ExportResult = {
        exportId: id,
        key: record.key,
        digest: record.digest,
        size: record.size,
        contentType: record.contentType,
        path: exportPath(id),
        written: false,
      };
      return { id, state: 'completed', error: null, result };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/exports/:id',
    {
      schema: routeSchema({
        summary: 'Delete a stored export (its record, then its archive) and its finished job',
        tags: ['exports'],
        params: idParams,
        response: {
          204: { type: 'null', description: 'Deleted' },
          404: errorSchema,
          409: errorSchema,
          503: errorSchema,
        },
      }),
    },
    async (req, reply) => {
      const { id } = req.params;
      if (!isExportId(id)) return reply.code(404).send({ error: `no export with id "${id}"` });
      const job = await queue.getJob(id);
      if (job !== undefined && !(await removeUnlessRunning(job))) {
        return reply
          .code(409)
          .send({ error: `export ${id} is being written: delete it once its job has finished` });
      }
      const deleted = await removeStoredExport(store, id);
      if (job === undefined && deleted.count === 0) {
        return reply.code(404).send({ error: `no export with id "${id}"` });
      }
      req.log.info({ exportId: id, bytes: deleted.bytes }, 'export deleted');
      return reply.code(204).send();
    },
  );

  app.get<{ Params: { id: string } }>(
    '/v1/exports/:id/archive',
    {
      // A HEAD would run this handler and stream the archive: not offered.
      exposeHeadRoute: false,
      schema: routeSchema({
        summary: 'Download the archive of a completed export job (verified against its record)',
        tags: ['exports'],
        params: idParams,
        produces: 'application/x-tar',
        response: { 200: archiveResponse, 404: errorSchema },
      }),
    },
    async (req, reply) => {
      const { id } = req.params;
      const record = isExportId(id) ? await findStoredExport(store, id) : undefined;
      if (record === undefined) {
        return reply.code(404).send({ error: `no completed export with id "${id}" in the store` });
      }
      const signal = clientGone(reply);
      let archive: Readable;
      try {
        archive = await openStoredExport(store, record, signal);
      } catch (err) {
        // Deleted between its record and now: gone, like an export without a record.
        if (!(err instanceof ObjectNotFoundError)) throw err;
        return reply.code(404).send({ error: `no completed export with id "${id}" in the store` });
      }
      await stream(
        req,
        reply,
        {
          'content-type': record.contentType,
          'content-length': String(record.size),
          'content-disposition': `attachment; filename="${attachmentName({ format: record.format, archiveCompression: record.archiveCompression }, id)}"`,
          etag: `"${record.digest}"`,
        },
        (out) => pipeline(archive, out, { signal }),
      );
      return reply;
    },
  );
}

/**
 * Removes a job from its queue unless a worker holds it (BullMQ refuses to remove a locked job).
 * True when the job is gone (removed here or already), false when it is running.
 */
async function removeUnlessRunning(job: Job): Promise<boolean> {
  if ((await job.getState()) === 'active') return false;
  try {
    await job.remove();
    return true;
  } catch (err) {
    // Taken by a worker since the state was read.
    if ((await job.getState()) === 'active') return false;
    throw err;
  }
}
