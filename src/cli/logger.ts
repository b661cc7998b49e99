import { pino, type Logger } from 'pino';

/**
 * Logs are pino JSON on standard error, so standard output stays free for data (--json).
 * On a terminal they are prettified, unless CASCADE_LOG_FORMAT=json.
 */
export function createCliLogger(level = process.env['CASCADE_LOG_LEVEL'] ?? 'info'): Logger {
  const pretty = process.stderr.isTTY && process.env['CASCADE_LOG_FORMAT'] !== 'json';
  if (pretty) {
    return pino({
      level,
      transport: { target: 'pino-pretty', options: { destination: 2, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' } },
    });
  }
  return pino({ level }, pino.destination(2));
}
