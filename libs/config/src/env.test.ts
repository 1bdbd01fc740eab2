import { describe, expect, it } from 'vitest';
import { ConfigError, describeSchema, env, parseEnv } from './env.ts';

const schema = {
  STEVEDORE_REDIS_URL: env.string('Redis URL', 'redis://127.0.0.1:6379'),
  STEVEDORE_CONCURRENCY: env.integer('jobs at once', 4, { min: 1, max: 64 }),
  STEVEDORE_BLOB_POLICY: env.oneOf('keep or drop', ['keep', 'drop'], 'keep'),
  STEVEDORE_S3_PATH_STYLE: env.boolean('path-style S3 URLs', false),
  STEVEDORE_API_TOKEN: env.secret('API bearer token', { required: true }),
  STEVEDORE_INSECURE: env.list('plain-HTTP registries'),
};

describe('parseEnv', () => {
  it('applies fallbacks and parses values', () => {
    const cfg = parseEnv(schema, {
      STEVEDORE_API_TOKEN: 't0ken',
      STEVEDORE_CONCURRENCY: '8',
      STEVEDORE_S3_PATH_STYLE: 'yes',
      STEVEDORE_INSECURE: 'a:5000, b:5000,',
    });
    expect(cfg).toEqual({
      STEVEDORE_REDIS_URL: 'redis://127.0.0.1:6379',
      STEVEDORE_CONCURRENCY: 8,
      STEVEDORE_BLOB_POLICY: 'keep',
      STEVEDORE_S3_PATH_STYLE: true,
      STEVEDORE_API_TOKEN: 't0ken',
      STEVEDORE_INSECURE: ['a:5000', 'b:5000'],
    });
    expect(Object.isFrozen(cfg)).toBe(true);
  });

  it('lists every bad variable at once, never quoting a secret', () => {
    const problems = (() => {
      try {
        parseEnv(schema, {
          STEVEDORE_CONCURRENCY: '0',
          STEVEDORE_BLOB_POLICY: 'maybe',
          STEVEDORE_S3_PATH_STYLE: 'sure',
        });
      } catch (err) {
        if (err instanceof ConfigError) return err.problems;
        throw err;
      }
      throw new Error('expected a ConfigError');
    })();
    expect(problems).toEqual([
      'STEVEDORE_CONCURRENCY must be between 1 and 64, got 0 (jobs at once)',
      'STEVEDORE_BLOB_POLICY must be one of keep, drop, got "maybe" (keep or drop)',
      'STEVEDORE_S3_PATH_STYLE must be true or false, got "sure" (path-style S3 URLs)',
      'STEVEDORE_API_TOKEN is required (API bearer token)',
    ]);
  });

  it.each([
    ['12x', 'must be a whole number, got "12x"'],
    ['1.5', 'must be a whole number, got "1.5"'],
    ['65', 'must be between 1 and 64, got 65'],
  ])('rejects integer %j', (raw, problem) => {
    expect(() => parseEnv(schema, { STEVEDORE_API_TOKEN: 'x', STEVEDORE_CONCURRENCY: raw })).toThrow(
      `STEVEDORE_CONCURRENCY ${problem} (jobs at once)`,
    );
  });

  it('describes the schema', () => {
    expect(describeSchema(schema).map((f) => [f.name, f.required, f.secret])).toEqual([
      ['STEVEDORE_REDIS_URL', false, false],
      ['STEVEDORE_CONCURRENCY', false, false],
      ['STEVEDORE_BLOB_POLICY', false, false],
      ['STEVEDORE_S3_PATH_STYLE', false, false],
      ['STEVEDORE_API_TOKEN', true, true],
      ['STEVEDORE_INSECURE', false, false],
    ]);
  });
});
