/**
 * `npm run bench -- <name> [options]`: stevedore's benchmarks (see README.md and `--help`).
 * Progress goes to stderr; the report (a table, or JSON with --json) to stdout; the results of
 * the last run to `tools/bench/results/<name>[-quick].json`. Benchmarks print figures, they do not
 * pass or fail on them: the exit code is 1 only when a run failed.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { parseBenchArgs, USAGE, UsageError, type BenchArgs } from './args.ts';
import { runPullBench } from './pull.ts';
import { runSplitBench } from './split.ts';

const RESULTS_DIR = fileURLToPath(new URL('../results/', import.meta.url));
const EXIT_USAGE = 2;

function progress(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Writes `results` as `<dir>/<file>` (via a temporary name, so a reader never sees half a file). */
async function writeResults(dir: string, file: string, results: unknown): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, file);
  await writeFile(`${path}.tmp`, `${JSON.stringify(results, null, 2)}\n`);
  await rename(`${path}.tmp`, path);
  return path;
}

async function run(args: BenchArgs): Promise<number> {
  const dir = args.resultsDir ?? RESULTS_DIR;
  const set = args.name === 'pull' && !args.quick && args.pull.set !== 'usr' ? `-${args.pull.set}` : '';
  const file = `${args.name}${set}${args.quick ? '-quick' : ''}.json`;
  switch (args.name) {
    case 'split': {
      // Without --json the store benchmark's lines are the report: show them as they come.
      const results = await runSplitBench(args.split.passThrough, args.quick, (line) =>
        args.json ? progress(line) : process.stdout.write(`${line}\n`),
      );
      const path = await writeResults(dir, file, results);
      if (args.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
      progress(`results written to ${path}`);
      return 0;
    }
    case 'pull': {
      const { results, report } = await runPullBench({ ...args.pull, quick: args.quick }, progress);
      const path = await writeResults(dir, file, results);
      process.stdout.write(args.json ? `${JSON.stringify(results, null, 2)}\n` : report);
      progress(`results written to ${path}`);
      return results.failures.length === 0 ? 0 : 1;
    }
  }
}

async function main(): Promise<number> {
  let args: BenchArgs | undefined;
  try {
    args = parseBenchArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`bench: ${err.message}\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  if (args === undefined) {
    process.stdout.write(USAGE);
    return 0;
  }
  return run(args);
}

// Exit (rather than die by the signal) so that exit hooks stop the servers and worker process
// groups and remove the temporary stores.
for (const [signal, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.once(signal, () => {
    progress(`bench: ${signal}: stopping servers and removing temporary directories`);
    process.exit(code);
  });
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // inspect prints the stack and the chain of causes: which run failed, then what failed.
    process.stderr.write(`bench failed: ${inspect(err, { depth: 8 })}\n`);
    process.exitCode = 1;
  },
);
