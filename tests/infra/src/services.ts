/**
 * The services the manifests deploy, with the configuration schema each one parses. The schemas
 * are imported from the code, so the manifest checks follow any change to them.
 */
import type { Schema } from '@stevedore/config';
import { WORKER_ENV } from '@stevedore/pipeline';
import { API_ENV } from '@stevedore/api/config';

export interface ServiceSpec {
  readonly schema: Schema;
  /** Workers run BullMQ jobs and must outlive a large layer on shutdown. */
  readonly role: 'worker' | 'api';
  /** The variable that sets the port of the probe endpoints (/healthz, /readyz). */
  readonly portVariable: string;
}

/** By app directory: the container command is `node apps/<app>/src/main.ts`. */
export const SERVICES: Readonly<Record<string, ServiceSpec>> = {
  fetcher: { schema: WORKER_ENV, role: 'worker', portVariable: 'STEVEDORE_HEALTH_PORT' },
  hasher: { schema: WORKER_ENV, role: 'worker', portVariable: 'STEVEDORE_HEALTH_PORT' },
  committer: { schema: WORKER_ENV, role: 'worker', portVariable: 'STEVEDORE_HEALTH_PORT' },
  api: { schema: API_ENV, role: 'api', portVariable: 'STEVEDORE_API_PORT' },
};

/**
 * Variables the services read without a schema field: the AWS SDK's default credential chain,
 * which the store's S3 backend falls back to (libs/store/src/backend/s3.ts), so that IAM roles
 * for service accounts and static keys both work.
 */
export const SDK_ENV: readonly string[] = ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'];

/**
 * Commands of the CLI (`node apps/cli/src/main.ts` with the command as its first argument) that
 * CronJobs run, with the schema the command parses: store maintenance reads the workers'.
 */
export const SCHEDULED: Readonly<Record<string, { readonly schema: Schema }>> = {
  compact: { schema: WORKER_ENV },
  verify: { schema: WORKER_ENV },
  gc: { schema: WORKER_ENV },
};

/** The app a container runs (`['node', 'apps/api/src/main.ts']` → `api`), if it runs one. */
export function appOfCommand(command: readonly string[] | undefined): string | undefined {
  if (command?.[0] !== 'node' || command.length !== 2) return undefined;
  return /^apps\/([a-z0-9-]+)\/src\/main\.ts$/.exec(command[1] ?? '')?.[1];
}
