/**
 * `npm run bench -- split`: issue 3. Runs the store's own split/rebuild benchmark
 * (libs/store/bench/split.ts, owned by the store) as a child process, streams its output, and
 * keeps it as sections of figures for the JSON results. The store benchmark prints one section
 * per backend and dataset: a `backend / dataset: ...` title, then indented `label  text` lines.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SPLIT_BENCH = fileURLToPath(new URL('../../../libs/store/bench/split.ts', import.meta.url));

export interface SplitSection {
  /** The section's title line, e.g. `directory / synthetic 100 x 200 KiB: 21 MB tar, ...`. */
  readonly title: string;
  /** Its indented lines, trimmed (`split    850 MB/s, ...`, `stored   0.412 x unique content ...`). */
  readonly figures: readonly string[];
}

export interface SplitResults {
  readonly benchmark: 'split';
  readonly quick: boolean;
  readonly startedAt: string;
  readonly command: readonly string[];
  readonly seconds: number;
  readonly sections: readonly SplitSection[];
  /** Lines that were neither a title nor a figure (the store benchmark's own notes). */
  readonly otherLines: readonly string[];
}

/** Sections of the store benchmark's output. Pure. */
export function parseSplitOutput(output: string): { sections: SplitSection[]; otherLines: string[] } {
  const sections: { title: string; figures: string[] }[] = [];
  const otherLines: string[] = [];
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue;
    const current = sections.at(-1);
    if (/^\S.* \/ .*:/.test(line)) sections.push({ title: line.trim(), figures: [] });
    else if (/^\s/.test(line) && current !== undefined) current.figures.push(line.trim());
    else otherLines.push(line);
  }
  return { sections, otherLines };
}

/**
 * Runs the store benchmark with `passThrough` arguments; its stdout goes to `echo` line by line as
 * it comes (it takes minutes), its stderr straight to ours. Throws when it exits non-zero.
 */
export async function runSplitBench(
  passThrough: readonly string[],
  quick: boolean,
  echo: (line: string) => void,
): Promise<SplitResults> {
  const startedAt = new Date().toISOString();
  const args = [SPLIT_BENCH, ...passThrough];
  const started = performance.now();
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  let pending = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text;
    pending += text;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) echo(line);
  });
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
    child.once('error', (err) => reject(new Error(`cannot run ${SPLIT_BENCH}`, { cause: err })));
    child.once('close', (c, s) => resolve([c, s]));
  });
  if (pending !== '') echo(pending);
  if (code !== 0) throw new Error(`${SPLIT_BENCH} failed (exit code ${code}, signal ${signal})`);
  const { sections, otherLines } = parseSplitOutput(output);
  if (sections.length === 0) throw new Error(`${SPLIT_BENCH} printed no result section:\n${output}`);
  return {
    benchmark: 'split',
    quick,
    startedAt,
    command: ['node', 'libs/store/bench/split.ts', ...passThrough],
    seconds: (performance.now() - started) / 1000,
    sections,
    otherLines,
  };
}
