/**
 * Export archives kept in the store (docs/store-format.md "Layer variants and export archives"):
 * what export jobs write, for large or scheduled exports fetched later over the API.
 *
 *     exports/<id>.tar[.gz|.zst]   the archive, streamed in (atomic: visible only once complete)
 *     exports/<id>.json            its record, published last
 *
 * A stored export is kept until it is deleted (DELETE /v1/exports/:id) or expires
 * (`stevedore compact`, {@link expireStoredExports}); both delete the record first, so the export
 * stops being visible before its archive goes.
 */
import { PassThrough, pipeline, Transform, type Readable } from 'node:stream';
import { Digester, digestOf, parseDigest, type Digest } from '@stevedore/oci/spec';
import {
  CorruptObjectError,
  listAll,
  ObjectNotFoundError,
  type ObjectInfo,
  type Removed,
} from '@stevedore/store';
import {
  archiveSuffix,
  parseArchiveCompression,
  parseExportFormat,
  parseLayerCompression,
  type ArchiveCompression,
  type ExportFormat,
  type LayerCompressionChoice,
} from './options.ts';
import { planExport, type PlanOptions } from './plan.ts';
import type { ExportStore, PlatformChoice } from './resolve.ts';
import { writeArchive } from './writer.ts';

export const EXPORTS_PREFIX = 'exports/';
/** Hex characters of an export id's hash (64 bits: ids only need to differ among kept exports). */
const ID_HEX_CHARS = 16;
const EXPORT_ID = /^export-[0-9a-f]{16}$/;

/** An export pinned to digests: what an export job carries. */
export interface PinnedExport {
  /** The references as asked (normalised by the caller or not). */
  readonly refs: readonly string[];
  /** What each reference pointed at when the export was requested. */
  readonly digests: readonly Digest[];
  readonly format: ExportFormat;
  readonly compression: LayerCompressionChoice;
  readonly archiveCompression: ArchiveCompression;
  readonly platform?: PlatformChoice;
}

/** `exports/<id>.json`. */
export interface StoredExportRecord {
  readonly schemaVersion: 1;
  readonly id: string;
  /** Key of the archive in the store. */
  readonly key: string;
  /** sha256 and size of the archive bytes. */
  readonly digest: Digest;
  readonly size: number;
  readonly contentType: string;
  readonly refs: readonly string[];
  readonly digests: readonly Digest[];
  readonly format: ExportFormat;
  readonly compression: LayerCompressionChoice;
  readonly archiveCompression: ArchiveCompression;
  readonly createdAt: string;
}

/** The id of an export: derived from what it contains, so the same request is one job. */
export function exportId(spec: PinnedExport): string {
  const platform =
    spec.platform === undefined || spec.platform === 'all'
      ? (spec.platform ?? '')
      : JSON.stringify(spec.platform);
  const canonical = JSON.stringify([
    spec.refs,
    spec.digests,
    spec.format,
    spec.compression,
    spec.archiveCompression,
    platform,
  ]);
  return `export-${digestOf(canonical).slice('sha256:'.length, 'sha256:'.length + ID_HEX_CHARS)}`;
}

export function isExportId(id: string): boolean {
  return EXPORT_ID.test(id);
}

const recordKey = (id: string): string => `${EXPORTS_PREFIX}${id}.json`;

function decodeRecord(bytes: Buffer, key: string): StoredExportRecord {
  try {
    const o = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
    if (o.schemaVersion !== 1)
      throw new Error(`unsupported schemaVersion ${JSON.stringify(o.schemaVersion)}`);
    const strings = (v: unknown): string[] => {
      if (!Array.isArray(v) || v.some((s) => typeof s !== 'string'))
        throw new Error('expected a list of strings');
      return v as string[];
    };
    const str = (name: string): string => {
      if (typeof o[name] !== 'string') throw new Error(`${name} must be a string`);
      return o[name];
    };
    const size = o.size;
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
      throw new Error('size must be a size');
    return {
      schemaVersion: 1,
      id: str('id'),
      key: str('key'),
      digest: parseDigest(str('digest')),
      size,
      contentType: str('contentType'),
      refs: strings(o.refs),
      digests: strings(o.digests).map(parseDigest),
      format: parseExportFormat(str('format')),
      compression: parseLayerCompression(str('compression')),
      archiveCompression: parseArchiveCompression(str('archiveCompression')),
      createdAt: str('createdAt'),
    };
  } catch (err) {
    throw new CorruptObjectError(
      key,
      `invalid export record: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: err,
      },
    );
  }
}

/** The record of a finished export, or undefined. */
export async function findStoredExport(
  store: Pick<ExportStore, 'backend'>,
  id: string,
  signal?: AbortSignal,
): Promise<StoredExportRecord | undefined> {
  const key = recordKey(id);
  try {
    return decodeRecord(await store.backend.getBytes(key, { signal }), key);
  } catch (err) {
    if (err instanceof ObjectNotFoundError) return undefined;
    throw err;
  }
}

/**
 * Writes export `id` into the store: the archive streamed into `exports/<id>.<ext>` (one pass, as
 * any export), then its record. Returns early when the record exists (idempotent).
 */
export async function exportToStore(
  store: ExportStore,
  id: string,
  spec: PinnedExport,
  options: PlanOptions = {},
): Promise<StoredExportRecord & { written: boolean }> {
  if (!isExportId(id)) throw new Error(`invalid export id "${id}"`);
  const existing = await findStoredExport(store, id, options.signal);
  if (existing !== undefined) {
    if ((await store.backend.head(existing.key, { signal: options.signal })) !== undefined) {
      return { ...existing, written: false };
    }
    // A record whose archive is gone (removed by hand: deletions remove the record first): the
    // export is not there; written again below, archive then record.
    await store.backend.delete(recordKey(id), { signal: options.signal });
  }
  if (spec.refs.length !== spec.digests.length) {
    throw new Error(`export ${id}: ${spec.refs.length} references but ${spec.digests.length} digests`);
  }
  const plan = await planExport(
    store,
    {
      targets: spec.refs.map((input, i) => ({ input, digest: spec.digests[i]! })),
      format: spec.format,
      compression: spec.compression,
      archiveCompression: spec.archiveCompression,
      ...(spec.platform === undefined ? {} : { platform: spec.platform }),
    },
    options,
  );
  const key = `${EXPORTS_PREFIX}${id}${archiveSuffix(spec.archiveCompression)}`;
  const body = new PassThrough();
  const upload = store.backend
    .put(key, body, { ...(plan.size === undefined ? {} : { size: plan.size }), signal: options.signal })
    .catch((err: unknown) => {
      // The writer must not wait forever on a body nobody reads any more.
      body.destroy(err instanceof Error ? err : new Error(String(err)));
      throw err;
    });
  const [, result] = await Promise.all([
    upload,
    writeArchive(store, plan, body, options.signal === undefined ? {} : { signal: options.signal }),
  ]);
  const record: StoredExportRecord = {
    schemaVersion: 1,
    id,
    key,
    digest: result.digest,
    size: result.size,
    contentType: plan.contentType,
    refs: spec.refs,
    digests: spec.digests,
    format: spec.format,
    compression: spec.compression,
    archiveCompression: spec.archiveCompression,
    createdAt: new Date().toISOString(),
  };
  await store.backend.sync();
  await store.backend.put(recordKey(id), Buffer.from(`${JSON.stringify(record, null, 2)}\n`), {
    signal: options.signal,
  });
  await store.backend.sync();
  return { ...record, written: true };
}

/** The archive of a stored export; the stream errors at its end if the bytes do not match the record. */
export async function openStoredExport(
  store: Pick<ExportStore, 'backend'>,
  record: StoredExportRecord,
  signal?: AbortSignal,
): Promise<Readable> {
  const raw = await store.backend.get(record.key, { signal });
  const digester = new Digester();
  const check = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      digester.update(chunk);
      callback(null, chunk);
    },
    flush(callback) {
      const actual = digester.digest();
      if (actual !== record.digest || digester.size !== record.size) {
        callback(
          new CorruptObjectError(
            record.key,
            `archive hashes to ${actual} (${digester.size} bytes), expected ${record.digest} (${record.size} bytes)`,
          ),
        );
      } else callback();
    },
  });
  // Errors of `raw` reach `check` (destroyed by pipeline) and whoever reads it.
  pipeline(raw, check, () => {});
  return check;
}

/** `exports/<id>.json` and `exports/<id>.tar[.gz|.zst]`; other keys under exports/ are not ours. */
const STORED_KEY = /^exports\/(export-[0-9a-f]{16})\.(json|tar|tar\.gz|tar\.zst)$/;

/** What the store holds of one export: its record (once published) and its archive(s). */
interface StoredExportObjects {
  record?: ObjectInfo;
  readonly archives: ObjectInfo[];
}

/** What the store holds of every export, or of the one whose keys start with `prefix`. */
async function listStoredExports(
  store: Pick<ExportStore, 'backend'>,
  signal?: AbortSignal,
  prefix = EXPORTS_PREFIX,
): Promise<Map<string, StoredExportObjects>> {
  const found = new Map<string, StoredExportObjects>();
  for await (const info of listAll(store.backend, prefix, signal === undefined ? {} : { signal })) {
    const m = STORED_KEY.exec(info.key);
    if (m === null) continue;
    let objects = found.get(m[1]!);
    if (objects === undefined) found.set(m[1]!, (objects = { archives: [] }));
    if (m[2] === 'json') objects.record = info;
    else objects.archives.push(info);
  }
  return found;
}

/**
 * Deletes export `id`: its record first (from then on the export is not there: a status asks the
 * queue, a download answers 404, a new request writes it again), then its archive. Returns what
 * was deleted; `count` is 0 when the store held nothing of it.
 */
export async function removeStoredExport(
  store: Pick<ExportStore, 'backend'>,
  id: string,
  signal?: AbortSignal,
): Promise<Removed> {
  if (!isExportId(id)) throw new Error(`invalid export id "${id}"`);
  // One listing of `exports/<id>.`: its record and whichever archives it has.
  const objects = (await listStoredExports(store, signal, `${EXPORTS_PREFIX}${id}.`)).get(id);
  return objects === undefined ? { count: 0, bytes: 0 } : deleteExportObjects(store, objects, signal);
}

async function deleteExportObjects(
  store: Pick<ExportStore, 'backend'>,
  objects: StoredExportObjects,
  signal?: AbortSignal,
): Promise<Removed> {
  const all = objects.record === undefined ? objects.archives : [objects.record, ...objects.archives];
  if (objects.record !== undefined) {
    await store.backend.delete(objects.record.key, { signal });
    // On a directory the deletion must be durable before the archive's: never an archive-less record.
    await store.backend.sync();
  }
  for (const archive of objects.archives) await store.backend.delete(archive.key, { signal });
  if (objects.archives.length > 0) await store.backend.sync();
  return { count: all.length === 0 ? 0 : 1, bytes: all.reduce((n, o) => n + o.size, 0) };
}

/** Records of listed exports read at once. */
const RECORD_READS = 16;

/**
 * The records of every stored export, newest first. An export deleted while it is listed is left
 * out; a record that does not decode fails the listing, naming its key.
 */
export async function listStoredExportRecords(
  store: Pick<ExportStore, 'backend'>,
  signal?: AbortSignal,
): Promise<StoredExportRecord[]> {
  const ids = [...(await listStoredExports(store, signal))]
    .filter(([, objects]) => objects.record !== undefined)
    .map(([id]) => id);
  const records: StoredExportRecord[] = [];
  for (let i = 0; i < ids.length; i += RECORD_READS) {
    const batch = await Promise.all(
      ids.slice(i, i + RECORD_READS).map((id) => findStoredExport(store, id, signal)),
    );
    for (const record of batch) if (record !== undefined) records.push(record);
  }
  return records.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : 0));
}

export interface ExpireExportsOptions {
  /** Published exports whose record was written longer ago than this are deleted. */
  readonly olderThanMs: number;
  /**
   * Archives without a record (an export job that died between the two writes, or one that was
   * deleted halfway) are deleted once older than this; it must be longer than the longest export.
   */
  readonly incompleteOlderThanMs: number;
  readonly now?: number;
  readonly signal?: AbortSignal;
}

export interface ExpireExportsResult {
  /** Published exports deleted (record and archive), with their bytes. */
  readonly expired: Removed;
  /** Archives without a record deleted. */
  readonly incomplete: Removed;
  /** Published exports kept (younger than the limit). */
  readonly kept: number;
}

/**
 * Deletes the stored exports older than `olderThanMs` (by the time their record was written) and
 * the record-less archives older than `incompleteOlderThanMs`. An export requested again after
 * it expired is written again by its job. Objects whose time the backend does not report are kept.
 */
export async function expireStoredExports(
  store: Pick<ExportStore, 'backend'>,
  options: ExpireExportsOptions,
): Promise<ExpireExportsResult> {
  const now = options.now ?? Date.now();
  const older = (info: ObjectInfo, ms: number): boolean =>
    info.modified !== undefined && now - info.modified >= ms;
  const expired = { count: 0, bytes: 0 };
  const incomplete = { count: 0, bytes: 0 };
  let kept = 0;
  for (const objects of (await listStoredExports(store, options.signal)).values()) {
    const { record } = objects;
    let total: Removed | undefined;
    if (record !== undefined) {
      if (older(record, options.olderThanMs))
        total = await deleteExportObjects(store, objects, options.signal);
      else kept += 1;
    } else if (objects.archives.every((a) => older(a, options.incompleteOlderThanMs))) {
      total = await deleteExportObjects(store, objects, options.signal);
    }
    if (total === undefined) continue;
    const into = record === undefined ? incomplete : expired;
    into.count += total.count;
    into.bytes += total.bytes;
  }
  return { expired, incomplete, kept };
}
