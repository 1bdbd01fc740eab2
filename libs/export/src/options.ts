/**
 * What an export can be asked for: the archive format, how layers are compressed inside it, and
 * whether the whole archive is compressed. Parsers for the CLI, the API and the job payload.
 */
import { ExportRequestError } from './errors.ts';

/** `docker`: what `docker load`/`podman load` read. `oci`: an OCI image layout in a tar. */
export type ExportFormat = 'docker' | 'oci';
/** `original`: the blobs as pulled; `none`: plain tars; `gzip`/`zstd`: recompressed deterministically. */
export type LayerCompressionChoice = 'original' | 'none' | 'gzip' | 'zstd';
/** Compression of the whole archive (`.tar`, `.tar.gz`, `.tar.zst`). */
export type ArchiveCompression = 'none' | 'gzip' | 'zstd';

export const EXPORT_FORMATS: readonly ExportFormat[] = ['docker', 'oci'];
export const LAYER_COMPRESSIONS: readonly LayerCompressionChoice[] = ['original', 'none', 'gzip', 'zstd'];
export const ARCHIVE_COMPRESSIONS: readonly ArchiveCompression[] = ['none', 'gzip', 'zstd'];

function oneOf<T extends string>(what: string, allowed: readonly T[], input: string): T {
  if ((allowed as readonly string[]).includes(input)) return input as T;
  throw new ExportRequestError(`invalid ${what} "${input}": expected ${allowed.join(', ')}`);
}

export const parseExportFormat = (s: string): ExportFormat => oneOf('format', EXPORT_FORMATS, s);
export const parseLayerCompression = (s: string): LayerCompressionChoice =>
  oneOf('compression', LAYER_COMPRESSIONS, s);
export const parseArchiveCompression = (s: string): ArchiveCompression =>
  oneOf('archive compression', ARCHIVE_COMPRESSIONS, s);

const CONTENT_TYPES: { readonly [C in ArchiveCompression]: string } = {
  none: 'application/x-tar',
  gzip: 'application/x-tar+gzip',
  zstd: 'application/x-tar+zstd',
};
const SUFFIXES: { readonly [C in ArchiveCompression]: string } = {
  none: '.tar',
  gzip: '.tar.gz',
  zstd: '.tar.zst',
};

/** HTTP Content-Type of an archive. */
export function archiveContentType(compression: ArchiveCompression): string {
  return CONTENT_TYPES[compression];
}

/** File name suffix of an archive. */
export function archiveSuffix(compression: ArchiveCompression): string {
  return SUFFIXES[compression];
}

/** The archive compression a file name asks for: `.tar.gz`/`.tgz` gzip, `.tar.zst`/`.tzst` zstd. */
export function archiveCompressionOf(path: string): ArchiveCompression {
  const lower = path.toLowerCase();
  if (lower.endsWith('.tar.gz') || lower.endsWith('.tgz')) return 'gzip';
  if (lower.endsWith('.tar.zst') || lower.endsWith('.tar.zstd') || lower.endsWith('.tzst')) return 'zstd';
  return 'none';
}
