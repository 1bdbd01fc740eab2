/**
 * The API's configuration: read from the environment once, validated (every bad variable listed
 * at once), frozen. `API_ENV` is the schema infra/ manifests are checked against.
 */
import { env, parseEnv, type ConfigOf, type Field } from '@stevedore/config';
import { WORKER_ENV } from '@stevedore/pipeline';

/** Shorter tokens are guessable; 16 characters of a random token is already 80+ bits. */
export const MIN_SECRET_LENGTH = 16;

/** A secret of at least `min` characters (the problem is in the description: secrets are never quoted). */
function strongSecret(description: string, options: { required: boolean }): Field<string | undefined> {
  const base = env.secret(description, options);
  return {
    ...base,
    parse: (raw) =>
      raw.length < MIN_SECRET_LENGTH
        ? { ok: false, problem: `must be at least ${MIN_SECRET_LENGTH} characters` }
        : base.parse(raw),
  };
}

const {
  STEVEDORE_REDIS_URL,
  STEVEDORE_STORE,
  STEVEDORE_S3_ENDPOINT,
  STEVEDORE_S3_REGION,
  STEVEDORE_S3_FORCE_PATH_STYLE,
  STEVEDORE_S3_CHECKSUM,
  STEVEDORE_GC_PACE_ABOVE_MIB,
  STEVEDORE_LOG_LEVEL,
} = WORKER_ENV;

export const API_ENV = {
  STEVEDORE_API_PORT: env.integer('port of the HTTP API (0: any free port)', 8080, { min: 0, max: 65_535 }),
  STEVEDORE_API_HOST: env.string('address the HTTP API listens on', '0.0.0.0'),
  STEVEDORE_API_TOKEN: strongSecret(
    `bearer token API clients send as "Authorization: Bearer <token>" (at least ${MIN_SECRET_LENGTH} characters)`,
    { required: true },
  ),
  STEVEDORE_BOARD_USER: env.string('Bull Board (/admin/queues) user name for HTTP Basic', 'admin'),
  STEVEDORE_BOARD_PASSWORD: strongSecret(
    `Bull Board password for HTTP Basic (at least ${MIN_SECRET_LENGTH} characters; default: the API token)`,
    { required: false },
  ),
  STEVEDORE_REDIS_URL,
  STEVEDORE_STORE,
  STEVEDORE_S3_ENDPOINT,
  STEVEDORE_S3_REGION,
  STEVEDORE_S3_FORCE_PATH_STYLE,
  STEVEDORE_S3_CHECKSUM,
  STEVEDORE_GC_PACE_ABOVE_MIB,
  STEVEDORE_LOG_LEVEL,
} as const;

type Raw = ConfigOf<typeof API_ENV>;

/** The parsed configuration, secrets resolved (the board password defaults to the token). */
export type ApiConfig = Omit<Raw, 'STEVEDORE_API_TOKEN' | 'STEVEDORE_BOARD_PASSWORD'> & {
  readonly STEVEDORE_API_TOKEN: string;
  readonly STEVEDORE_BOARD_PASSWORD: string;
};

export function loadConfig(source: NodeJS.ProcessEnv = process.env): ApiConfig {
  const raw = parseEnv(API_ENV, source);
  // parseEnv has already refused a missing token (the field is required).
  const token = raw.STEVEDORE_API_TOKEN as string;
  return Object.freeze({
    ...raw,
    STEVEDORE_API_TOKEN: token,
    STEVEDORE_BOARD_PASSWORD: raw.STEVEDORE_BOARD_PASSWORD ?? token,
  });
}
