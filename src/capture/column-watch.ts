// Columns added with a default: every row that existed holds the default (or a volatile default's
// or a stored generated column's value) without a trigger firing or a WAL change per row, so the
// target would keep NULL there. When a table's columns are read again (the drainer does so whenever
// a row arrives with another set of columns), the columns are compared with the ones recorded in
// the registry (by attnum and name, so a column dropped and added again under the same name counts
// as new); a new column with a default schedules a fresh copy of the table, in the same transaction
// that records the new set. Nothing depends on the process having seen the table before.
// While an excluded or hashed column, or a configured key column, is renamed and the watch has not
// followed it yet (RENAMED_SHAPE_COLUMNS, RENAMED_KEY_COLUMNS below), the set is not recorded: the
// watch finds the column's new name by the attnum recorded here, and a drainer describing the table
// first must not take that away.
import type pg from 'pg';
import { qualify } from '../core/identifiers.js';
import { scheduleBackfill } from './backfill-request.js';

/** Records the table's current columns; returns the new ones with a default after scheduling a copy (empty when none). */
export async function noteColumns(db: pg.ClientBase, schema: string, tableId: number): Promise<string[]> {
  await db.query('begin');
  try {
    const res = await db.query<{ first: boolean; added: string[] | null }>(
      `with t as (select id, relid, columns_seen, shape, key_columns, key_origin from ${qualify(schema, 'tables')} where id = $1 for update),
            cur as (select a.attnum || ':' || a.attname as tag, a.attname::text as name, a.atthasdef or a.atthasmissing as filled
                      from t join pg_attribute a on a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped),
            upd as (update ${qualify(schema, 'tables')} s set columns_seen = (select coalesce(array_agg(tag order by tag), '{}') from cur) from t
                     where s.id = t.id and not exists (${RENAMED_SHAPE_COLUMNS}) and not exists (${RENAMED_KEY_COLUMNS}))
       select t.columns_seen is null or exists (${RENAMED_SHAPE_COLUMNS}) or exists (${RENAMED_KEY_COLUMNS}) as first,
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

/**
 * A query over registry row `t` (in scope): of the column names `names` gives (a FROM item `c(name)`),
 * those whose attnum, as the registry last saw it (columns_seen), is now a column under another
 * name, as (old, now). A name the record does not hold, or whose column is dropped, is not listed.
 */
function renamedSinceSeen(names: string): string {
  return `
  select c.name as old, a.attname::text as now
    from ${names}
    cross join lateral (select split_part(e, ':', 1)::int2 as attnum from unnest(t.columns_seen) e where substr(e, strpos(e, ':') + 1) = c.name limit 1) s
    join pg_attribute a on a.attrelid = t.relid and a.attnum = s.attnum and not a.attisdropped and a.attname::text <> c.name`;
}

/**
 * A query over registry row `t` (in scope): its excluded and hashed columns whose attnum, as the
 * registry last saw it (columns_seen), is now a column under another name, as (old, now). Left out
 * or hashed by name, such a column would leave the source raw under its new name: the capture
 * function refuses the table's inserts and updates meanwhile (triggers.ts), the key watch follows
 * the rename (ops/key-watch.ts), and a publication leaves it out (publication-shape.ts). A column
 * dropped is not listed: it leaks nothing, and nothing follows it.
 */
export const RENAMED_SHAPE_COLUMNS = renamedSinceSeen(
  `jsonb_array_elements_text(coalesce(t.shape->'excludeColumns', '[]') || coalesce(t.shape->'hashColumns', '[]')) c(name)`,
);

/** RENAMED_SHAPE_COLUMNS of one registered table: old name to current name. */
export async function renamedShapeColumns(db: pg.ClientBase | pg.Pool, schema: string, tableId: number): Promise<Map<string, string>> {
  const res = await db.query<{ old: string; now: string }>(
    `select r.old, r.now from ${qualify(schema, 'tables')} t cross join lateral (${RENAMED_SHAPE_COLUMNS}) r where t.id = $1`,
    [tableId],
  );
  return new Map(res.rows.map((r) => [r.old, r.now]));
}

/**
 * A query over registry row `t` (in scope, with key_columns and key_origin): its configured key
 * columns whose attnum, as recorded, is now a column under another name, as (old, now). The key
 * watch follows each by that attnum (ops/key-watch.ts); had a drainer that described the table first
 * recorded the new name, the watch could not, and the table's updates and deletes would fail in the
 * application until `tables add`. A primary key is followed through the catalog and needs nothing
 * recorded, and a column dropped is not listed (the watch cannot follow it either way).
 */
export const RENAMED_KEY_COLUMNS = renamedSinceSeen(`unnest(case when t.key_origin = 'config' then t.key_columns else '{}'::text[] end) c(name)`);
