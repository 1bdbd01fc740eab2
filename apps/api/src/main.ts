/**
 * stevedore API: wires configuration, clients and the server; the routes are in server.ts. The
 * API never runs workers.
 */
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ConfigError } from '@stevedore/config';
import {
  backendFromConfig,
  createLogger,
  producerConnection,
  PullSubmitter,
  redactUrl,
  StoreGate,
} from '@stevedore/pipeline';
import { openStore } from '@stevedore/store';
import { loadConfig, type ApiConfig } from './config.ts';
import { buildServer } from './server.ts';

function configOrExit(): ApiConfig {
  try {
    return loadConfig();
  } catch (err) {
    process.stderr.write(`stevedore api: ${err instanceof ConfigError ? err.message : String(err)}\n`);
    process.exit(1);
  }
}

const config = configOrExit();

const logger = createLogger({ name: 'api', level: config.STEVEDORE_LOG_LEVEL });
const redis = producerConnection(config.STEVEDORE_REDIS_URL);
// Without a listener ioredis prints connection errors itself; readiness reports them.
redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
// The API never writes blobs, so the blob policy does not matter here.
const store = await openStore({
  backend: backendFromConfig(config),
  gcPaceAboveBytes: config.STEVEDORE_GC_PACE_ABOVE_MIB * 1024 * 1024,
});
const submitter = new PullSubmitter(redis);
const metrics = new Registry();
collectDefaultMetrics({ register: metrics, prefix: 'stevedore_api_' });

// Downloads read layers under a read lease: refused while a garbage collection runs (which waits
// for the leases it finds), and the object index forgotten after one. No generation read at start (Redis may not be up yet): the first download forgets an
// index that nothing has loaded yet, which costs nothing.
const gate = new StoreGate(redis, () => store.forgetObjectIndex());
const app = await buildServer({
  config,
  redis,
  submitter,
  store,
  metrics,
  logger,
  beginStoreRead: (what) => gate.beginRead(what),
});
await app.listen({ port: config.STEVEDORE_API_PORT, host: config.STEVEDORE_API_HOST });
logger.info(
  { redis: redactUrl(config.STEVEDORE_REDIS_URL), store: store.backend.description },
  'api started',
);

let stopping = false;
const stop = (signal: NodeJS.Signals): void => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'stopping');
  (async () => {
    await app.close();
    await submitter.close();
    await store.close();
    await redis.quit();
  })().then(
    () => process.exit(0),
    (err: unknown) => {
      logger.error({ err }, 'error while stopping');
      process.exit(1);
    },
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
