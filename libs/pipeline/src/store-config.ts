/**
 * `@stevedore/pipeline/store-config`: opening the store the way the workers do (their environment
 * schema: STEVEDORE_STORE, the S3 settings, the blob policy) without loading the rest of the
 * pipeline. The CLI's store commands (images, inspect, rm, export) use it, so they start without
 * the queue and registry clients (bullmq, ioredis, undici).
 */
export { WORKER_ENV, type WorkerConfig } from './service-config.ts';
export { backendFromConfig, openConfiguredStore } from './store-adapter.ts';
