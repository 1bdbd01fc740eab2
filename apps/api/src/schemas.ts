/**
 * JSON schemas of the routes: Fastify validates requests with them and serialises responses with
 * them, and openapi.ts builds the OpenAPI document from them. One source for all three.
 */

const str = { type: 'string' } as const;
const int = { type: 'integer', minimum: 0 } as const;
const nullableStr = { type: ['string', 'null'] } as const;

export const errorSchema = {
  type: 'object',
  description: 'What was wrong, naming the input.',
  required: ['error'],
  properties: { error: str },
} as const;

/** The wildcard route parameter (`/v1/images/*`), published as `{ref}` in the OpenAPI document. */
export const refParams = {
  type: 'object',
  required: ['*'],
  properties: {
    '*': {
      type: 'string',
      minLength: 1,
      description:
        'A tag reference (`docker.io/library/alpine:3.20`, `alpine:3.20`), `repo@sha256:…` or a bare digest; URL-encoded or not.',
    },
  },
} as const;

export const pullRequestSchema = {
  type: 'object',
  required: ['ref'],
  additionalProperties: false,
  properties: {
    ref: {
      type: 'string',
      minLength: 1,
      maxLength: 512,
      description: 'Image reference, e.g. `alpine:3.20`.',
    },
    platform: {
      type: 'string',
      minLength: 1,
      maxLength: 64,
      description:
        '`os/arch[/variant]`, or `all` for every platform of an index; default: the host platform.',
    },
  },
} as const;

export const pullCreatedSchema = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', description: 'The pull id, for GET /v1/pulls/{id}.' } },
} as const;

const layerStatusSchema = {
  type: 'object',
  required: ['digest', 'diffID', 'size', 'bytes', 'outcome', 'fetchState', 'splitState', 'commitState'],
  properties: {
    digest: str,
    diffID: str,
    size: int,
    bytes: { ...int, description: 'Compressed bytes fetched so far.' },
    outcome: { type: 'string', description: 'queued, waiting, fetching, fetched, reused or waited.' },
    fetchState: str,
    splitState: str,
    commitState: str,
  },
} as const;

const pullResultSchema = {
  type: ['object', 'null'],
  required: ['ref', 'resolvedDigest', 'images'],
  properties: {
    ref: str,
    resolvedDigest: str,
    images: {
      type: 'array',
      items: {
        type: 'object',
        required: ['manifestDigest', 'platform', 'layers'],
        properties: { manifestDigest: str, platform: str, layers: int },
      },
    },
  },
} as const;

export const pullStatusSchema = {
  type: 'object',
  required: ['id', 'ref', 'platform', 'state', 'progress', 'layers', 'error', 'result'],
  properties: {
    id: str,
    ref: str,
    platform: str,
    state: {
      type: 'string',
      description:
        'BullMQ state of the pull: waiting, active, waiting-children, delayed, completed, failed, …',
    },
    progress: {
      type: 'object',
      required: ['bytesDone', 'bytesTotal', 'layersDone', 'layersTotal'],
      properties: { bytesDone: int, bytesTotal: int, layersDone: int, layersTotal: int },
    },
    layers: { type: 'array', items: layerStatusSchema },
    error: { ...nullableStr, description: 'Why the pull failed, when it did.' },
    result: pullResultSchema,
  },
} as const;

const descriptorSchema = {
  type: 'object',
  required: ['digest', 'size', 'mediaType'],
  properties: { digest: str, size: int, mediaType: str },
} as const;

export const imageListSchema = {
  type: 'object',
  required: ['references', 'images'],
  properties: {
    references: {
      type: 'array',
      items: {
        type: 'object',
        required: ['reference', 'digest', 'updatedAt', 'images'],
        properties: {
          reference: {
            ...str,
            description:
              '`registry/repository:tag`, or `registry/repository@sha256:…` for an image pulled by digest.',
          },
          digest: str,
          updatedAt: str,
          images: {
            type: 'array',
            items: str,
            description: 'Manifest digests of the stored images it leads to.',
          },
        },
      },
    },
    images: {
      type: 'array',
      items: {
        type: 'object',
        required: [
          'manifestDigest',
          'platform',
          'configDigest',
          'layers',
          'compressedSize',
          'createdAt',
          'references',
        ],
        properties: {
          manifestDigest: str,
          platform: nullableStr,
          configDigest: str,
          layers: int,
          compressedSize: int,
          createdAt: str,
          references: { type: 'array', items: str },
        },
      },
    },
  },
} as const;

const layerDetailSchema = {
  type: 'object',
  required: [
    'digest',
    'diffID',
    'mediaType',
    'size',
    'uncompressedSize',
    'files',
    'objects',
    'objectsWritten',
    'objectsReused',
    'bytesWritten',
    'bytesReused',
    'bytesStored',
    'splitstreamBytes',
  ],
  properties: {
    digest: str,
    diffID: str,
    mediaType: str,
    size: int,
    uncompressedSize: int,
    files: int,
    objects: int,
    objectsWritten: int,
    objectsReused: int,
    bytesWritten: int,
    bytesReused: int,
    bytesStored: int,
    splitstreamBytes: int,
  },
} as const;

export const imageLookupSchema = {
  type: 'object',
  required: ['reference', 'digest', 'mediaType', 'images'],
  properties: {
    reference: nullableStr,
    digest: str,
    mediaType: str,
    images: {
      type: 'array',
      items: {
        type: 'object',
        required: ['manifest', 'config', 'platform', 'createdAt', 'layers', 'sizes', 'dedup'],
        properties: {
          manifest: descriptorSchema,
          config: descriptorSchema,
          platform: nullableStr,
          createdAt: str,
          layers: { type: 'array', items: layerDetailSchema },
          sizes: {
            type: 'object',
            required: ['compressed', 'uncompressed', 'stored'],
            properties: { compressed: int, uncompressed: int, stored: int },
          },
          dedup: {
            type: 'object',
            required: ['objectsWritten', 'objectsReused', 'bytesWritten', 'bytesReused', 'ratio'],
            properties: {
              objectsWritten: int,
              objectsReused: int,
              bytesWritten: int,
              bytesReused: int,
              ratio: { type: ['number', 'null'] },
            },
          },
        },
      },
    },
  },
} as const;

export const healthSchema = {
  type: 'object',
  required: ['status'],
  properties: { status: str },
} as const;

export const readySchema = {
  type: 'object',
  required: ['status', 'failed'],
  properties: {
    status: { type: 'string', description: '`ready` or `not ready`.' },
    failed: {
      type: 'object',
      additionalProperties: str,
      description: 'The checks that failed (redis, store), with their errors.',
    },
  },
} as const;
