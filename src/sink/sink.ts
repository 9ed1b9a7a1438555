// The sink contract.
//
// At-least-once and idempotent: the drainer may hand the same batch (or any prefix of the stream
// already applied) again after a crash, and applying it again must leave the same final state. A
// sink confirms a batch by returning normally; from then on the drainer may save its checkpoint.
// It must never report a change as applied that the target did not confirm: a change the target
// refuses is returned in `rejected` with the target's code and message, and everything else in the
// batch is applied. Errors it throws are classified by errors.ts (retryable → the page is retried
// with backoff; fatal → the replicator stops).
import type { Change, TableInfo } from '../core/change.js';
import { TargetKeyError, targetUnreachable } from '../core/errors.js';

export interface SinkTableBatch {
  table: TableInfo;
  truncate: boolean;
  /** the source time of the truncate, where captured (soft deletes) */
  truncatedAt?: string;
  /** changes whose final state is "gone"; row holds the key */
  deletes: Change[];
  /** changes whose final state is this row image */
  upserts: Change[];
  /**
   * an initial load's chunk into a table that held no row when the load began and that only the
   * load and the stream write since (the argument is in load/direct-load.ts): a row already there
   * may be kept instead of updated, since its key is sent again through the stream afterwards.
   * A sink may ignore it (an upsert is always right).
   */
  keepExisting?: boolean;
  /**
   * a table with a history (table-shape.ts): every change of the page, not coalesced, in stream
   * order; each becomes one row of the history table, identified by its id (a replay adds nothing)
   */
  history?: Change[];
  /** work the sink did ahead for this batch (Sink.stage); the sink checks it is still valid */
  staged?: unknown;
}

export interface Rejection {
  change: Change;
  /** the change's history row was refused (not its current state): retried as history */
  history?: boolean;
  code: string | undefined;
  message: string;
}

/**
 * SQL for the source database that builds a copied row's parameter row the way a sink would build
 * it from the row's image (Sink.copyRowSql).
 */
export interface CopyRowSql {
  /** a json expression: the parameter row, a JSON array of the values in TableInfo.columns order */
  row: string;
  /** a boolean expression: true for a row that must travel as its image instead (false or null: built) */
  referred: string;
  /**
   * A row is referred too when this text expression matches this pattern (a regular expression
   * without anchors, as an SQL literal). Kept apart because a regular expression costs most per
   * call: a chunk can match the texts of all its rows joined at once (whatever matches one text
   * matches the joined texts), and test row by row only when that matches.
   */
  matched?: { text: string; pattern: string; /** the stored bytes of the values behind `text` (pg_column_size): bounds the joined texts */ bytes: string };
}

/** A row of an initial load whose parameter row the source built with copyRowSql() for exactly `built.table`. */
export interface BuiltRow extends Change {
  readonly built: { table: TableInfo; args: string };
}

export function isBuiltRow(c: Change): c is BuiltRow {
  return (c as Partial<BuiltRow>).built !== undefined;
}

export interface ApplyResult {
  rejected: Rejection[];
}

/**
 * A write only the stream's current holder may make: a direct load's chunk (source/direct-load.ts),
 * which, landing after a newer change of its rows, would put an older state back. A holder's token
 * is a source xid taken when it starts (so a later holder's is larger).
 */
export interface Fence {
  /** the tool's schema name (the target keeps its fences under it) */
  schema: string;
  stream: string;
  token: string;
}

export interface Sink {
  readonly name: string;
  start(): Promise<void>;
  /** Makes sure the target table exists with every column of `table` (creates or adds columns). */
  prepare(table: TableInfo): Promise<void>;
  /**
   * Applies one page, table by table: truncate, then deletes, then upserts. With a fence (only a
   * sink that has raiseFence gets one), atomically with the page: FencedError when a newer token
   * was raised.
   */
  apply(batches: SinkTableBatch[], fence?: Fence): Promise<ApplyResult>;
  /**
   * Applies pages like apply(), for a caller that may begin a page while the page before it is
   * still being applied: the drainer does so only when no key is in both and neither has a
   * truncate, a history or a partial image, so the two commute, and it confirms them in order. The
   * pages given to one applier share one bound of requests in flight: the second page fills what
   * the first leaves free instead of adding to it. A sink whose pages are transactions, or whose
   * writes must keep the order of pages, does not offer it.
   */
  applier?(): (batches: SinkTableBatch[]) => Promise<ApplyResult>;
  /**
   * CPU work for batches that apply() will get later (building parameter rows), done while an
   * earlier page is still being written. No request, no write, no error for a value: whatever it
   * cannot do, apply() does.
   */
  stage?(batches: SinkTableBatch[]): void;
  /**
   * Makes `fence.token` the newest for its stream: from then on a write with an older token is
   * refused, and one already under way has landed when this returns. Only a target with
   * transactions can offer this (Postgres); without it the direct load makes up for a late chunk.
   */
  raiseFence?(fence: Fence): Promise<void>;
  /**
   * Whether the target table of `table` holds any row, counting every write confirmed before the
   * call. Only a sink that takes `keepExisting` offers it.
   */
  holdsRows?(table: TableInfo): Promise<boolean>;
  /**
   * For an initial load of `table`: the SQL that builds each row's parameter row in the source
   * (rows `alias`, under the output settings of core/pg-session.ts, in a UTF8 database), so that
   * rows need no image; such rows reach apply() as BuiltRow changes, the referred ones as images.
   * Null when some column has no such SQL. Only after prepare(table).
   */
  copyRowSql?(table: TableInfo, alias: string): Promise<CopyRowSql | null>;
  /** Throws when the target does not answer (readiness). */
  ping?(): Promise<void>;
  stop(): Promise<void>;
}

/** How often a target that could not be reached is asked whether it is back, while a loop backs off. */
export const PROBE_MS = 1_000;

/**
 * A back-off of `ms` after an error that says the target could not be reached (targetUnreachable),
 * cut short once the target answers: sleeps in slices of PROBE_MS (with `sleepFor`, which a loop may
 * end early itself) and asks the sink after each. Answers the milliseconds of back-off saved (0 when
 * it waited them all, or `stopped()` said so). Back-offs grow to 30 s while a target is away, and
 * without asking, a target back from a long outage waited up to that long for the next write while
 * the backlog grew (soak K: 16 outages in a 20-minute run).
 */
export async function backOffUntilAnswered(ms: number, sink: Pick<Sink, 'ping'>, sleepFor: (ms: number) => Promise<void>, stopped: () => boolean): Promise<number> {
  const until = Date.now() + ms;
  // One probe at a time: one the target does not answer (packets dropped) is waited for slice by
  // slice, never past the back-off, and not sent again meanwhile.
  let probe: Promise<boolean> | null = null;
  for (;;) {
    const left = until - Date.now();
    if (left <= 0 || stopped()) return 0;
    await sleepFor(Math.min(PROBE_MS, left));
    if (stopped() || Date.now() >= until || !sink.ping) return 0;
    probe ??= sink.ping().then(() => true, () => false);
    const answer = await settledWithin(probe, Math.min(PROBE_MS, until - Date.now()));
    if (answer === true) return Math.max(0, until - Date.now());
    if (answer === false) probe = null;
  }
}

/**
 * The back-off of a loop (the drainer, the copier) after `err`: `ms` in full, or, after a target that
 * could not be reached and a sink that can be asked, only until it answers (backOffUntilAnswered).
 * Answers the milliseconds saved.
 */
export async function backOffAfter(err: unknown, ms: number, sink: Pick<Sink, 'ping'>, sleepFor: (ms: number) => Promise<void>, stopped: () => boolean): Promise<number> {
  if (!sink.ping || !targetUnreachable(err) || ms <= PROBE_MS) {
    await sleepFor(ms);
    return 0;
  }
  return backOffUntilAnswered(ms, sink, sleepFor, stopped);
}

/** What `p` settles to within `ms`, or undefined. */
function settledWithin<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
    void p.then((v) => {
      clearTimeout(timer);
      resolve(v);
    });
  });
}

/** Whether two keys name the same columns (their order does not matter to a unique index). */
export function sameKey(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((k) => b.includes(k));
}

/**
 * The target table is keyed otherwise than the source's changes: applied, its deletes and updates
 * would match nothing. The drainer parks the table's changes with this message.
 */
export function keyMismatchError(target: string, t: TableInfo, targetKey: readonly string[], rename: string): TargetKeyError {
  const source = `${t.sourceSchema}.${t.sourceTable}`;
  return new TargetKeyError(
    `target table ${target} is keyed by (${targetKey.join(', ') || 'nothing'}) but the changes of ${source} are keyed by (${t.keyColumns.join(', ')}): ` +
      'a key column was renamed or the primary key changed in the source; nothing of the table is applied until the keys agree, its changes are parked. ' +
      `Give the target the same key (${rename}), then \`pg2crate dead-letters retry --all\` (README "Schema changes")`,
  );
}
