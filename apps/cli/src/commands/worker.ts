/**
 * `stevedore worker fetcher|hasher|committer|all`: run pipeline workers in this process, configured
 * from the environment (the same variables as the services: see `WORKER_ENV`). `all` is the
 * embedded default for one machine.
 */
import { parseEnv } from '@stevedore/config';
import { RedisPipelineMetrics } from '@stevedore/metrics';
import { ROLES, WORKER_ENV, startWorkerService, stopOnSignals, type Role } from '@stevedore/pipeline';

export async function runWorkers(args: readonly string[]): Promise<number> {
  const which = args[0];
  const roles: readonly Role[] | undefined =
    which === 'all' ? ROLES : ROLES.includes(which as Role) ? [which as Role] : undefined;
  if (roles === undefined || args.length !== 1) {
    process.stderr.write(
      `stevedore worker: expected one of fetcher, hasher, committer, all; got "${args.join(' ')}"\n`,
    );
    return 2;
  }
  const service = await startWorkerService({
    name: `worker-${which}`,
    roles,
    config: parseEnv(WORKER_ENV),
    metrics: (redis, logger) =>
      new RedisPipelineMetrics(redis, { onError: (err) => logger.error({ err }, 'metrics flush failed') }),
  });
  stopOnSignals(service);
  // Keep running until a signal stops the service (stopOnSignals exits the process).
  await new Promise<never>(() => {});
  return 0;
}
