// Columns added with a default: every row that existed holds the default (or a volatile default's
// or a stored generated column's value) without a trigger firing or a WAL change per row, so the
// target would keep NULL there. When a table's columns are read again (the drainer does so whenever
// a row arrives with another set of columns), the columns are compared with the ones recorded in
// the registry (by attnum and name, so a column dropped and added again under the same name counts
// as new); a new column with a default schedules a fresh copy of the table, in the same transaction
// that records the new set. Nothing depends on the process having seen the table before.
import type pg from 'pg';
import { qualify } from '../core/identifiers.js';
import { scheduleBackfill } from './backfill-request.js';

/** Records the table's current columns; returns the new ones with a default after scheduling a copy (empty when none). */
export async function noteColumns(db: pg.ClientBase, schema: string, tableId: number): Promise<string[]> {
  await db.query('begin');
  try {
    const res = await db.query<{ first: boolean; added: string[] | null }>(
      `with t as (select id, relid, columns_seen from ${qualify(schema, 'tables')} where id = $1 for update),
            cur as (select a.attnum || ':' || a.attname as tag, a.attname::text as name, a.atthasdef or a.atthasmissing as filled
                      from t join pg_attribute a on a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped),
            upd as (update ${qualify(schema, 'tables')} s set columns_seen = (select coalesce(array_agg(tag order by tag), '{}') from cur) from t where s.id = t.id)
       select t.columns_seen is null as first,
              (select array_agg(cur.name) from cur where cur.filled and not cur.tag = any(coalesce(t.columns_seen, '{}'))) as added
         from t`,
      [tableId],
    );
    const row = res.rows[0];
    const added = row && !row.first ? row.added ?? [] : [];
    if (added.length > 0) await scheduleBackfill(db, schema, tableId, true);
    await db.query('commit');
    return added;
  } catch (err) {
    await db.query('rollback').catch(() => {});
    throw err;
  }
}
