// The two facts the drainer's id bounds rest on, in one place, because each was once got wrong and
// lost committed rows.
//
// 1. The outbox sequence is read with pg_sequence_last_value(), never as a table. `select last_value
//    from seq` reads the shared page without its buffer lock; every 32nd nextval() WAL-logs ahead and
//    for that moment the page holds the current value + up to 31, which such a read can see. A lower
//    bound read that high skips the events of the ids in between. The function reads under the lock.
//    (For an upper bound a high read is harmless; the same read serves both, so there is one way.)
// 2. An outbox writer has its transaction id before it draws its first outbox id. A window mark says
//    "every transaction whose xid came after mine draws ids above my sequence read"; a writer that
//    draws an id (the `id` default) before it has an xid (the `xid` default, evaluated after it)
//    breaks that promise. The capture triggers run after a row write, so they have an xid; every
//    other writer whose first write may be the outbox insert itself (the initial load's truncate,
//    the fix-up, repair and dead-letter retries) runs `TAKE_XID` first.
import type pg from 'pg';
import { qualify, quoteLiteral } from '../core/identifiers.js';

/**
 * SQL for the last id the outbox sequence handed out (0 before the first), read under the
 * sequence's buffer lock. The sequence starts at 1 (migrations/000001_outbox.sql).
 */
export function outboxSequenceSql(schema: string): string {
  return `coalesce(pg_sequence_last_value(${quoteLiteral(qualify(schema, 'outbox_id_seq'))}::regclass), 0)`;
}

export async function readOutboxSequence(db: pg.ClientBase | pg.Pool, schema: string): Promise<string> {
  const res = await db.query<{ v: string }>(`select ${outboxSequenceSql(schema)}::text as v`);
  return res.rows[0].v;
}

/** Run first in a transaction that may write into the outbox before it writes anything else. */
export const TAKE_XID = 'select pg_current_xact_id()';
