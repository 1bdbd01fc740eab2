/** stevedore hasher: wires configuration, clients and workers; the logic is in @stevedore/pipeline. */
import { ConfigError } from '@stevedore/config';
import { startWorkerService, stopOnSignals } from '@stevedore/pipeline';
import { loadConfig } from './config.ts';

try {
  const service = await startWorkerService({ name: 'hasher', roles: ['hasher'], config: loadConfig() });
  stopOnSignals(service);
} catch (err) {
  process.stderr.write(`stevedore hasher: ${err instanceof ConfigError ? err.message : String(err)}\n`);
  process.exit(1);
}
