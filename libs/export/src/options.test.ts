import { describe, expect, it } from 'vitest';
import { ExportRequestError } from './errors.ts';
import {
  archiveCompressionOf,
  archiveContentType,
  archiveSuffix,
  parseArchiveCompression,
  parseExportFormat,
  parseLayerCompression,
  type ArchiveCompression,
} from './options.ts';

describe('export options', () => {
  it.each<[string, ArchiveCompression]>([
    ['out.tar', 'none'],
    ['-', 'none'],
    ['images', 'none'],
    ['out.tar.gz', 'gzip'],
    ['OUT.TGZ', 'gzip'],
    ['dir/out.tar.zst', 'zstd'],
    ['out.tar.zstd', 'zstd'],
    ['out.tzst', 'zstd'],
    ['out.gz', 'none'],
  ])('%s asks for archive compression %s', (path, compression) => {
    expect(archiveCompressionOf(path)).toBe(compression);
  });

  it.each<[ArchiveCompression, string, string]>([
    ['none', 'application/x-tar', '.tar'],
    ['gzip', 'application/x-tar+gzip', '.tar.gz'],
    ['zstd', 'application/x-tar+zstd', '.tar.zst'],
  ])('%s archives are %s, %s', (compression, type, suffix) => {
    expect(archiveContentType(compression)).toBe(type);
    expect(archiveSuffix(compression)).toBe(suffix);
  });

  it.each<[(s: string) => string, string, string]>([
    [parseExportFormat, 'tar', 'invalid format "tar": expected docker, oci'],
    [parseLayerCompression, 'xz', 'invalid compression "xz": expected original, none, gzip, zstd'],
    [
      parseArchiveCompression,
      'original',
      'invalid archive compression "original": expected none, gzip, zstd',
    ],
  ])('refuses bad values with a message listing the good ones', (parse, input, message) => {
    expect(() => parse(input)).toThrow(new ExportRequestError(message));
  });

  it('accepts every listed value', () => {
    expect(['docker', 'oci'].map(parseExportFormat)).toEqual(['docker', 'oci']);
    expect(['original', 'none', 'gzip', 'zstd'].map(parseLayerCompression)).toEqual([
      'original',
      'none',
      'gzip',
      'zstd',
    ]);
    expect(['none', 'gzip', 'zstd'].map(parseArchiveCompression)).toEqual(['none', 'gzip', 'zstd']);
  });
});
