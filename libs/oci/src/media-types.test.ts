import { describe, expect, it } from 'vitest';
import {
  InvalidMediaTypeError,
  isIndexType,
  isLayerType,
  isManifestType,
  isNonDistributable,
  isSchema1Type,
  layerCompression,
  MANIFEST_ACCEPT,
  MANIFEST_ACCEPT_HEADER,
  parseMediaType,
  UnsupportedMediaTypeError,
  type LayerCompression,
} from './media-types.ts';

describe('parseMediaType', () => {
  it.each([
    ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.manifest.v1+json'],
    ['application/json; charset=utf-8', 'application/json'],
    [
      '  Application/VND.Docker.Distribution.Manifest.V2+JSON ; q=0.9',
      'application/vnd.docker.distribution.manifest.v2+json',
    ],
    ['application/vnd.oci.image.layer.v1.tar+zstd;', 'application/vnd.oci.image.layer.v1.tar+zstd'],
  ])('%j → %s', (input, expected) => {
    expect(parseMediaType(input)).toBe(expected);
  });

  it.each([
    ['', 'missing "/"'],
    ['application', 'missing "/"'],
    ['; charset=utf-8', 'missing "/"'],
    ['application/', 'expected "type/subtype" (RFC 6838)'],
    ['/json', 'expected "type/subtype" (RFC 6838)'],
    ['application/js on', 'expected "type/subtype" (RFC 6838)'],
    ['application/json/x', 'expected "type/subtype" (RFC 6838)'],
  ])('rejects %j: %s', (input, what) => {
    expect(() => parseMediaType(input)).toThrowError(
      new InvalidMediaTypeError(`invalid media type "${input}": ${what}`),
    );
  });
});

describe('classification', () => {
  // [type, isManifestType, isIndexType, isSchema1Type, isLayerType]
  it.each<[string, boolean, boolean, boolean, boolean]>([
    ['application/vnd.oci.image.manifest.v1+json', true, false, false, false],
    ['application/vnd.docker.distribution.manifest.v2+json', true, false, false, false],
    ['application/vnd.oci.image.index.v1+json', false, true, false, false],
    ['application/vnd.docker.distribution.manifest.list.v2+json', false, true, false, false],
    ['application/vnd.docker.distribution.manifest.v1+json', false, false, true, false],
    ['application/vnd.docker.distribution.manifest.v1+prettyjws', false, false, true, false],
    ['application/vnd.oci.image.config.v1+json', false, false, false, false],
    ['application/vnd.docker.container.image.v1+json', false, false, false, false],
    ['application/vnd.oci.image.layer.v1.tar+gzip', false, false, false, true],
    ['application/json', false, false, false, false],
  ])('%s', (type, manifest, index, schema1, layer) => {
    const mt = parseMediaType(type);
    expect([isManifestType(mt), isIndexType(mt), isSchema1Type(mt), isLayerType(mt)]).toStrictEqual([
      manifest,
      index,
      schema1,
      layer,
    ]);
  });

  it.each<[string, LayerCompression, boolean]>([
    ['application/vnd.oci.image.layer.v1.tar', 'none', false],
    ['application/vnd.oci.image.layer.v1.tar+gzip', 'gzip', false],
    ['application/vnd.oci.image.layer.v1.tar+zstd', 'zstd', false],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar', 'none', true],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'gzip', true],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+zstd', 'zstd', true],
    ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'gzip', false],
    ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'gzip', true],
  ])('layer %s: %s, nondistributable %s', (type, compression, nonDistributable) => {
    expect(layerCompression(parseMediaType(type))).toBe(compression);
    expect(isNonDistributable(parseMediaType(type))).toBe(nonDistributable);
  });

  it.each(['application/vnd.in-toto+json', 'application/vnd.oci.image.manifest.v1+json', 'text/plain'])(
    'layerCompression rejects %s',
    (type) => {
      const err = new UnsupportedMediaTypeError(type, `unsupported layer media type "${type}"`);
      expect(() => layerCompression(parseMediaType(type))).toThrowError(err);
      expect(() => isNonDistributable(parseMediaType(type))).toThrowError(err);
    },
  );

  it('names the type on the error', () => {
    try {
      layerCompression(parseMediaType('application/x-foo'));
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(UnsupportedMediaTypeError);
      expect((err as UnsupportedMediaTypeError).mediaType).toBe('application/x-foo');
    }
  });
});

describe('MANIFEST_ACCEPT', () => {
  it('lists the four manifest and index types', () => {
    expect(MANIFEST_ACCEPT).toStrictEqual([
      'application/vnd.oci.image.index.v1+json',
      'application/vnd.oci.image.manifest.v1+json',
      'application/vnd.docker.distribution.manifest.list.v2+json',
      'application/vnd.docker.distribution.manifest.v2+json',
    ]);
    expect(MANIFEST_ACCEPT_HEADER).toBe(
      'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, ' +
        'application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json',
    );
    expect(Object.isFrozen(MANIFEST_ACCEPT)).toBe(true);
  });
});
