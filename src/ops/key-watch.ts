// The key watch: a captured table whose key column was renamed is captured again under the current
// names, so that the application's updates and deletes of it work again without anyone acting.
//
// The capture function names the key columns (capture/triggers.ts), and a plpgsql body is text:
// after `ALTER TABLE … RENAME COLUMN` of a key column every UPDATE and DELETE of the table fails in
// the application ("column o.id does not exist") until the function is made again; INSERTs go on.
// Naming the key any other way inside the capture costs every bulk statement or blocks other DDL,
// so the watch mends it instead, on each pass of the partition watch (every
// PG2CRATE_PARTITION_WATCH_MS while the replicator runs, and before every catch-up): a registered
// table whose key columns are not all columns of its relation (by oid) any more gets, in one
// transaction, the registry's key set to the current names and its capture functions replaced
// (capture-install.ts; no lock on the table); the key is renamed in an include list too
// (followInclude) and in the keys a new partition's guard recorded (renameRecordedKeys). A key
// taken from the primary key follows the primary key; a configured key follows its columns by
// attnum, as the registry last saw them (columns_seen, capture/column-watch.ts). A key that cannot
// be followed is logged once and left for `pg2crate tables add`.
//
// The watch also follows an excluded or hashed column renamed (README "Shaping the target"): the
// capture function refuses the table's inserts and updates while one is (capture/triggers.ts),
// since it leaves them out or hashes them by name; the pass finds the new name by the attnum the
// registry saw (RENAMED_SHAPE_COLUMNS, capture/column-watch.ts), renames it in the registry's
// lists (followLists) and replaces the functions in the same way, and logs it once.
//
// The target keeps its key under the old name: from then on the table's changes are parked (the
// sinks check the target's key), until the operator renames the target's key column the same way
// and retries them (README "Schema changes"). So each rename is logged as an error, once.
import type pg from 'pg';
import { displayName, qualify } from '../core/identifiers.js';
import type { Logger } from '../core/logger.js';
import type { TableShape } from '../core/table-shape.js';
import { withOutputSettings } from '../core/pg-session.js';
import { replaceCaptureFunctions } from '../capture/capture-install.js';
import { captureTargetOf, describeColumns, listTables, primaryKey, type RegisteredTable } from '../capture/registry.js';
import { checkPredicate } from '../capture/shape-check.js';
import { RENAMED_SHAPE_COLUMNS, renamedShapeColumns } from '../capture/column-watch.js';
import { TableError } from '../core/errors.js';

const LOCK_TIMEOUT_MS = 2000;

export interface KeyWatchOptions {
  schema: string;
  logger: Logger;
}

/** What was logged already per source pool: a key that cannot be followed is reported once, not on every pass. */
const reported = new WeakMap<pg.Pool, Set<string>>();

/** One pass: captures again every table whose key columns were renamed. Returns how many. */
export async function watchKeys(pool: pg.Pool, opts: KeyWatchOptions): Promise<number> {
  const t = qualify(opts.schema, 'tables');
  const stale = await pool.query<{ id: number }>(
    `select t.id from ${t} t
      where exists (select 1 from pg_class c where c.oid = t.relid)
        and (exists (select 1 from unnest(t.key_columns) k(name)
                      where not exists (select 1 from pg_attribute a where a.attrelid = t.relid and a.attname = k.name and a.attnum > 0 and not a.attisdropped))
             or exists (${RENAMED_SHAPE_COLUMNS}))
      order by t.id`,
  );
  let n = 0;
  for (const r of stale.rows) if (await recapture(pool, opts, r.id)) n++;
  return n;
}

/** Where each of the registry's key columns is now, by the attnum the registry saw it at (columns_seen); null for one not found. */
async function followByAttnum(db: pg.ClientBase, schema: string, table: RegisteredTable): Promise<(string | null)[]> {
  const res = await db.query<{ name: string | null }>(
    `select a.attname::text as name
       from ${qualify(schema, 'tables')} t cross join unnest(t.key_columns) with ordinality k(name, ord)
       left join lateral (select split_part(e, ':', 1)::int2 as attnum from unnest(t.columns_seen) e
                           where substr(e, strpos(e, ':') + 1) = k.name limit 1) s on true
       left join pg_attribute a on a.attrelid = t.relid and a.attnum = s.attnum and a.attnum > 0 and not a.attisdropped
      where t.id = $1
      order by k.ord`,
    [table.id],
  );
  return res.rows.map((r) => r.name);
}

/** The key columns renamed (same attnum, now a column of the new key): old name to new name. */
function renamedKeyColumns(table: RegisteredTable, followed: (string | null)[], key: string[]): Map<string, string> {
  const out = new Map<string, string>();
  table.keyColumns.forEach((old, i) => {
    const now = followed[i];
    if (now !== null && now !== undefined && now !== old && key.includes(now)) out.set(old, now);
  });
  return out;
}

/**
 * The keys a partition's guard recorded under the old names (partitions the partition watch has
 * not reached yet: partition-watch.ts) renamed to the new ones, in the transaction that changes the
 * registry's key: read under the new key they would have no value, and the watch would send a
 * delete of a null key instead of the row's state, so a row deleted through such a partition would
 * stay in the target. The guard writes nothing between the rename and this commit (its function
 * names the old columns).
 */
async function renameRecordedKeys(db: pg.ClientBase, schema: string, tableId: number, renamed: Map<string, string>): Promise<void> {
  await db.query(
    `update ${qualify(schema, 'partition_writes')} w
        set key = (select jsonb_object_agg(coalesce(m.now, e.key), e.value) from jsonb_each(w.key) e left join unnest($2::text[], $3::text[]) m(old, now) on m.old = e.key)
      where w.table_id = $1`,
    [tableId, [...renamed.keys()], [...renamed.values()]],
  );
}

/**
 * The shape's column lists under the new names. An include list names the key (shape-check.ts), by
 * name: left as it is, the renamed key column would no longer leave the source, and no change of
 * the table could ever be matched in the target, retried or repaired. An excluded or hashed column
 * renamed would leave the source raw under its new name, were the capture function not refusing
 * the table's writes until this pass. So the lists follow the rename; an excluded or hashed name
 * that is a column again (added after the rename) stays listed as well. The configuration file
 * still names the old column, and the next `migrate` says so.
 */
function followLists(shape: TableShape | null, renamed: Map<string, string>, has: (name: string) => boolean): TableShape | null {
  if (shape === null || renamed.size === 0) return shape;
  const keep = (list: string[]) => list.flatMap((c) => (renamed.has(c) ? (has(c) ? [c, renamed.get(c)!] : [renamed.get(c)!]) : [c]));
  return {
    ...shape,
    ...(shape.includeColumns ? { includeColumns: shape.includeColumns.map((c) => renamed.get(c) ?? c) } : {}),
    ...(shape.excludeColumns ? { excludeColumns: keep(shape.excludeColumns) } : {}),
    hashColumns: keep(shape.hashColumns),
  };
}

/**
 * The columns the registry saw (columns_seen) under the new names of the excluded and hashed
 * columns followed: a later rename of one of them is found by its attnum again. Only these: the
 * other entries tell the column watch which columns are new (capture/column-watch.ts).
 */
async function renameSeenColumns(db: pg.ClientBase, schema: string, tableId: number, renamed: Map<string, string>): Promise<void> {
  await db.query(
    `update ${qualify(schema, 'tables')} t
        set columns_seen = (select array_agg(coalesce(split_part(e, ':', 1) || ':' || m.now, e) order by ord)
                              from unnest(t.columns_seen) with ordinality x(e, ord)
                              left join unnest($2::text[], $3::text[]) m(old, now) on m.old = substr(e, strpos(e, ':') + 1))
      where t.id = $1`,
    [tableId, [...renamed.keys()], [...renamed.values()]],
  );
}

/** What one table's pass found: captured again under `key`, or a key that cannot be followed. */
type Outcome = { table: RegisteredTable; key: string[]; shapeRenamed: Map<string, string>; filter: string | null } | { table: RegisteredTable; gone: string[] } | null;

async function recapture(pool: pg.Pool, opts: KeyWatchOptions, id: number): Promise<boolean> {
  const s = opts.schema;
  // One transaction; with nothing to do it writes nothing, so its commit is a rollback.
  const outcome = await withOutputSettings(pool, async (client): Promise<Outcome> => {
    await client.query(`set local lock_timeout = ${LOCK_TIMEOUT_MS}`);
    // `tables add` of the same table waits for this, or this for it; either way one of them acts on what the other left.
    const locked = await client.query(`select 1 from ${qualify(s, 'tables')} where id = $1 for update`, [id]).catch((err: { code?: string }) => {
      if (err.code === '55P03') return null;
      throw err;
    });
    const table = locked && locked.rows.length > 0 ? (await listTables(client, s)).find((x) => x.id === id) : undefined;
    const columns = table ? await describeColumns(client, table.relid) : [];
    const gone = table ? table.keyColumns.filter((k) => !columns.some((c) => c.name === k)) : [];
    const shapeRenamed = table ? await renamedShapeColumns(client, s, id) : new Map<string, string>();
    if (!table || columns.length === 0 || (gone.length === 0 && shapeRenamed.size === 0)) return null;
    let key = table.keyColumns;
    let renamed = new Map<string, string>();
    if (gone.length > 0) {
      const followed = await followByAttnum(client, s, table);
      const now = table.keyOrigin === 'primary key' ? await primaryKey(client, table.relid) : followed.every((x): x is string => x !== null) ? followed : null;
      if (now === null || now.length === 0) return { table, gone };
      key = now;
      renamed = renamedKeyColumns(table, followed, key);
    }
    const shape = followLists(table.shape, new Map([...renamed, ...shapeRenamed]), (name) => columns.some((c) => c.name === name));
    await client.query(`update ${qualify(s, 'tables')} set key_columns = $2, shape = $3 where id = $1`, [id, key, shape === null ? null : JSON.stringify(shape)]);
    if (renamed.size > 0) await renameRecordedKeys(client, s, id, renamed);
    if (shapeRenamed.size > 0) await renameSeenColumns(client, s, id, shapeRenamed);
    await replaceCaptureFunctions(client, s, captureTargetOf({ ...table, keyColumns: key, shape }));
    // A row filter is SQL text, which no watch can rewrite: one that names the renamed column fails
    // every write of the table in the capture function, and the log must say so, not "work again".
    const filter = shape?.where === undefined ? null : await checkPredicate(client, shape.where, {
      schema: table.sourceSchema, table: table.sourceTable, name: displayName(table.sourceSchema, table.sourceTable),
    }).then(() => null, (err: unknown) => {
      if (err instanceof TableError) return err.message;
      throw err;
    });
    return { table, key, shapeRenamed, filter };
  }, true);
  if (outcome === null) return false;
  const { table } = outcome;
  const name = displayName(table.sourceSchema, table.sourceTable);
  if ('gone' in outcome) {
    const seen = reported.get(pool) ?? new Set<string>();
    reported.set(pool, seen);
    const what = `${id}:${table.keyColumns.join(',')}`;
    if (!seen.has(what)) {
      seen.add(what);
      opts.logger.error(
        { table: name, key: table.keyColumns, missing: outcome.gone },
        table.keyOrigin === 'primary key'
          ? 'the key columns of a captured table are gone and it has no primary key now: its updates and deletes fail in the source; add a primary key or name key columns, then `pg2crate tables add` it'
          : 'the configured key columns of a captured table are gone and cannot be followed: its updates and deletes fail in the source; name its key columns again (configuration or --key), then `pg2crate tables add` it',
      );
    }
    return false;
  }
  const filterBroken = 'but its row filter ("where") names a column it no longer has, so every write of the table fails in the source: give "where" the new name in the configuration, then `pg2crate tables add` the table. ';
  if (outcome.shapeRenamed.size > 0) {
    opts.logger.error(
      { table: name, renamed: Object.fromEntries(outcome.shapeRenamed), ...(outcome.filter ? { filter: outcome.filter } : {}) },
      'a column of a captured table that pg2crate leaves out or hashes (excludeColumns, hashColumns) was renamed (in trigger mode the table\'s inserts and updates ' +
        'failed since then, so that no value left the source under the new name): captured it again with the column left out or hashed under its new name, ' +
        (outcome.filter ? filterBroken : 'so its writes work again. ') +
        'Give the column its new name in the configuration file too: the next `migrate` refuses the old one',
    );
  }
  if (outcome.key === table.keyColumns) return true;
  opts.logger.error(
    { table: name, target: displayName(table.targetSchema, table.targetTable), oldKey: table.keyColumns, newKey: outcome.key, ...(outcome.filter ? { filter: outcome.filter } : {}) },
    'a key column of a captured table was renamed (or its primary key changed): captured it again under the new names, ' +
      (outcome.filter ? filterBroken : 'so its updates and deletes work again. ') +
      'The target table keeps the old key, and the table\'s changes are parked until it has the new one: rename the target\'s key column the same way, ' +
      'then `pg2crate dead-letters retry --all` (README "Schema changes")',
  );
  return true;
}
