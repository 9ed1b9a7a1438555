// Asking for an initial load: a row in the backfills table, which the loader (load/backfill.ts) picks
// up. Capture asks when a table is added, a column with a default appears, or a partition is attached
// with rows. For a table that already has a load row, asking again changes nothing unless `restart`
// says start over.
import type pg from 'pg';
import { qualify } from '../core/identifiers.js';

export async function scheduleBackfill(db: pg.ClientBase | pg.Pool, schema: string, tableId: number, restart: boolean): Promise<void> {
  await db.query(
    `insert into ${qualify(schema, 'backfills')} (table_id) values ($1)
     on conflict (table_id) do update set status = 'pending', last_key = null, upper_key = null, rows_copied = 0, chunks = 0, started_at = null, finished_at = null,
                                         snapshot = null, copy_done = false, updated_at = now()
     where $2`,
    [tableId, restart],
  );
}
