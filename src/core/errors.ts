// Error classes and the one table that says what is retryable and what is fatal.
// Callers wrap with { cause } and never flatten an error into a string.

/** A setting is missing or malformed. The message names the setting and the expected form. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  constructor(readonly setting: string, message: string) {
    super(`${setting}: ${message}`);
  }
}

/** A captured table cannot be replicated as it is (no key, unknown table, illegal name …). */
export class TableError extends Error {
  override name = 'TableError';
}

/**
 * The target table is keyed otherwise than the source's changes (a key column renamed, the primary
 * key changed): fatal for the changes at hand (parked), while an initial load waits for the operator.
 */
export class TargetKeyError extends TableError {
  override name = 'TargetKeyError';
}

/** The tool's schema in the database is missing, behind or ahead of this build. */
export class SchemaVersionError extends Error {
  override name = 'SchemaVersionError';
}

/** The target refused the request as a whole for a reason that is not about one row's value. */
export class TargetError extends Error {
  override name = 'TargetError';
  constructor(message: string, readonly code: string | undefined, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The stream cannot go on without an operator: a change the target refuses and nothing may skip. */
export class HaltError extends Error {
  override name = 'HaltError';
}

/** Another instance holds the stream; raised where waiting is not wanted (catch-up without --wait). */
export class StreamBusyError extends Error {
  override name = 'StreamBusyError';
}

/** The target refused a fenced write (sink.ts): a newer holder of the stream took over. */
export class FencedError extends Error {
  override name = 'FencedError';
}

export type ErrorKind =
  /** the network, a restart, an overloaded server: try again later with backoff */
  | 'retryable'
  /** the value of one row: isolate it and park it, the rest goes on */
  | 'data'
  /** the target's shape differs from what we believe: re-read it once */
  | 'schema'
  /** nothing a retry can change */
  | 'fatal';

const NODE_RETRYABLE = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND',
  'EAI_AGAIN', 'ECONNABORTED', 'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CLOSED',
]);

/**
 * SQLSTATE classes and codes. Class 08 connection, 40 serialization/deadlock, 53 resources, 57P
 * operator intervention (admin shutdown, crash recovery), 55P03 lock not available: retryable.
 * Class 22 data exception and 23 integrity violation: a row's value. 42703/42P01 undefined
 * column/table: the target's shape.
 */
function classifySqlState(code: string): ErrorKind {
  if (code.startsWith('08') || code.startsWith('40') || code.startsWith('53') || code.startsWith('57P')) return 'retryable';
  if (code === '55P03' || code === '55006' || code === '58030') return 'retryable';
  if (code.startsWith('22') || code.startsWith('23')) return 'data';
  if (code === '42703' || code === '42P01' || code === '3F000') return 'schema';
  return 'fatal';
}

/**
 * CrateDB error codes (HTTP status × 1000 + detail). 4000 a value (cast, range, NULL key) or
 * syntax; 4041/4043/4045 unknown table/column/schema; 5000/5030/5002 server-side trouble.
 */
function classifyCrateCode(code: number): ErrorKind {
  if (code === 4000 || code === 4003 || code === 4091) return 'data';
  if (code === 4041 || code === 4043 || code === 4045 || code === 4046) return 'schema';
  if (code >= 5000 || code === 4290 || code === 4080) return 'retryable';
  return 'fatal';
}

/**
 * The target could not be reached, as opposed to refusing or failing a request: a connection refused,
 * reset or timed out on its way (the codes of NODE_RETRYABLE), or a CrateDB node that is up but not
 * in a cluster yet (5030). Such a target is back as soon as it answers at all, which is worth asking
 * while backing off; a target that answers with an error (overloaded, say) gets its back-off.
 */
export function targetUnreachable(err: unknown): boolean {
  return err instanceof TargetError && err.code !== undefined && (NODE_RETRYABLE.has(err.code) || err.code === '5030');
}

export function classify(err: unknown): ErrorKind {
  if (err instanceof ConfigError || err instanceof TableError || err instanceof SchemaVersionError) return 'fatal';
  // The copier steps back; it starts again only once it holds the stream (source/backfill.ts).
  if (err instanceof FencedError) return 'retryable';
  if (err instanceof TargetError && err.code !== undefined) {
    // CrateDB codes have four digits; five characters are a SQLSTATE even when all are digits (23505).
    if (/^\d{4}$/.test(err.code)) return classifyCrateCode(Number(err.code));
    // before the SQLSTATE test: EPIPE has five capitals and would read as one
    if (NODE_RETRYABLE.has(err.code)) return 'retryable';
    if (/^[0-9A-Z]{5}$/.test(err.code)) return classifySqlState(err.code);
  }
  const e = err as { code?: unknown; cause?: unknown; message?: unknown } | null;
  if (e && typeof e.code === 'string') {
    if (NODE_RETRYABLE.has(e.code)) return 'retryable';
    if (/^[0-9A-Z]{5}$/.test(e.code)) return classifySqlState(e.code);
  }
  if (e && typeof e.message === 'string') {
    // node-postgres reports a dropped socket with plain messages and no code.
    if (/Connection terminated|connection timeout|Client has encountered a connection error|socket hang up|terminating connection/i.test(e.message)) {
      return 'retryable';
    }
  }
  if (e && e.cause !== undefined && e.cause !== err) return classify(e.cause);
  if (err instanceof TypeError && /fetch failed/.test(String(e?.message))) return 'retryable';
  return 'fatal';
}

/** Exponential backoff with full jitter, in milliseconds. */
export function backoffDelay(attempt: number, baseMs = 200, maxMs = 30_000): number {
  const cap = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(cap / 2 + Math.random() * (cap / 2));
}

/** The short description of an error for logs: its class, code and message, never values of rows. */
export function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return code ? `${err.message} (${String(code)})` : err.message;
  }
  return String(err);
}
