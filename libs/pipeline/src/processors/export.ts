/**
 * `export` (hasher/compressor): writes an export archive of stored images into the store
 * (`exports/<id>.tar…`, then its record; docs/export.md "Export jobs"), for large or scheduled
 * exports fetched later with GET /v1/exports/<id>/archive. Idempotent: an export whose record
 * exists returns at once. Bad requests, unknown or incomplete images and layers that do not match
 * their variant record fail at once; store hiccups are retried.
 */
import { UnrecoverableError, type Job } from 'bullmq';
import {
  exportToStore,
  ExportRequestError,
  IncompleteImageError,
  LayerVariantMismatchError,
  UnknownReferenceError,
  parsePlatformChoice,
  type ExportStore,
} from '@stevedore/export';
import { InvalidPlatformError, parseDigest } from '@stevedore/oci';
import type { ExportJob, ExportResult } from '@stevedore/queue';
import type { ProcessorDeps } from '../deps.ts';
import type { PipelineExporter } from '../ports.ts';

/** Failures no retry can fix. */
const PERMANENT = [
  UnknownReferenceError,
  IncompleteImageError,
  ExportRequestError,
  LayerVariantMismatchError,
  InvalidPlatformError,
];

/** The API path streaming a stored export. */
export function exportPath(exportId: string): string {
  return `/v1/exports/${exportId}/archive`;
}

/** The exporter of the worker services: exports into the store the workers use. */
export function storeExporter(store: ExportStore): PipelineExporter {
  return {
    async run(data, signal) {
      const record = await exportToStore(
        store,
        data.exportId,
        {
          refs: data.refs,
          digests: data.digests.map(parseDigest),
          format: data.format,
          compression: data.compression,
          archiveCompression: data.archiveCompression,
          platform: parsePlatformChoice(data.platform),
        },
        signal === undefined ? {} : { signal },
      );
      return {
        key: record.key,
        digest: record.digest,
        size: record.size,
        contentType: record.contentType,
        written: record.written,
      };
    },
  };
}

export async function processExport(
  job: Job<ExportJob>,
  deps: ProcessorDeps,
  signal?: AbortSignal,
): Promise<ExportResult> {
  const { exporter } = deps;
  if (exporter === undefined) {
    throw new UnrecoverableError(
      `export ${job.data.exportId}: this worker has no exporter (no store to export from)`,
    );
  }
  const log = deps.logger.child({ jobId: job.id, queue: job.queueName, exportId: job.data.exportId });
  const started = Date.now();
  let outcome;
  try {
    outcome = await exporter.run(job.data, signal);
  } catch (err) {
    if (PERMANENT.some((kind) => err instanceof kind)) {
      const failure = new UnrecoverableError(`export ${job.data.exportId}: ${(err as Error).message}`);
      failure.cause = err;
      throw failure;
    }
    throw new Error(`export ${job.data.exportId} failed`, { cause: err });
  }
  deps.metrics.observe('stage_seconds', (Date.now() - started) / 1000, { stage: 'export' });
  log.info(
    { refs: job.data.refs, size: outcome.size, digest: outcome.digest, written: outcome.written },
    outcome.written ? 'export written' : 'export already in the store',
  );
  return { exportId: job.data.exportId, ...outcome, path: exportPath(job.data.exportId) };
}
