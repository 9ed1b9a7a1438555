// One statement for many rows: bounded bulk requests, every row's answer checked, and the rows at
// fault isolated when a value fails the whole request.
//
// States of a row: pending → applied (CrateDB answered a row count, or "document missing" for a
// delete) | rejected (answered -2 with a code, or alone in a request that failed on a value) |
// transient (answered -2 because the cluster was busy or a shard away: the statement fails as
// retryable and the drainer replays the page). Nothing else counts as applied. Requests: rows are cut into chunks of at most maxRows rows and
// maxBytes bytes of JSON (one row larger than that goes alone). A chunk that fails as a whole with
// a value error (HTTP 400, code 4000/4003: a failed cast, a value out of range, a NULL key) is
// halved, and each half sent again, until the failing rows stand alone: k bad rows among n cost
// about 2·k·log2(n) extra requests and leave every good row applied. Any other whole-request error
// is thrown for the caller (retryable, schema or fatal: see errors.ts).
import type { Change } from '../../core/change.js';
import { classify } from '../../core/errors.js';
import type { Rejection } from '../sink.js';
import { CrateClient, CrateRequestError, crateExceptionName, type BulkRowResult } from './crate-client.js';
import { bulkBody, envelopeBytes, type RowBytes } from './param-rows.js';

/** A change and its parameter row, as bytes (param-rows.ts). */
export interface BulkItem extends RowBytes {
  change: Change;
}

/**
 * How a row's answer reads: an upsert that does nothing on conflict answers 0 for a key already
 * there, and a delete answers 0 or "document missing" (40411) for a key already gone. An update of
 * some columns (pgoutput's partial images) of a row that is not there answers "document missing"
 * too (CrateDB 6.4.3, by key, unrefreshed rows included). That is applied, as in the Postgres sink:
 * the row is gone because a later change in the stream deleted it (a page replayed after a crash),
 * or its initial load has not reached it yet, and the load's chunk copies the row's current state
 * after this change. Parking it would halt a `halt` policy on a harmless replay.
 * A soft delete ('mark') of a row that is not there has nothing to mark: applied, like a delete.
 */
export type BulkMode = 'upsert' | 'upsert-do-nothing' | 'delete' | 'update' | 'mark';

export interface BulkLimits {
  maxRows: number;
  maxBytes: number;
  /** requests of one statement in flight at once (their rows have distinct keys, so order does not matter) */
  parallel?: number;
  /**
   * requests in flight shared with other statements (a page's tables and statements); when given,
   * each request takes a slot, and `parallel` only bounds this statement's share
   */
  slots?: RequestSlots;
}

/**
 * A bound on requests in flight shared by the statements of one page, or of the pages of one
 * applier (CrateSink.applier): what CrateDB gets at once stays the same however many tables,
 * statements and pages are being written.
 */
export class RequestSlots {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(size: number) {
    this.#free = Math.max(1, size);
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await work();
    } finally {
      // the slot passes straight to the next waiter, so nobody overtakes it
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

export interface BulkOutcome {
  applied: number;
  rejected: Rejection[];
  requests: number;
  /** requests that failed as a whole on a value and were split */
  splits: number;
}

const DOCUMENT_MISSING = 40411;
/** rows per request when rows that failed without a reason are sent again */
const UNEXPLAINED_REQUEST_ROWS = 32;

/**
 * Splits rows into requests of at most maxRows rows and maxBytes bytes (the envelope included).
 * Requests cut by rows are of equal size (12,000 rows at most 5,000: three of 4,000, not 5,000,
 * 5,000 and 2,000), so that the last one of a statement does not run alone for long.
 */
export function chunkRows(stmt: string, items: readonly BulkItem[], limits: BulkLimits): BulkItem[][] {
  const envelope = envelopeBytes(stmt);
  const chunks: BulkItem[][] = [];
  const rows = Math.ceil(items.length / Math.ceil(items.length / limits.maxRows));
  let cur: BulkItem[] = [];
  let bytes = envelope;
  for (const item of items) {
    // the row and the comma before the next one
    const n = item.end - item.start + 1;
    if (cur.length > 0 && (cur.length >= rows || bytes + n > limits.maxBytes)) {
      chunks.push(cur);
      cur = [];
      bytes = envelope;
    }
    cur.push(item);
    bytes += n;
  }
  if (cur.length > 0) chunks.push(cur);
  return chunks;
}

/**
 * A 4000/4003 that is about the statement, not a value: splitting would only park every row.
 * CrateDB 6.4 answers a syntax error as ParsingException, but a failed cast as SQLParseException
 * ("Cannot cast value …"), so only the former is the statement's fault; a key column in SET is a
 * ColumnValidationException "… is not supported".
 */
function isStatementError(err: CrateRequestError): boolean {
  const name = crateExceptionName(err.crateMessage);
  if (name === 'ParsingException' || name === 'UnsupportedFeatureException') return true;
  return name === 'ColumnValidationException' && /is not supported/.test(err.crateMessage ?? '');
}

/**
 * A row that failed because the cluster was busy or a shard was away, not because of its value:
 * parking it would lose a good row, so the statement fails as retryable and the page is replayed.
 */
const TRANSIENT_ROW_CODES = new Set([4290, 5002, 5030, 5031, 5032, 5033]);
const TRANSIENT_ROW_ERRORS = new Set([
  'EsRejectedExecutionException', 'CircuitBreakingException', 'UnavailableShardsException', 'NoShardAvailableActionException',
  'NodeClosedException', 'NodeNotConnectedException', 'ConnectTransportException', 'ShardNotFoundException',
]);

function isTransient(e: NonNullable<BulkRowResult['error']>): boolean {
  return (e.code !== undefined && TRANSIENT_ROW_CODES.has(e.code)) || TRANSIENT_ROW_ERRORS.has(crateExceptionName(e.message) ?? '');
}

type Verdict = { ok: true } | { ok: false; transient: boolean; code: string | undefined; message: string };

/** one for every applied row: a request's thousands of rows need no object each */
const APPLIED: Verdict = Object.freeze({ ok: true });

function verdict(mode: BulkMode, r: BulkRowResult): Verdict {
  if (r.rowcount >= 1) return APPLIED;
  if (r.rowcount === 0 && mode !== 'upsert') return APPLIED;
  if (r.rowcount === -2 && r.error) {
    if ((mode === 'delete' || mode === 'mark' || mode === 'update') && r.error.code === DOCUMENT_MISSING) return APPLIED;
    // An upsert whose row was deleted between finding the conflict and updating it (a concurrent
    // delete of the same key, e.g. the drainer's beside an initial load's chunk): try again.
    if ((mode === 'upsert' || mode === 'upsert-do-nothing') && r.error.code === DOCUMENT_MISSING) {
      return { ok: false, transient: true, code: '5030', message: r.error.message };
    }
    if (isTransient(r.error)) return { ok: false, transient: true, code: r.error.code === undefined ? undefined : String(r.error.code), message: r.error.message };
    return { ok: false, transient: false, code: r.error.code === undefined ? undefined : String(r.error.code), message: r.error.message };
  }
  if (r.rowcount === -2) return { ok: false, transient: false, code: undefined, message: 'CrateDB reported the row as failed without a reason' };
  return { ok: false, transient: false, code: undefined, message: `CrateDB answered row count ${r.rowcount}: the row was not confirmed as written` };
}

export async function writeBulk(client: CrateClient, stmt: string, items: readonly BulkItem[], mode: BulkMode, limits: BulkLimits): Promise<BulkOutcome> {
  const out: BulkOutcome = { applied: 0, rejected: [], requests: 0, splits: 0 };
  const send = async (chunk: BulkItem[]): Promise<void> => {
    let results: BulkRowResult[];
    out.requests++;
    try {
      results = await client.sendBulk(bulkBody(stmt, chunk), chunk.length);
    } catch (err) {
      if (!(err instanceof CrateRequestError) || classify(err) !== 'data' || isStatementError(err)) throw err;
      if (chunk.length === 1) {
        out.rejected.push({ change: chunk[0].change, code: err.code, message: err.crateMessage ?? err.message });
        return;
      }
      out.splits++;
      const mid = chunk.length >> 1;
      await send(chunk.slice(0, mid));
      await send(chunk.slice(mid));
      return;
    }
    if (results.length !== chunk.length) {
      throw new CrateRequestError(`CrateDB answered ${results.length} results for a bulk request of ${chunk.length} rows`, undefined, 200, undefined);
    }
    const transient: Array<{ code: string | undefined; message: string }> = [];
    const unexplained: BulkItem[] = [];
    for (let i = 0; i < chunk.length; i++) {
      // CrateDB names the reason of only the first few dozen failed rows of a request (6.4.3: at
      // most 40); the others answer -2 alone. Those are sent again in smaller requests until each
      // has its reason: a delete of a key already gone is then applied, not parked.
      if (chunk.length > 1 && results[i].rowcount === -2 && !results[i].error) {
        unexplained.push(chunk[i]);
        continue;
      }
      const v = verdict(mode, results[i]);
      if (v.ok) out.applied++;
      else if (v.transient) transient.push(v);
      else out.rejected.push({ change: chunk[i].change, code: v.code, message: v.message });
    }
    if (unexplained.length > 0 && transient.length === 0) {
      const size = Math.max(1, Math.min(UNEXPLAINED_REQUEST_ROWS, chunk.length >> 1));
      for (let i = 0; i < unexplained.length; i += size) await send(unexplained.slice(i, i + size));
    }
    if (transient.length > 0) {
      const [first] = transient;
      const code = TRANSIENT_ROW_CODES.has(Number(first.code)) ? first.code : '5030';
      throw new CrateRequestError(`CrateDB could not write ${transient.length} row(s) for now (${crateExceptionName(first.message) ?? 'a transient error'})`, code, 200, first.message);
    }
  };
  const chunks = chunkRows(stmt, items, limits);
  let next = 0;
  let failure: { err: unknown } | null = null;
  // A failed request stops new ones; those in flight finish, then the first error is thrown.
  const worker = async () => {
    while (failure === null && next < chunks.length) {
      const chunk = chunks[next++];
      try {
        await (limits.slots ? limits.slots.run(() => send(chunk)) : send(chunk));
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limits.parallel ?? 1, chunks.length) }, worker));
  if (failure !== null) throw (failure as { err: unknown }).err;
  return out;
}
