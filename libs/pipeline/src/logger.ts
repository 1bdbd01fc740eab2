/**
 * Logs: pino JSON lines on stdout in services, human-readable on a terminal. Every line about a
 * job carries jobId, queue, and the reference or digest it concerns. Secrets are redacted by path.
 */
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Field paths whose values are replaced by "[redacted]" wherever they appear in a log object. */
const REDACT_PATHS = [
  'password',
  'token',
  'authorization',
  'secretAccessKey',
  '*.password',
  '*.token',
  '*.authorization',
  '*.Authorization',
  '*.secretAccessKey',
  'headers.authorization',
  'credentials',
  '*.credentials',
];

export interface LoggerOptions {
  readonly level?: string;
  readonly name: string;
  /** Pretty output; defaults to stdout being a terminal. */
  readonly pretty?: boolean;
  /** Write here instead of stdout (tests). */
  readonly destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const pretty = options.pretty ?? (process.stdout.isTTY && options.destination === undefined);
  const base = {
    name: options.name,
    level: options.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  return options.destination === undefined ? pino(base) : pino(base, options.destination);
}
