/**
 * Logging: structured JSON (pino) for journald and files, readable lines on a terminal. Secrets are
 * never passed to the logger; the redaction list is a second line of defence for fields whose names
 * say they might hold one.
 */
import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';
import type PinoPretty from 'pino-pretty';

/** pino-pretty is loaded only for a terminal (journald and files get JSON; ~50 ms less at start). */
const loadPretty = (): typeof PinoPretty => createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;

export type { Logger };

export const REDACT = [
  'token',
  'secret',
  'proof.hmac',
  '*.token',
  '*.secret',
  'req.headers.authorization',
  'body.proof',
];

export interface LogOptions {
  name: string;
  level?: string;
  /** 'json' | 'pretty' | 'auto' (pretty when the destination is a terminal). */
  format?: 'json' | 'pretty' | 'auto';
  /** File descriptor: 1 (stdout) or 2 (stderr). */
  fd?: 1 | 2;
  /** A destination for tests (captures logs in memory). */
  stream?: DestinationStream;
}

export function createLogger(opts: LogOptions): Logger {
  const level = opts.level ?? process.env.MUSTER_LOG_LEVEL ?? 'info';
  const base = { name: opts.name, level, redact: { paths: REDACT, censor: '[redacted]' } };
  if (opts.stream) return pino(base, opts.stream);
  const fd = opts.fd ?? 1;
  const tty = fd === 1 ? process.stdout.isTTY : process.stderr.isTTY;
  const format = opts.format ?? (process.env.MUSTER_LOG_FORMAT as LogOptions['format']) ?? 'auto';
  if (format === 'pretty' || (format === 'auto' && tty)) {
    return pino(
      base,
      loadPretty()({ destination: fd, colorize: tty, ignore: 'pid,hostname', translateTime: 'SYS:HH:MM:ss.l', sync: true }),
    );
  }
  return pino(base, pino.destination({ dest: fd, sync: true }));
}

/** A logger that records entries in memory, for tests that assert on logs. */
export function memoryLogger(name = 'test'): { log: Logger; lines: () => Record<string, unknown>[]; text: () => string } {
  const chunks: string[] = [];
  const stream = { write: (s: string) => void chunks.push(s) } as DestinationStream;
  const log = pino({ name, level: 'debug', redact: { paths: REDACT, censor: '[redacted]' } }, stream);
  return {
    log,
    lines: () => chunks.map((c) => JSON.parse(c) as Record<string, unknown>),
    text: () => chunks.join(''),
  };
}
