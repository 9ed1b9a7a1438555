// The pino root logger. Each module takes a child with its component name. Never log row values or
// credentials: connection strings pass through `redactUrl` before they reach a log line.
import { pino, destination, stdTimeFunctions, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(level: string, stream?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'pg2crate' },
      timestamp: stdTimeFunctions.isoTime as () => string,
      redact: { paths: ['password', '*.password', 'connectionString', '*.connectionString'], censor: '[redacted]' },
    },
    stream ?? destination({ dest: 1, sync: false }),
  );
}

/** A connection URL with its password replaced, fit for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/(\/\/[^:/@]+:)[^@]*@/, '$1***@');
  }
}
