/**
 * The environment every worker service reads (fetcher, hasher, committer, or all of them in one
 * process). Each app's config module parses this schema once at start; infra/ manifests are
 * checked against it (every variable they set must be known here).
 */
import { env, type ConfigOf } from '@stevedore/config';
import { SERVICE_GC_PACE_ABOVE_BYTES } from '@stevedore/store';

export const WORKER_ENV = {
  STEVEDORE_REDIS_URL: env.string('Redis of the queues and locks', 'redis://127.0.0.1:6379'),
  STEVEDORE_STORE: env.string(
    'where the store lives: a directory path (or file:///path) or s3://bucket[/prefix]',
    '.stevedore/store',
  ),
  STEVEDORE_S3_ENDPOINT: env.optionalString('S3 endpoint URL for S3-compatible stores (AWS: leave unset)'),
  STEVEDORE_S3_REGION: env.string('S3 region', 'us-east-1'),
  STEVEDORE_S3_FORCE_PATH_STYLE: env.boolean('path-style S3 URLs (most S3-compatible stores need it)', false),
  STEVEDORE_S3_CHECKSUM: env.oneOf(
    'S3 request checksums: when_supported (SDK default) or when_required (for stores that reject aws-chunked uploads)',
    ['when_supported', 'when_required'],
    'when_supported',
  ),
  STEVEDORE_BLOB_POLICY: env.oneOf(
    'keep the original compressed layer blobs (keep) or delete them once split and committed (drop)',
    ['keep', 'drop'],
    'keep',
  ),
  STEVEDORE_GC_PACE_ABOVE_MIB: env.integer(
    'above this RSS (MiB), rebuilds of layers (exports) ask V8 for a GC every 8 MiB of output (default: room under the 512 MiB target of a service; the store library alone uses 192, for 256; 0: never)',
    SERVICE_GC_PACE_ABOVE_BYTES / (1024 * 1024),
    { min: 0, max: 1_048_576 },
  ),
  STEVEDORE_PULL_CONCURRENCY: env.integer('pull jobs (resolving references) at once per process', 4, {
    min: 1,
    max: 256,
  }),
  STEVEDORE_FETCH_CONCURRENCY: env.integer('blob transfers at once per process', 4, { min: 1, max: 256 }),
  STEVEDORE_SPLIT_CONCURRENCY: env.integer('layers split at once per process', 2, { min: 1, max: 64 }),
  STEVEDORE_SPLIT_WHILE_FETCHING: env.boolean(
    'with the fetcher and hasher roles in one process, split each layer from the bytes being fetched',
    true,
  ),
  STEVEDORE_COMMIT_CONCURRENCY: env.integer('commit jobs at once per process', 8, { min: 1, max: 256 }),
  STEVEDORE_LOCK_TTL_MS: env.integer('blob lock expiry; the holder renews it while working', 30_000, {
    min: 1_000,
    max: 600_000,
  }),
  STEVEDORE_JOB_LOCK_MS: env.integer(
    'BullMQ job lock: a job whose worker died is taken over after about this long (stalled-job check)',
    30_000,
    { min: 1_000, max: 600_000 },
  ),
  STEVEDORE_HEALTH_PORT: env.integer('port of /healthz and /readyz (0: any free port)', 8081, {
    min: 0,
    max: 65_535,
  }),
  STEVEDORE_LOG_LEVEL: env.oneOf('log level', ['trace', 'debug', 'info', 'warn', 'error', 'fatal'], 'info'),
  STEVEDORE_INSECURE_REGISTRIES: env.list('registries reached over plain HTTP (loopback ones always are)'),
  STEVEDORE_REGISTRY_AUTH: env.secret(
    'registry credentials as JSON {"host": {"username", "password"}}; Docker config.json (DOCKER_CONFIG) is read too',
  ),
  DOCKER_CONFIG: env.optionalString(
    "directory of Docker's config.json with registry credentials (default ~/.docker)",
  ),
} as const;

export type WorkerConfig = ConfigOf<typeof WORKER_ENV>;
