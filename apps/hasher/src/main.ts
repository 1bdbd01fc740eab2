/** stevedore hasher: wires configuration, clients and workers; the logic is in @stevedore/pipeline. */
import { ConfigError } from '@stevedore/config';
import { RedisPipelineMetrics } from '@stevedore/metrics';
import { startWorkerService, stopOnSignals } from '@stevedore/pipeline';
import { loadConfig } from './config.ts';

try {
  const service = await startWorkerService({
    name: 'hasher',
    roles: ['hasher'],
    config: loadConfig(),
    metrics: (redis, logger) =>
      new RedisPipelineMetrics(redis, { onError: (err) => logger.error({ err }, 'metrics flush failed') }),
  });
  stopOnSignals(service);
} catch (err) {
  process.stderr.write(`stevedore hasher: ${err instanceof ConfigError ? err.message : String(err)}\n`);
  process.exit(1);
}
