// The sink contract.
//
// At-least-once and idempotent: the drainer may hand the same batch (or any prefix of the stream
// already applied) again after a crash, and applying it again must leave the same final state. A
// sink confirms a batch by returning normally; from then on the drainer may save its checkpoint.
// It must never report a change as applied that the target did not confirm: a change the target
// refuses is returned in `rejected` with the target's code and message, and everything else in the
// batch is applied. Errors it throws are classified by errors.ts (retryable → the page is retried
// with backoff; fatal → the replicator stops).
import type { Change, TableInfo } from '../change.js';

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
   * a table with a history (table-shape.ts): every change of the page, not coalesced, in stream
   * order; each becomes one row of the history table, identified by its id (a replay adds nothing)
   */
  history?: Change[];
}

export interface Rejection {
  change: Change;
  /** the change's history row was refused (not its current state): retried as history */
  history?: boolean;
  code: string | undefined;
  message: string;
}

export interface ApplyResult {
  rejected: Rejection[];
}

export interface Sink {
  readonly name: string;
  start(): Promise<void>;
  /** Makes sure the target table exists with every column of `table` (creates or adds columns). */
  prepare(table: TableInfo): Promise<void>;
  /** Applies one page, table by table: truncate, then deletes, then upserts. */
  apply(batches: SinkTableBatch[]): Promise<ApplyResult>;
  /** Throws when the target does not answer (readiness). */
  ping?(): Promise<void>;
  stop(): Promise<void>;
}
