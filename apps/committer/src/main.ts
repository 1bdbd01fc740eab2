/** stevedore committer: wires configuration, clients and workers; the logic is in @stevedore/pipeline. */
import { ConfigError } from '@stevedore/config';
import { startWorkerService, stopOnSignals } from '@stevedore/pipeline';
import { loadConfig } from './config.ts';

try {
  const service = await startWorkerService({ name: 'committer', roles: ['committer'], config: loadConfig() });
  stopOnSignals(service);
} catch (err) {
  process.stderr.write(`stevedore committer: ${err instanceof ConfigError ? err.message : String(err)}\n`);
  process.exit(1);
}
