import { describe, expect, it } from 'vitest';
import { InvalidDigestError, parseDigest } from './digest.ts';
import {
  descriptorFor,
  InvalidImageConfigError,
  InvalidManifestError,
  MAX_MANIFEST_BYTES,
  parseDiffID,
  parseImageConfig,
  parseManifest,
  serializeManifest,
  type ImageIndex,
  type ImageManifest,
} from './manifest.ts';
import {
  DOCKER_CONFIG,
  DOCKER_LAYER_GZIP,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  OCI_CONFIG,
  OCI_INDEX,
  OCI_LAYER_GZIP,
  OCI_LAYER_ZSTD,
  OCI_MANIFEST,
  parseMediaType,
  UnsupportedMediaTypeError,
} from './media-types.ts';

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const C = `sha256:${'c'.repeat(64)}`;

const json = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));

function ociManifest(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: A, size: 7023 },
    layers: [
      { mediaType: OCI_LAYER_GZIP, digest: B, size: 32654 },
      { mediaType: OCI_LAYER_ZSTD, digest: C, size: 0, annotations: { 'org.example': 'x' } },
    ],
    ...overrides,
  };
}

function ociIndex(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [
      { mediaType: OCI_MANIFEST, digest: A, size: 1, platform: { architecture: 'amd64', os: 'linux' } },
      {
        mediaType: OCI_MANIFEST,
        digest: B,
        size: 2,
        platform: { architecture: 'arm64', os: 'linux', variant: 'v8', 'os.features': ['x'] },
      },
    ],
    ...overrides,
  };
}

describe('parseManifest', () => {
  it('parses an OCI image manifest into a fresh object with only known fields', () => {
    const parsed = parseManifest(json(ociManifest({ extra: 1, annotations: { a: 'b' } })), OCI_MANIFEST);
    const expected: ImageManifest = {
      schemaVersion: 2,
      config: { mediaType: OCI_CONFIG, digest: parseDigest(A), size: 7023 },
      layers: [
        { mediaType: OCI_LAYER_GZIP, digest: parseDigest(B), size: 32654 },
        { mediaType: OCI_LAYER_ZSTD, digest: parseDigest(C), size: 0, annotations: { 'org.example': 'x' } },
      ],
      mediaType: OCI_MANIFEST,
      annotations: { a: 'b' },
    };
    expect(parsed).toStrictEqual({ kind: 'manifest', mediaType: OCI_MANIFEST, manifest: expected });
  });

  it('parses a Docker manifest list', () => {
    const body = {
      schemaVersion: 2,
      mediaType: DOCKER_MANIFEST_LIST,
      manifests: [
        {
          mediaType: DOCKER_MANIFEST,
          digest: A,
          size: 528,
          platform: { architecture: 'arm', os: 'linux', variant: 'v7' },
        },
      ],
    };
    expect(
      parseManifest(json(body), 'application/vnd.docker.distribution.manifest.list.v2+json'),
    ).toStrictEqual({
      kind: 'index',
      mediaType: DOCKER_MANIFEST_LIST,
      index: body,
    });
  });

  // [what, body, contentType, kind, mediaType]
  it.each<[string, Record<string, unknown>, string | undefined, 'manifest' | 'index', string]>([
    ['body type only', ociManifest(), undefined, 'manifest', OCI_MANIFEST],
    ['header type only', ociManifest({ mediaType: undefined }), OCI_MANIFEST, 'manifest', OCI_MANIFEST],
    ['header with parameters', ociManifest(), `${OCI_MANIFEST}; charset=utf-8`, 'manifest', OCI_MANIFEST],
    ['generic header ignored', ociManifest(), 'application/json', 'manifest', OCI_MANIFEST],
    ['octet-stream header ignored', ociIndex(), 'application/octet-stream', 'index', OCI_INDEX],
    ['empty header ignored', ociIndex(), '', 'index', OCI_INDEX],
    ['index from header', ociIndex({ mediaType: undefined }), OCI_INDEX, 'index', OCI_INDEX],
    // What podman and skopeo push, read back from the store (no Content-Type): told by its fields.
    [
      'no type: config and layers',
      ociManifest({ mediaType: undefined }),
      undefined,
      'manifest',
      OCI_MANIFEST,
    ],
    [
      'no type, generic header: manifests',
      ociIndex({ mediaType: undefined }),
      'application/json',
      'index',
      OCI_INDEX,
    ],
    [
      'docker manifest',
      ociManifest({
        mediaType: DOCKER_MANIFEST,
        config: { mediaType: DOCKER_CONFIG, digest: A, size: 1 },
        layers: [{ mediaType: DOCKER_LAYER_GZIP, digest: B, size: 2 }],
      }),
      DOCKER_MANIFEST,
      'manifest',
      DOCKER_MANIFEST,
    ],
  ])('media type: %s', (_what, body, contentType, kind, mediaType) => {
    const parsed = parseManifest(json(body), contentType);
    expect([parsed.kind, parsed.mediaType]).toStrictEqual([kind, mediaType]);
  });

  it('parses descriptor extras: urls, platform, artifactType, subject', () => {
    const layer = {
      mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
      digest: B,
      size: 5,
      urls: ['https://example.com/layer'],
    };
    const subject = { mediaType: OCI_MANIFEST, digest: C, size: 9 };
    const parsed = parseManifest(
      json(ociManifest({ layers: [layer], subject, artifactType: 'application/vnd.example+type' })),
    );
    expect(parsed).toStrictEqual({
      kind: 'manifest',
      mediaType: OCI_MANIFEST,
      manifest: {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        artifactType: 'application/vnd.example+type',
        config: { mediaType: OCI_CONFIG, digest: A, size: 7023 },
        layers: [layer],
        subject,
      },
    });
  });

  const pathError = (message: string) => new InvalidManifestError(`invalid manifest: ${message}`);

  it.each<[string, Uint8Array, string | undefined, Error]>([
    ['not JSON', new TextEncoder().encode('{'), undefined, pathError('body is not valid JSON')],
    ['not UTF-8', new Uint8Array([0x7b, 0xff, 0x7d]), undefined, pathError('body is not valid UTF-8')],
    ['an array', json([]), undefined, pathError('body must be an object, got an array')],
    ['null', json(null), undefined, pathError('body must be an object, got null')],
    [
      'schemaVersion 3',
      json(ociManifest({ schemaVersion: 3 })),
      undefined,
      pathError('schemaVersion must be 2, got number 3'),
    ],
    [
      'schemaVersion missing',
      json(ociManifest({ schemaVersion: undefined })),
      undefined,
      pathError('schemaVersion must be 2, got nothing'),
    ],
    [
      'schemaVersion "2"',
      json(ociManifest({ schemaVersion: '2' })),
      undefined,
      pathError('schemaVersion must be 2, got "2"'),
    ],
    [
      'types disagree',
      json(ociManifest()),
      DOCKER_MANIFEST,
      pathError(`mediaType "${OCI_MANIFEST}" disagrees with Content-Type "${DOCKER_MANIFEST}"`),
    ],
    [
      'no type, and fields of both kinds',
      json(ociManifest({ mediaType: undefined, manifests: [] })),
      undefined,
      pathError('no mediaType field and no Content-Type, and it has both manifests and config or layers'),
    ],
    [
      'no type, generic header, and fields of neither kind',
      json({ schemaVersion: 2 }),
      'application/json',
      pathError(
        'no mediaType field and no Content-Type, and neither manifests nor config and layers to tell its kind',
      ),
    ],
    ['bad header', json(ociManifest()), 'garbage', pathError('Content-Type "garbage" is not a media type')],
    [
      'bad body type',
      json(ociManifest({ mediaType: 42 })),
      undefined,
      pathError('mediaType must be a string, got number 42'),
    ],
    [
      'missing config',
      json(ociManifest({ config: undefined })),
      undefined,
      pathError('config must be an object, got nothing'),
    ],
    [
      'layers not array',
      json(ociManifest({ layers: {} })),
      undefined,
      pathError('layers must be an array, got an object'),
    ],
    [
      'negative size',
      json(ociManifest({ layers: [{ mediaType: OCI_LAYER_GZIP, digest: B, size: -1 }] })),
      undefined,
      pathError('layers[0].size must be a non-negative safe integer, got number -1'),
    ],
    [
      'fractional size',
      json(ociManifest({ config: { mediaType: OCI_CONFIG, digest: A, size: 1.5 } })),
      undefined,
      pathError('config.size must be a non-negative safe integer, got number 1.5'),
    ],
    [
      'unsafe size',
      json(ociManifest({ config: { mediaType: OCI_CONFIG, digest: A, size: 2 ** 53 } })),
      undefined,
      pathError('config.size must be a non-negative safe integer, got number 9007199254740992'),
    ],
    [
      'size as string',
      json(ociManifest({ config: { mediaType: OCI_CONFIG, digest: A, size: '1' } })),
      undefined,
      pathError('config.size must be a non-negative safe integer, got "1"'),
    ],
    [
      'bad digest',
      json(ociManifest({ layers: [{ mediaType: OCI_LAYER_GZIP, digest: 'sha256:abc', size: 1 }] })),
      undefined,
      pathError(
        'layers[0].digest is not a valid digest: invalid digest "sha256:abc": sha256 needs 64 hex characters, got 3',
      ),
    ],
    [
      'layer media type missing',
      json(ociManifest({ layers: [{ digest: B, size: 1 }] })),
      undefined,
      pathError('layers[0].mediaType must be a string, got nothing'),
    ],
    [
      'layer media type malformed',
      json(ociManifest({ layers: [{ mediaType: 'tar', digest: B, size: 1 }] })),
      undefined,
      pathError('layers[0].mediaType is not a valid media type: invalid media type "tar": missing "/"'),
    ],
    [
      'urls not strings',
      json(ociManifest({ layers: [{ mediaType: OCI_LAYER_GZIP, digest: B, size: 1, urls: [1] }] })),
      undefined,
      pathError('layers[0].urls[0] must be a string, got number 1'),
    ],
    [
      'annotation not a string',
      json(ociManifest({ annotations: { 'org.x': true } })),
      undefined,
      pathError('annotations["org.x"] must be a string, got boolean true'),
    ],
    [
      'manifest with manifests',
      json(ociManifest({ manifests: [] })),
      undefined,
      pathError(`manifests must be absent from an image manifest (${OCI_MANIFEST})`),
    ],
    [
      'index with layers',
      json(ociIndex({ layers: [] })),
      undefined,
      pathError(`layers must be absent from an index (${OCI_INDEX})`),
    ],
    [
      'index without manifests',
      json(ociIndex({ manifests: undefined })),
      undefined,
      pathError('manifests must be an array, got nothing'),
    ],
    [
      'platform without os',
      json(
        ociIndex({
          manifests: [{ mediaType: OCI_MANIFEST, digest: A, size: 1, platform: { architecture: 'amd64' } }],
        }),
      ),
      undefined,
      pathError('manifests[0].platform.os must be a string, got nothing'),
    ],
    [
      'platform variant not a string',
      json(
        ociIndex({
          manifests: [
            {
              mediaType: OCI_MANIFEST,
              digest: A,
              size: 1,
              platform: { architecture: 'arm', os: 'linux', variant: 7 },
            },
          ],
        }),
      ),
      undefined,
      pathError('manifests[0].platform.variant must be a string, got number 7'),
    ],
    [
      'unknown layer type',
      json(ociManifest({ layers: [{ mediaType: 'application/vnd.in-toto+json', digest: B, size: 1 }] })),
      undefined,
      new UnsupportedMediaTypeError(
        'application/vnd.in-toto+json',
        'invalid manifest: layers[0].mediaType "application/vnd.in-toto+json" is not a supported layer type',
      ),
    ],
    [
      'unknown manifest type',
      json(ociManifest({ mediaType: 'application/vnd.example.manifest+json' })),
      undefined,
      new UnsupportedMediaTypeError(
        'application/vnd.example.manifest+json',
        'unsupported manifest media type "application/vnd.example.manifest+json"',
      ),
    ],
    [
      'schema 1 by body',
      json({ schemaVersion: 1, name: 'library/alpine', tag: 'latest', fsLayers: [] }),
      undefined,
      new UnsupportedMediaTypeError(
        'schemaVersion 1',
        'unsupported manifest: Docker image manifest schema 1 ("schemaVersion 1") is deprecated and not supported',
      ),
    ],
    [
      'schema 1 by header',
      json({ schemaVersion: 1, name: 'library/alpine' }),
      'application/vnd.docker.distribution.manifest.v1+prettyjws',
      new UnsupportedMediaTypeError(
        'application/vnd.docker.distribution.manifest.v1+prettyjws',
        'unsupported manifest: Docker image manifest schema 1 ("application/vnd.docker.distribution.manifest.v1+prettyjws") is deprecated and not supported',
      ),
    ],
    [
      'schema 1 by header, not even JSON',
      new TextEncoder().encode('not json'),
      'application/vnd.docker.distribution.manifest.v1+json',
      new UnsupportedMediaTypeError(
        'application/vnd.docker.distribution.manifest.v1+json',
        'unsupported manifest: Docker image manifest schema 1 ("application/vnd.docker.distribution.manifest.v1+json") is deprecated and not supported',
      ),
    ],
    [
      'too large',
      new Uint8Array(MAX_MANIFEST_BYTES + 1),
      undefined,
      pathError('4194305 bytes is more than the 4194304 bytes allowed'),
    ],
  ])('rejects %s', (_what, bytes, contentType, error) => {
    expect(() => parseManifest(bytes, contentType)).toThrowError(error);
  });

  it('keeps the digest error as cause', () => {
    const bad = json(ociManifest({ config: { mediaType: OCI_CONFIG, digest: 'md5:00', size: 1 } }));
    let caught: unknown;
    try {
      parseManifest(bad);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(InvalidManifestError);
    expect((caught as Error).cause).toStrictEqual(
      new InvalidDigestError('invalid digest "md5:00": unsupported algorithm "md5"'),
    );
  });

  it('accepts exactly MAX_MANIFEST_BYTES', () => {
    const base = serializeManifest(ociManifest() as unknown as ImageManifest);
    const padded = new Uint8Array(MAX_MANIFEST_BYTES).fill(0x20);
    padded.set(base);
    expect(parseManifest(padded).kind).toBe('manifest');
  });
});

describe('serializeManifest and descriptorFor', () => {
  it('produces compact JSON whose digest is pinned', () => {
    const index: ImageIndex = {
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: parseDigest(A),
          size: 1,
          platform: { architecture: 'amd64', os: 'linux' },
        },
      ],
    };
    const bytes = serializeManifest(index);
    expect(new TextDecoder().decode(bytes)).toBe(
      `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"${A}","size":1,"platform":{"architecture":"amd64","os":"linux"}}]}`,
    );
    // Golden value, computed independently with `sha256sum`.
    expect(descriptorFor(OCI_INDEX, bytes)).toStrictEqual({
      mediaType: OCI_INDEX,
      digest: 'sha256:9d49f0c55360264fab03eab03a0deb99119ace20539507281996de0b080f1283',
      size: 287,
    });
    expect(parseManifest(bytes)).toStrictEqual({ kind: 'index', mediaType: OCI_INDEX, index });
  });
});

describe('parseDiffID', () => {
  it('accepts a digest and rejects garbage', () => {
    expect(parseDiffID(A)).toBe(A);
    expect(() => parseDiffID('nope')).toThrowError(
      new InvalidDigestError('invalid digest "nope": missing "algorithm:" prefix'),
    );
  });
});

describe('parseImageConfig', () => {
  const minimal = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [A, B] } };

  it('parses a minimal config', () => {
    expect(parseImageConfig(json(minimal))).toStrictEqual(minimal);
  });

  it('parses a full Docker config, dropping unknown fields and nulls', () => {
    const body = {
      architecture: 'arm64',
      variant: 'v8',
      os: 'linux',
      created: '2024-01-27T00:00:00Z',
      author: 'me',
      config: {
        User: '1000',
        Env: ['PATH=/usr/bin'],
        Entrypoint: null,
        Cmd: ['/bin/sh'],
        WorkingDir: '/',
        Labels: { a: 'b' },
        ExposedPorts: { '80/tcp': {} },
        Volumes: null,
        StopSignal: 'SIGTERM',
        Hostname: 'ignored',
      },
      container: 'ignored',
      rootfs: { type: 'layers', diff_ids: [A] },
      history: [
        {
          created: '2024-01-27T00:00:00Z',
          created_by: '/bin/sh -c #(nop) ADD',
          empty_layer: true,
          comment: 'c',
        },
      ],
    };
    expect(parseImageConfig(json(body))).toStrictEqual({
      architecture: 'arm64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [A] },
      created: '2024-01-27T00:00:00Z',
      author: 'me',
      variant: 'v8',
      config: {
        User: '1000',
        WorkingDir: '/',
        StopSignal: 'SIGTERM',
        Env: ['PATH=/usr/bin'],
        Entrypoint: null,
        Cmd: ['/bin/sh'],
        ExposedPorts: { '80/tcp': {} },
        Labels: { a: 'b' },
      },
      history: [
        {
          created: '2024-01-27T00:00:00Z',
          created_by: '/bin/sh -c #(nop) ADD',
          comment: 'c',
          empty_layer: true,
        },
      ],
    });
  });

  it('accepts "config": null', () => {
    expect(parseImageConfig(json({ ...minimal, config: null }))).toStrictEqual(minimal);
  });

  const configError = (message: string) => new InvalidImageConfigError(`invalid image config: ${message}`);
  it.each<[string, unknown, Error]>([
    ['not an object', [], configError('body must be an object, got an array')],
    [
      'no rootfs',
      { architecture: 'amd64', os: 'linux' },
      configError('rootfs must be an object, got nothing'),
    ],
    [
      'rootfs type',
      { ...minimal, rootfs: { type: 'x', diff_ids: [] } },
      configError('rootfs.type must be "layers", got "x"'),
    ],
    [
      'diff_ids missing',
      { ...minimal, rootfs: { type: 'layers' } },
      configError('rootfs.diff_ids must be an array, got nothing'),
    ],
    [
      'bad diff_id',
      { ...minimal, rootfs: { type: 'layers', diff_ids: [A, 'sha256:0'] } },
      configError(
        'rootfs.diff_ids[1] is not a valid digest: invalid digest "sha256:0": sha256 needs 64 hex characters, got 1',
      ),
    ],
    [
      'no architecture',
      { ...minimal, architecture: undefined },
      configError('architecture must be a string, got nothing'),
    ],
    ['os not a string', { ...minimal, os: 1 }, configError('os must be a string, got number 1')],
    [
      'Env not strings',
      { ...minimal, config: { Env: [1] } },
      configError('config.Env[0] must be a string, got number 1'),
    ],
    [
      'Cmd a string',
      { ...minimal, config: { Cmd: 'sh' } },
      configError('config.Cmd must be an array, got "sh"'),
    ],
    [
      'empty_layer a string',
      { ...minimal, history: [{}, { empty_layer: 'yes' }] },
      configError('history[1].empty_layer must be a boolean, got "yes"'),
    ],
  ])('rejects %s', (_what, body, error) => {
    expect(() => parseImageConfig(json(body))).toThrowError(error);
  });
});

// Media type constants are canonical: parsing them is the identity.
describe('constants used above', () => {
  it.each([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_CONFIG, DOCKER_CONFIG])(
    '%s',
    (t) => {
      expect(parseMediaType(t)).toBe(t);
    },
  );
});
