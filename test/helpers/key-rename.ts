// Helpers for the key-rename tests: a table's key and value rows, its column names, its dead
// letters, and a window in which the key watch cannot act on a table.
import type pg from 'pg';
import { deadLetters } from '../../src/commands/dead-letters.js';
import type { Runner } from '../../src/runner.js';

/** [key, v] of every row, by key; `key` names the key column as the table has it now. */
export const rows = async (db: pg.Pool, table: string, key: string) =>
  (await db.query(`select ${key} as k, v from ${table} order by 1`)).rows.map((r) => [r.k, r.v]);

export const columns = async (db: pg.Pool, table: string) =>
  (await db.query(`select column_name from information_schema.columns where table_schema = 'public' and table_name = $1 order by ordinal_position`, [table])).rows.map((r) => r.column_name);

export const lettersOf = async (runner: Runner, table: string) => (await deadLetters(runner)).filter((l) => l.table === table);

/** Runs `fn` with the registry row of `table` held: the watch cannot act before the application has met the window. */
export async function keyWatchHeld(src: pg.Pool, table: string, fn: () => Promise<void>): Promise<void> {
  const hold = await src.connect();
  try {
    await hold.query('begin');
    await hold.query(`select 1 from pg2crate.tables where source_table = $1 for update`, [table]);
    await fn();
  } finally {
    await hold.query('rollback');
    hold.release();
  }
}
