/**
 * Running worker services: what a worker app's main.ts calls after parsing its config. Builds the
 * clients (Redis, store, registry), starts the workers of the given roles and the health
 * endpoint, and on SIGTERM/SIGINT stops taking jobs, lets the active ones finish (BullMQ
 * `worker.close()`), and exits.
 */
import { RegistryClient, DEFAULT_INSECURE_REGISTRIES, defaultCredentialStore } from '@stevedore/oci';
import type { Store } from '@stevedore/store';
import { startHealthServer, type HealthServer } from './health.ts';
import { startWorkerHost, type Role, type WorkerHost } from './host.ts';
import { readGcGeneration } from './gc.ts';
import { createLogger, type Logger } from './logger.ts';
import type { PipelineMetrics } from './deps.ts';
import { redactUrl, workerConnection } from './redis.ts';
import type { WorkerConfig } from './service-config.ts';
import { storeExporter } from './processors/export.ts';
import { openConfiguredStore, pipelineStore } from './store-adapter.ts';

export interface RunningService {
  readonly host: WorkerHost;
  readonly health: HealthServer;
  readonly store: Store;
  readonly logger: Logger;
  /** Graceful stop: health goes 503, workers finish their active jobs, connections close. */
  stop(): Promise<void>;
}

export interface ServiceOptions {
  readonly name: string;
  readonly roles: readonly Role[];
  readonly config: WorkerConfig;
  /** Where the processors' counters go (the api exposes them); none when absent. */
  readonly metrics?: (
    connection: ReturnType<typeof workerConnection>,
    logger: Logger,
  ) => PipelineMetrics & { close?(): Promise<void> };
  readonly logger?: Logger;
}

export async function startWorkerService(options: ServiceOptions): Promise<RunningService> {
  const { config } = options;
  const logger = options.logger ?? createLogger({ name: options.name, level: config.STEVEDORE_LOG_LEVEL });
  const connection = workerConnection(config.STEVEDORE_REDIS_URL);
  const store = await openConfiguredStore(config);
  const registry = new RegistryClient({
    credentials: defaultCredentialStore(),
    insecureRegistries: [...DEFAULT_INSECURE_REGISTRIES, ...config.STEVEDORE_INSECURE_REGISTRIES],
    logger: logger.child({ component: 'registry' }),
  });
  const metrics = options.metrics?.(connection, logger);
  // Read before the object index loads: a collection after this makes the first job reload it.
  const gcGeneration = await readGcGeneration(connection);
  if (options.roles.includes('hasher')) prepareStore(store, logger);
  const host = startWorkerHost({
    roles: options.roles,
    connection,
    store: pipelineStore(store),
    exporter: storeExporter(store),
    registry,
    logger,
    ...(metrics === undefined ? {} : { metrics }),
    lockTtlMs: config.STEVEDORE_LOCK_TTL_MS,
    jobLockMs: config.STEVEDORE_JOB_LOCK_MS,
    splitWhileFetching: config.STEVEDORE_SPLIT_WHILE_FETCHING,
    gcGeneration,
    onStoreCollected: async () => {
      await store.forgetObjectIndex();
      logger.info('store garbage-collected: object index forgotten (the next job reloads it)');
    },
    concurrency: {
      pull: config.STEVEDORE_PULL_CONCURRENCY,
      fetch: config.STEVEDORE_FETCH_CONCURRENCY,
      split: config.STEVEDORE_SPLIT_CONCURRENCY,
      commit: config.STEVEDORE_COMMIT_CONCURRENCY,
    },
  });
  const health = await startHealthServer(config.STEVEDORE_HEALTH_PORT, {
    redis: async () => {
      await connection.ping();
    },
    store: async () => {
      await store.backend.head('stevedore-store.json');
    },
  });
  logger.info({ redis: redactUrl(config.STEVEDORE_REDIS_URL), healthPort: health.port }, 'service started');
  let stopping: Promise<void> | undefined;
  return {
    host,
    health,
    store,
    logger,
    stop() {
      stopping ??= (async () => {
        logger.info('stopping: finishing active jobs');
        await health.close();
        await host.close();
        await metrics?.close?.();
        await store.close();
        await connection.quit();
        logger.info('stopped');
      })();
      return stopping;
    },
  };
}

/**
 * Readies the store of a process that splits or exports (the hasher role) for its first job while
 * the workers start: its worker threads (each takes 100-150 ms to load, measured on this machine,
 * and the first split waited for them) and its object index (the first import or read would
 * load it). The index loads in the background; a job that comes meanwhile shares that load.
 */
function prepareStore(store: Store, logger: Logger): void {
  const started = Date.now();
  store.prepareReads().then(
    () => {
      logger.info({ workerThreads: store.limiter.pool.size, ms: Date.now() - started }, 'store prepared');
    },
    (err: unknown) => {
      const reason = err instanceof Error ? err.message : String(err);
      logger.warn({ err: reason }, 'store not prepared ahead: the first job will load its index');
    },
  );
}

/** Installs SIGTERM/SIGINT handlers that stop the service gracefully and exit. */
export function stopOnSignals(service: RunningService): void {
  const onSignal = (signal: NodeJS.Signals): void => {
    service.logger.info({ signal }, 'signal received');
    service.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        service.logger.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}
