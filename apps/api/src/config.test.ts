import { describe, expect, it } from 'vitest';
import { ConfigError, describeSchema } from '@stevedore/config';
import { API_ENV, loadConfig } from './config.ts';

const TOKEN = 'a-token-of-24-characters';

describe('loadConfig', () => {
  it('fills in the defaults; the board password defaults to the token', () => {
    expect(loadConfig({ STEVEDORE_API_TOKEN: TOKEN })).toEqual({
      STEVEDORE_API_PORT: 8080,
      STEVEDORE_API_HOST: '0.0.0.0',
      STEVEDORE_API_TOKEN: TOKEN,
      STEVEDORE_BOARD_USER: 'admin',
      STEVEDORE_BOARD_PASSWORD: TOKEN,
      STEVEDORE_REDIS_URL: 'redis://127.0.0.1:6379',
      STEVEDORE_STORE: '.stevedore/store',
      STEVEDORE_S3_ENDPOINT: undefined,
      STEVEDORE_S3_REGION: 'us-east-1',
      STEVEDORE_S3_FORCE_PATH_STYLE: false,
      STEVEDORE_S3_CHECKSUM: 'when_supported',
      STEVEDORE_GC_PACE_ABOVE_MIB: 448,
      STEVEDORE_LOG_LEVEL: 'info',
    });
  });

  it('reads every variable', () => {
    const config = loadConfig({
      STEVEDORE_API_PORT: '9000',
      STEVEDORE_API_HOST: '127.0.0.1',
      STEVEDORE_API_TOKEN: TOKEN,
      STEVEDORE_BOARD_USER: 'ops',
      STEVEDORE_BOARD_PASSWORD: 'a-board-password-123',
      STEVEDORE_REDIS_URL: 'redis://redis:6379/2',
      STEVEDORE_STORE: 's3://bucket/prefix',
      STEVEDORE_S3_ENDPOINT: 'http://s3:9000',
      STEVEDORE_S3_REGION: 'eu-west-1',
      STEVEDORE_S3_FORCE_PATH_STYLE: 'true',
      STEVEDORE_S3_CHECKSUM: 'when_required',
      STEVEDORE_GC_PACE_ABOVE_MIB: '0',
      STEVEDORE_LOG_LEVEL: 'debug',
    });
    expect(config).toMatchObject({
      STEVEDORE_GC_PACE_ABOVE_MIB: 0,
      STEVEDORE_API_PORT: 9000,
      STEVEDORE_API_HOST: '127.0.0.1',
      STEVEDORE_BOARD_USER: 'ops',
      STEVEDORE_BOARD_PASSWORD: 'a-board-password-123',
      STEVEDORE_S3_FORCE_PATH_STYLE: true,
      STEVEDORE_S3_CHECKSUM: 'when_required',
    });
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('lists every bad variable at once, never quoting a secret', () => {
    let error: unknown;
    try {
      loadConfig({
        STEVEDORE_API_PORT: '80000',
        STEVEDORE_BOARD_PASSWORD: 'short-secret',
        STEVEDORE_LOG_LEVEL: 'loud',
      });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'STEVEDORE_API_PORT must be between 0 and 65535, got 80000 (port of the HTTP API (0: any free port))',
      'STEVEDORE_API_TOKEN is required (bearer token API clients send as "Authorization: Bearer <token>" (at least 16 characters))',
      'STEVEDORE_BOARD_PASSWORD is invalid (Bull Board password for HTTP Basic (at least 16 characters; default: the API token))',
      'STEVEDORE_LOG_LEVEL must be one of trace, debug, info, warn, error, fatal, got "loud" (log level)',
    ]);
    expect((error as Error).message).not.toContain('short-secret');
  });

  it('refuses a short token', () => {
    expect(() => loadConfig({ STEVEDORE_API_TOKEN: 'x'.repeat(15) })).toThrow(
      new ConfigError([
        'STEVEDORE_API_TOKEN is invalid (bearer token API clients send as "Authorization: Bearer <token>" (at least 16 characters))',
      ]),
    );
  });

  it('declares the secrets as secrets (infra checks read the schema)', () => {
    expect(
      describeSchema(API_ENV)
        .filter((v) => v.secret)
        .map((v) => [v.name, v.required]),
    ).toEqual([
      ['STEVEDORE_API_TOKEN', true],
      ['STEVEDORE_BOARD_PASSWORD', false],
    ]);
  });
});
