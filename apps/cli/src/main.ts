#!/usr/bin/env node
/**
 * stevedore: the command line. Parses arguments and dispatches; the work is in the libraries.
 */
import { parseArgs } from 'node:util';
import { pullCommand } from './commands/pull.ts';

const USAGE = `usage: stevedore <command> [options]

commands:
  pull REF [--platform os/arch[/variant]|all] [--wait] [--json]
                       queue a pull of REF; --wait follows it to the end
  worker fetcher|hasher|committer|all
                       run workers of the pipeline (configured from the environment)

environment:
  STEVEDORE_REDIS_URL  Redis of the queues (default redis://127.0.0.1:6379)
`;

const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  const redisUrl = process.env.STEVEDORE_REDIS_URL ?? DEFAULT_REDIS_URL;
  switch (command) {
    case 'pull': {
      const { values, positionals } = parseArgs({
        args: rest,
        allowPositionals: true,
        options: {
          platform: { type: 'string' },
          wait: { type: 'boolean', default: false },
          json: { type: 'boolean', default: false },
          help: { type: 'boolean', short: 'h', default: false },
        },
      });
      if (values.help) {
        process.stdout.write(USAGE);
        return 0;
      }
      const ref = positionals[0];
      if (ref === undefined || positionals.length > 1) {
        process.stderr.write(`stevedore pull: expected exactly one image reference\n${USAGE}`);
        return 2;
      }
      return pullCommand({ ref, platform: values.platform, wait: values.wait, json: values.json, redisUrl });
    }
    case 'worker': {
      const { runWorkers } = await import('./commands/worker.ts');
      return runWorkers(rest);
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`stevedore: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`stevedore: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
