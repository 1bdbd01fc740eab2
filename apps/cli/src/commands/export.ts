/**
 * `stevedore export REF... -o FILE|- [--format docker|oci] [--compression original|none|gzip|zstd]
 * [--archive-compression none|gzip|zstd] [--platform os/arch|all]`: stored images out as one
 * archive, streamed in one pass (@stevedore/export, docs/export.md). A file is written under a
 * temporary name and renamed once complete; `-o -` streams to stdout (never to a terminal).
 * Exit codes as docker save / skopeo: 0 written, 1 failed (the reason on stderr), 2 bad usage.
 */
import { parseEnv } from '@stevedore/config';
import {
  archiveCompressionOf,
  ExportRequestError,
  parseArchiveCompression,
  parseExportFormat,
  parseLayerCompression,
  parsePlatformChoice,
  planExport,
  UnknownReferenceError,
  writeArchive,
  writeArchiveFile,
  type ArchiveCompression,
  type ExportFormat,
  type ExportPlan,
  type LayerCompressionChoice,
  type PlatformChoice,
} from '@stevedore/export';
import { InvalidPlatformError } from '@stevedore/oci/spec';
import { openConfiguredStore, WORKER_ENV } from '@stevedore/pipeline/store-config';
import { cliReadLease } from './read-lease.ts';

const MB = 1000 * 1000;

export interface ExportArgs {
  readonly refs: readonly string[];
  readonly output: string;
  readonly format: string | undefined;
  readonly compression: string | undefined;
  readonly archiveCompression: string | undefined;
  readonly platform: string | undefined;
  /** Where the read lease is taken (the Redis of the workers and of `stevedore gc`). */
  readonly redisUrl: string;
}

interface ParsedArgs {
  readonly format: ExportFormat;
  readonly compression: LayerCompressionChoice | undefined;
  readonly archiveCompression: ArchiveCompression;
  readonly platform: PlatformChoice;
}

/** A usage problem: main prints it with the command's help and exits 2. */
export class ExportUsageError extends Error {
  override readonly name = 'ExportUsageError';
}

/** Validates the options; throws {@link ExportUsageError}. */
export function parseExportArgs(args: ExportArgs): ParsedArgs {
  try {
    return {
      format: parseExportFormat(args.format ?? 'docker'),
      compression: args.compression === undefined ? undefined : parseLayerCompression(args.compression),
      archiveCompression:
        args.archiveCompression === undefined
          ? archiveCompressionOf(args.output)
          : parseArchiveCompression(args.archiveCompression),
      platform: parsePlatformChoice(args.platform),
    };
  } catch (err) {
    if (err instanceof ExportRequestError || err instanceof InvalidPlatformError) {
      throw new ExportUsageError(err.message, { cause: err });
    }
    throw err;
  }
}

function summary(plan: ExportPlan, output: string, size: number, digest: string, seconds: number): string {
  const layers = plan.members.filter((m) => m.kind === 'layer').length;
  const where = output === '-' ? 'stdout' : output;
  const computed =
    plan.variantsComputed === 0
      ? ''
      : ` (${plan.variantsComputed} layer(s) compressed once more first, to record their ${plan.compression} size)`;
  return `Exported ${plan.images.length} image(s), ${layers} layer(s) to ${where}: ${(size / MB).toFixed(1)} MB, ${digest}, ${seconds.toFixed(1)} s${computed}\n`;
}

export async function exportCommand(
  args: ExportArgs,
  io: { stdout: NodeJS.WriteStream; stderr: NodeJS.WritableStream } = {
    stdout: process.stdout,
    stderr: process.stderr,
  },
): Promise<number> {
  const options = parseExportArgs(args);
  if (args.output === '-' && io.stdout.isTTY) {
    io.stderr.write(
      'stevedore export: refusing to write an archive to a terminal: use -o FILE, or redirect\n',
    );
    return 1;
  }
  // A garbage collection waits for this export; this export waits while one runs.
  const lease = await cliReadLease(
    'export',
    `stevedore export of ${args.refs.length} image reference(s)`,
    args.redisUrl,
    io.stderr,
  );
  const store = await openConfiguredStore(parseEnv(WORKER_ENV)).catch(async (err: unknown) => {
    await lease.end();
    throw err;
  });
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => controller.abort(new Error(`interrupted (${signal})`));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  lease.signal?.addEventListener('abort', () => controller.abort(lease.signal?.reason), { once: true });
  const started = performance.now();
  try {
    const plan = await planExport(
      store,
      {
        targets: args.refs.map((input) => ({ input })),
        format: options.format,
        // The exact blobs when the store keeps them (fastest, nothing recompressed); else gzip,
        // what every loader reads.
        compression: options.compression ?? (store.blobPolicy === 'keep' ? 'original' : 'gzip'),
        archiveCompression: options.archiveCompression,
        ...(options.platform === undefined ? {} : { platform: options.platform }),
      },
      { signal: controller.signal },
    );
    const result =
      args.output === '-'
        ? await writeArchive(store, plan, io.stdout, { signal: controller.signal })
        : await writeArchiveFile(store, plan, args.output, { signal: controller.signal });
    io.stderr.write(
      summary(plan, args.output, result.size, result.digest, (performance.now() - started) / 1000),
    );
    return 0;
  } catch (err) {
    if (err instanceof UnknownReferenceError) {
      io.stderr.write(`Error: No such image: ${err.reference}\n`);
      return 1;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await store.close();
    await lease.end();
  }
}
