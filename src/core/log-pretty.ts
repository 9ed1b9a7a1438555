// The readable form of a pino JSON line, for a person at a terminal: one line of time, level,
// component, message and the fields as key=value (logfmt-like), and under an error the stack of
// the error logged. Pure: no I/O.
//
//   20:15:21.123 INFO  drainer: page applied events=5000 table=public.items

const LEVELS: Record<number, { name: string; color: number }> = {
  10: { name: 'TRACE', color: 90 }, 20: { name: 'DEBUG', color: 90 }, 30: { name: 'INFO', color: 32 },
  40: { name: 'WARN', color: 33 }, 50: { name: 'ERROR', color: 31 }, 60: { name: 'FATAL', color: 31 },
};

/** Shown in the line's head, or the same in every line. */
const HEAD = new Set(['level', 'time', 'msg', 'component', 'service', 'pid', 'hostname']);

function value(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v);
  if (v !== null && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function clock(time: unknown): string {
  const d = new Date(typeof time === 'string' || typeof time === 'number' ? time : Date.now());
  if (Number.isNaN(d.getTime())) return String(time);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

interface LoggedError {
  type?: string;
  message?: string;
  stack?: string;
  code?: unknown;
}

/** `json`: one line pino wrote (with its newline); returns the readable line(s), newline-terminated. */
export function prettyLine(json: string, color: boolean): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const level = LEVELS[o.level as number] ?? { name: String(o.level), color: 0 };
  const name = level.name.padEnd(5);
  const parts = [clock(o.time), color ? `\x1b[${level.color}m${name}\x1b[0m` : name];
  const msg = typeof o.msg === 'string' ? o.msg : '';
  parts.push(typeof o.component === 'string' ? `${o.component}: ${msg}` : msg);
  let stack: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    if (HEAD.has(k) || v === undefined) continue;
    if (k === 'err' && v !== null && typeof v === 'object') {
      const e = v as LoggedError;
      parts.push(`err=${value(e.message ?? e.type ?? '')}`);
      if (e.code !== undefined) parts.push(`code=${value(e.code)}`);
      // The stack helps with what was not expected; a retried connection loss says enough in its message.
      if ((o.level as number) >= 50 && typeof e.stack === 'string') stack = e.stack.split('\n').slice(1).map((l) => `    ${l.trim()}`);
      continue;
    }
    parts.push(`${k}=${value(v)}`);
  }
  return [parts.join(' '), ...stack].join('\n') + '\n';
}
