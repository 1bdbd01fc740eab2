/**
 * A Dockerfile read into build stages and instructions, enough to check how an image is built:
 * continuation lines joined, comments and parser directives dropped, `FROM` images resolved from
 * the global `ARG` defaults, `COPY` flags and sources split, exec-form (JSON) arguments parsed.
 */

export interface Instruction {
  /** Upper case: FROM, RUN, COPY, USER, CMD, … */
  readonly keyword: string;
  /** The rest of the instruction, continuation lines joined with a space. */
  readonly args: string;
  /** 1-based line where the instruction starts. */
  readonly line: number;
}

export interface Stage {
  readonly index: number;
  /** `FROM image AS name`; undefined when unnamed. */
  readonly name: string | undefined;
  /** The base image with global ARG defaults substituted, or the name of an earlier stage. */
  readonly base: string;
  readonly instructions: readonly Instruction[];
}

export interface Dockerfile {
  /** Global ARGs (before the first FROM) and their defaults. */
  readonly args: ReadonlyMap<string, string>;
  readonly stages: readonly Stage[];
}

export function parseDockerfile(text: string): Dockerfile {
  const instructions = splitInstructions(text);
  const args = new Map<string, string>();
  const stages: { index: number; name: string | undefined; base: string; instructions: Instruction[] }[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const words = instruction.args.split(/\s+/).filter((w) => !w.startsWith('--'));
      const [image, as, name] = words;
      if (image === undefined || (as !== undefined && (as.toUpperCase() !== 'AS' || name === undefined))) {
        throw new Error(`line ${instruction.line}: cannot read "FROM ${instruction.args}"`);
      }
      stages.push({ index: stages.length, name, base: substitute(image, args), instructions: [] });
    } else if (stages.length === 0) {
      if (instruction.keyword !== 'ARG') {
        throw new Error(`line ${instruction.line}: ${instruction.keyword} before the first FROM`);
      }
      const [key = '', value = ''] = instruction.args.split('=', 2);
      args.set(key.trim(), value.trim());
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return { args, stages };
}

function splitInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending: { parts: string[]; line: number } | undefined;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    // Comments (and parser directives such as `# syntax=`) are dropped, also inside a continuation.
    if (line.startsWith('#')) return;
    if (line === '' && pending === undefined) return;
    const continues = line.endsWith('\\');
    const body = continues ? line.slice(0, -1).trim() : line;
    pending ??= { parts: [], line: i + 1 };
    if (body !== '') pending.parts.push(body);
    if (continues) return;
    const joined = pending.parts.join(' ');
    const match = /^(\S+)\s*(.*)$/.exec(joined);
    if (match !== null)
      out.push({ keyword: (match[1] ?? '').toUpperCase(), args: match[2] ?? '', line: pending.line });
    pending = undefined;
  });
  return out;
}

function substitute(value: string, args: ReadonlyMap<string, string>): string {
  return value.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced?: string, bare?: string) => {
    const name = braced ?? bare ?? '';
    return args.get(name) ?? whole;
  });
}

export interface CopyArgs {
  /** `--from=stage`, or undefined for the build context. */
  readonly from: string | undefined;
  readonly sources: readonly string[];
  readonly destination: string;
}

/** The flags, sources and destination of a COPY (or ADD). */
export function copyArgs(instruction: Instruction): CopyArgs {
  let rest = instruction.args.trim();
  const flags: string[] = [];
  for (let flag = /^(--\S+)\s*/.exec(rest); flag !== null; flag = /^(--\S+)\s*/.exec(rest)) {
    flags.push(flag[1] ?? '');
    rest = rest.slice(flag[0].length);
  }
  const paths = execForm(rest) ?? rest.split(/\s+/).filter((w) => w !== '');
  const destination = paths.pop();
  if (destination === undefined || paths.length === 0) {
    throw new Error(`line ${instruction.line}: ${instruction.keyword} needs sources and a destination`);
  }
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
  return { from, sources: paths, destination };
}

/** The words of an exec-form (JSON array) argument list, or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.trimStart().startsWith('[')) return undefined;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((w): w is string => typeof w === 'string')) {
    throw new Error(`not a JSON array of strings: ${args}`);
  }
  return parsed;
}
