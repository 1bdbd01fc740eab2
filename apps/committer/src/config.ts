/** The committer's configuration: read from the environment once, validated, frozen. */
import { parseEnv } from '@stevedore/config';
import { WORKER_ENV, type WorkerConfig } from '@stevedore/pipeline';

export const ENV_SCHEMA = WORKER_ENV;

export function loadConfig(source: NodeJS.ProcessEnv = process.env): WorkerConfig {
  return parseEnv(ENV_SCHEMA, source);
}
