/**
 * Command line of `npm run bench -- <name> [options]`, parsed once into a frozen value. Pure.
 */
import { parseArgs } from 'node:util';

export const USAGE = `usage: npm run bench -- <name> [options]

benchmarks:
  split   the store's split/rebuild benchmark (libs/store/bench/split.ts), issue 3
  pull    two images sharing a base pulled with 1, 2 and 4 worker processes, next to
          skopeo copy and containerd's ctr images pull, issue 4

options:
  --quick            small generated data: seconds, for smoke tests
  --json             print the results as JSON instead of a table
  --results-dir DIR  where <name>.json is written (default tools/bench/results)
pull:
  --s3               also run every stevedore measurement on an S3 store (a local S3 server)
  --workers LIST     worker process counts, comma-separated (default 1,2,4)
  --no-peers         stevedore only: skip skopeo and containerd (their rows are then absent)
  --repeat N         runs of each measurement; the median is reported (default 3, quick 1)
  --timeout SECONDS  give up on one pull measurement after this long (default 1800, quick 120)
  --set usr|usr-share  the images: usr (default: /usr/share as a base, one image adds
                     /usr/include, the other /usr/bin) or usr-share (one image, the base alone:
                     issue 4's 250 MB gzip image of 50,000 files; results in pull-usr-share.json)
split (passed to the store's benchmark):
  --backend directory|s3|both   --dataset a|b|both   --files N
  --input reused|fresh   the tar read into two reused buffers the store reads in place (default),
                         or with a new Buffer per chunk, as Node's decoders hand out their output
`;

export type BenchName = 'split' | 'pull';
export type PullSetName = 'usr' | 'usr-share';

export interface PullArgs {
  readonly s3: boolean;
  readonly workers: readonly number[];
  readonly repeat: number;
  readonly timeoutMs: number;
  /** Run skopeo and containerd too (default; `--no-peers` skips them). */
  readonly peers: boolean;
  /** The image set (ignored with --quick, which has its own). */
  readonly set: PullSetName;
}

export interface SplitArgs {
  /** Arguments for libs/store/bench/split.ts. */
  readonly passThrough: readonly string[];
}

export interface BenchArgs {
  readonly name: BenchName;
  readonly quick: boolean;
  readonly json: boolean;
  readonly resultsDir: string | undefined;
  readonly pull: PullArgs;
  readonly split: SplitArgs;
}

/** A command line that cannot run: the message says what is wrong; exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

const DEFAULT_WORKERS = [1, 2, 4];
const DEFAULT_REPEAT = 3;
const QUICK_REPEAT = 1;
const DEFAULT_TIMEOUT_S = 1800;
const QUICK_TIMEOUT_S = 120;
/** More worker processes than this on one machine measures the scheduler, not stevedore. */
const MAX_WORKERS = 32;
/** The store benchmark's own defaults are minutes of data; quick asks for about 20 MB. */
const QUICK_SPLIT_ARGS = ['--dataset', 'a', '--files', '100', '--backend', 'directory'];

function positiveInteger(option: string, text: string, max: number): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > max) {
    throw new UsageError(`--${option} takes an integer from 1 to ${max}, not "${text}"`);
  }
  return Number(text);
}

/** Parses the arguments after `npm run bench --`. Throws {@link UsageError}; undefined for --help. */
export function parseBenchArgs(argv: readonly string[]): BenchArgs | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        help: { type: 'boolean', short: 'h', default: false },
        quick: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        'results-dir': { type: 'string' },
        s3: { type: 'boolean', default: false },
        workers: { type: 'string' },
        'no-peers': { type: 'boolean', default: false },
        repeat: { type: 'string' },
        timeout: { type: 'string' },
        set: { type: 'string' },
        backend: { type: 'string' },
        dataset: { type: 'string' },
        files: { type: 'string' },
        input: { type: 'string' },
      },
    });
  } catch (err) {
    throw new UsageError((err as Error).message, { cause: err });
  }
  const { values, positionals } = parsed;
  if (values.help) return undefined;
  if (positionals.length !== 1) {
    throw new UsageError(`expected one benchmark name (split or pull), got ${positionals.length}`);
  }
  const name = positionals[0]!;
  if (name !== 'split' && name !== 'pull') {
    throw new UsageError(`unknown benchmark "${name}": expected split or pull`);
  }
  const quick = values.quick;
  const pullOnly = ['s3', 'workers', 'no-peers', 'repeat', 'timeout', 'set'] as const;
  const splitOnly = ['backend', 'dataset', 'files', 'input'] as const;
  const misplaced =
    name === 'split'
      ? pullOnly.filter((o) => values[o] !== undefined && values[o] !== false)
      : splitOnly.filter((o) => values[o] !== undefined);
  if (misplaced.length > 0) {
    throw new UsageError(`${misplaced.map((o) => `--${o}`).join(', ')} do(es) not apply to ${name}`);
  }

  const workers =
    values.workers === undefined
      ? DEFAULT_WORKERS
      : values.workers.split(',').map((w) => positiveInteger('workers', w.trim(), MAX_WORKERS));
  const repeat =
    values.repeat === undefined
      ? quick
        ? QUICK_REPEAT
        : DEFAULT_REPEAT
      : positiveInteger('repeat', values.repeat, Number.MAX_SAFE_INTEGER);
  const timeoutS =
    values.timeout === undefined
      ? quick
        ? QUICK_TIMEOUT_S
        : DEFAULT_TIMEOUT_S
      : positiveInteger('timeout', values.timeout, Number.MAX_SAFE_INTEGER);

  const set = values.set ?? 'usr';
  if (set !== 'usr' && set !== 'usr-share') {
    throw new UsageError(`--set takes usr or usr-share, not "${set}"`);
  }

  const passThrough: string[] = [];
  for (const option of splitOnly) {
    const value = values[option];
    if (value !== undefined) passThrough.push(`--${option}`, value);
  }
  if (quick) {
    // Quick defaults, unless the option was given explicitly.
    for (let i = 0; i < QUICK_SPLIT_ARGS.length; i += 2) {
      if (!passThrough.includes(QUICK_SPLIT_ARGS[i]!))
        passThrough.push(QUICK_SPLIT_ARGS[i]!, QUICK_SPLIT_ARGS[i + 1]!);
    }
  }

  return Object.freeze({
    name,
    quick,
    json: values.json,
    resultsDir: values['results-dir'],
    pull: Object.freeze({
      s3: values.s3,
      workers: Object.freeze([...new Set(workers)]),
      repeat,
      timeoutMs: timeoutS * 1000,
      peers: !values['no-peers'],
      set,
    }),
    split: Object.freeze({ passThrough: Object.freeze(passThrough) }),
  });
}
