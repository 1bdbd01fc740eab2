/**
 * Typed environment parsing. A schema maps variable names to field parsers; `parseEnv` reads
 * them all, collects every problem, and throws one {@link ConfigError} listing each bad variable
 * (so an operator fixes them in one go). Values of secret fields never appear in messages.
 */

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

export interface Field<T> {
  /** Parses a present value; returns an error description (no value quoted for secrets). */
  parse(raw: string): { ok: true; value: T } | { ok: false; problem: string };
  readonly fallback?: () => T;
  readonly required: boolean;
  readonly secret: boolean;
  readonly description: string;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; problem: string };

function field<T>(
  description: string,
  parse: (raw: string) => Parsed<T>,
  options: { fallback?: () => T; required?: boolean; secret?: boolean } = {},
): Field<T> {
  return {
    parse,
    description,
    required: options.required ?? options.fallback === undefined,
    secret: options.secret ?? false,
    ...(options.fallback === undefined ? {} : { fallback: options.fallback }),
  };
}

export const env = {
  string(description: string, fallback?: string): Field<string> {
    return field(
      description,
      (raw) => ({ ok: true, value: raw }),
      fallback === undefined ? {} : { fallback: () => fallback },
    );
  },
  optionalString(description: string): Field<string | undefined> {
    return field<string | undefined>(description, (raw) => ({ ok: true, value: raw }), {
      fallback: () => undefined,
    });
  },
  secret(description: string, options: { required?: boolean } = {}): Field<string | undefined> {
    return field<string | undefined>(description, (raw) => ({ ok: true, value: raw }), {
      secret: true,
      ...(options.required === true ? { required: true } : { fallback: () => undefined }),
    });
  },
  integer(description: string, fallback: number, range: { min?: number; max?: number } = {}): Field<number> {
    const min = range.min ?? Number.MIN_SAFE_INTEGER;
    const max = range.max ?? Number.MAX_SAFE_INTEGER;
    return field(
      description,
      (raw) => {
        const value = Number(raw);
        if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(value)) {
          return { ok: false, problem: `must be a whole number, got "${raw}"` };
        }
        if (value < min || value > max)
          return { ok: false, problem: `must be between ${min} and ${max}, got ${value}` };
        return { ok: true, value };
      },
      { fallback: () => fallback },
    );
  },
  boolean(description: string, fallback: boolean): Field<boolean> {
    return field(
      description,
      (raw) => {
        const v = raw.trim().toLowerCase();
        if (['1', 'true', 'yes', 'on'].includes(v)) return { ok: true, value: true };
        if (['0', 'false', 'no', 'off'].includes(v)) return { ok: true, value: false };
        return { ok: false, problem: `must be true or false, got "${raw}"` };
      },
      { fallback: () => fallback },
    );
  },
  oneOf<const T extends string>(description: string, values: readonly T[], fallback: T): Field<T> {
    return field(
      description,
      (raw) =>
        (values as readonly string[]).includes(raw)
          ? { ok: true, value: raw as T }
          : { ok: false, problem: `must be one of ${values.join(', ')}, got "${raw}"` },
      { fallback: () => fallback },
    );
  },
  list(description: string, fallback: readonly string[] = []): Field<readonly string[]> {
    return field(
      description,
      (raw) => ({
        ok: true,
        value: raw
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s.length > 0),
      }),
      { fallback: () => fallback },
    );
  },
} as const;

export type Schema = Readonly<Record<string, Field<unknown>>>;
export type ConfigOf<S extends Schema> = { readonly [K in keyof S]: S[K] extends Field<infer T> ? T : never };

/** Reads every variable of `schema` from `source`; throws one ConfigError listing all problems. */
export function parseEnv<S extends Schema>(schema: S, source: NodeJS.ProcessEnv = process.env): ConfigOf<S> {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    const raw = source[name];
    if (raw === undefined || raw === '') {
      if (spec.fallback !== undefined) out[name] = spec.fallback();
      else problems.push(`${name} is required (${spec.description})`);
      continue;
    }
    const parsed = spec.parse(raw);
    if (parsed.ok) out[name] = parsed.value;
    else problems.push(`${name} ${spec.secret ? 'is invalid' : parsed.problem} (${spec.description})`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze(out) as ConfigOf<S>;
}

/** The variables a schema knows, for docs and for checking deployment manifests. */
export function describeSchema(
  schema: Schema,
): { name: string; description: string; required: boolean; secret: boolean }[] {
  return Object.entries(schema).map(([name, f]) => ({
    name,
    description: f.description,
    required: f.required,
    secret: f.secret,
  }));
}
