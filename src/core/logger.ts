// The pino root logger. Each module takes one child with its component name from the logger it is
// given, which is the root (or a child without a component): a child of a child with a component
// would write `component` twice in one line, so a module passes down the logger it received, never
// its own. Never log row values or credentials: connection strings pass through `redactUrl` before
// they reach a log line.
//
// Two forms of the same lines: JSON (one object a line, for collectors and files) and readable text
// for a person at a terminal (log-pretty.ts). `start` logs to stdout (its log is its output); the
// one-shot commands log to stderr, so that their result on stdout is never mixed with log lines.
import { pino, destination, stdTimeFunctions, type Logger, type DestinationStream } from 'pino';
import { prettyLine } from './log-pretty.js';

export type { Logger };

export type LogFormat = 'json' | 'pretty';

/** LOG_FORMAT when it is set; otherwise readable text on a terminal and JSON everywhere else (pipes, files, collectors). */
export function chooseLogFormat(setting: LogFormat | undefined, isTTY: boolean): LogFormat {
  return setting ?? (isTTY ? 'pretty' : 'json');
}

export interface LogOutput {
  /** 1 stdout, 2 stderr */
  fd: 1 | 2;
  format: LogFormat;
  /** pretty only: colour the level (a terminal without NO_COLOR) */
  color?: boolean;
  /**
   * pretty only: the stream is a terminal. Each line then first clears the terminal's current
   * line, so that it replaces a progress display (backfill's) instead of running into it; the
   * display is drawn again below on its next update.
   */
  terminal?: boolean;
}

/** Where log lines go, in which form. */
export function logDestination(out: LogOutput): DestinationStream {
  if (out.format === 'json') return destination({ dest: out.fd, sync: false });
  const sink = destination({ dest: out.fd, sync: true });
  return {
    write: (line: string) => { sink.write(`${out.terminal ? '\r\x1b[K' : ''}${prettyLine(line, out.color === true)}`); },
    flush: (cb: (err?: Error) => void) => sink.flush(cb),
  } as DestinationStream;
}

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
