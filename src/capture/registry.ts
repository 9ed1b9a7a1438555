// The registry of captured tables and the source catalog: resolving a configured table, checking
// its key, installing or dropping its triggers, and describing its columns for the sinks.
import type pg from 'pg';
import type { ColumnInfo, SourceCatalog, TableInfo } from '../core/change.js';
import type { TableSpec } from '../core/config.js';
import { TableError } from '../core/errors.js';
import { displayName, qualify } from '../core/identifiers.js';
import { resolveShape, type TableShape } from '../core/table-shape.js';
import { scheduleBackfill } from './backfill-request.js';
import { checkShape, shapedColumns } from './shape-check.js';
import type { CaptureTarget } from './triggers.js';
import { installCapture, removeCapture } from './capture-install.js';
import { renamedShapeColumns } from './column-watch.js';

export interface RegisteredTable {
  id: number;
  relid: number;
  sourceSchema: string;
  sourceTable: string;
  keyColumns: string[];
  keyOrigin: 'primary key' | 'config';
  targetSchema: string;
  targetTable: string;
  /** how the target is shaped (table-shape.ts); null: a plain copy */
  shape: TableShape | null;
}

type Queryable = pg.ClientBase | pg.Pool;

const COLUMNS_SQL = `
with cols as (
  select a.attnum, a.attname, a.attnotnull, a.attndims,
         format_type(a.atttypid, a.atttypmod) as type,
         case when t.typtype = 'd' then t.typbasetype else a.atttypid end as tid,
         case when t.typtype = 'd' then t.typtypmod else a.atttypmod end as tmod
  from pg_attribute a join pg_type t on t.oid = a.atttypid
  where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped
), arr as (
  select c.*, (t.typcategory = 'A' and t.typelem <> 0) as is_array,
         case when t.typcategory = 'A' and t.typelem <> 0 then t.typelem else c.tid end as eid
  from cols c join pg_type t on t.oid = c.tid
)
select arr.attname as name, arr.type, arr.attnotnull as not_null,
       case when arr.is_array then greatest(arr.attndims, 1) else 0 end as dims,
       case when bn.nspname = 'pg_catalog' then b.typname else 'other' end as base_type,
       format_type(b.oid, case when et.typtype = 'd' then et.typtypmod else arr.tmod end) as base_formatted,
       b.typtype
from arr
join pg_type et on et.oid = arr.eid
join pg_type b on b.oid = case when et.typtype = 'd' then et.typbasetype else et.oid end
join pg_namespace bn on bn.oid = b.typnamespace
order by arr.attnum`;

export async function describeColumns(db: Queryable, relid: number): Promise<ColumnInfo[]> {
  const res = await db.query<{ name: string; type: string; not_null: boolean; dims: number; base_type: string; base_formatted: string; typtype: string }>(
    COLUMNS_SQL,
    [relid],
  );
  return res.rows.map((r) => ({
    name: r.name,
    type: r.type,
    baseType: r.base_type,
    baseFormatted: r.base_formatted,
    dims: Number(r.dims),
    typtype: r.typtype,
    notNull: r.not_null,
  }));
}

/** The primary key's columns in index order; empty without one. */
export async function primaryKey(db: Queryable, relid: number): Promise<string[]> {
  const res = await db.query<{ name: string }>(
    `select a.attname as name
       from pg_index i
       cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
       join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
      where i.indrelid = $1 and i.indisprimary
      order by k.ord`,
    [relid],
  );
  return res.rows.map((r) => r.name);
}

/** Finds a configured table and its key, or says exactly what is wrong and how to fix it. */
export async function resolveTable(db: Queryable, spec: TableSpec): Promise<{ relid: number; keyColumns: string[]; keyOrigin: 'primary key' | 'config' }> {
  const name = displayName(spec.schema, spec.table);
  const res = await db.query<{ oid: number; relkind: string }>(
    `select c.oid::int8 as oid, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2`,
    [spec.schema, spec.table],
  );
  if (res.rows.length === 0) throw new TableError(`table ${name} does not exist in the source database; check the name (case and quotes matter: "My Table")`);
  const { relkind } = res.rows[0];
  const relid = Number(res.rows[0].oid);
  if (relkind !== 'r' && relkind !== 'p') throw new TableError(`${name} is not a table (relkind ${relkind}); only tables can be captured`);
  const columns = await describeColumns(db, relid);
  if (spec.keyColumns) {
    const missing = spec.keyColumns.filter((k) => !columns.some((c) => c.name === k));
    if (missing.length > 0) throw new TableError(`key columns configured for ${name} do not exist: ${missing.join(', ')}`);
    return { relid, keyColumns: spec.keyColumns, keyOrigin: 'config' };
  }
  const pk = await primaryKey(db, relid);
  if (pk.length === 0) {
    throw new TableError(
      `table ${name} has no primary key, so its rows cannot be matched in the target; ` +
        `add one (ALTER TABLE ${qualify(spec.schema, spec.table)} ADD PRIMARY KEY (…)) ` +
        `or name its key columns: \`pg2crate tables add ${spec.schema}.${spec.table} --key col1,col2\`, or in the configuration file {"name": ${JSON.stringify(`${spec.schema}.${spec.table}`)}, "keyColumns": ["…"]}`,
    );
  }
  return { relid, keyColumns: pk, keyOrigin: 'primary key' };
}

function rowToTable(r: Record<string, unknown>): RegisteredTable {
  return {
    id: Number(r.id),
    relid: Number(r.relid),
    sourceSchema: r.source_schema as string,
    sourceTable: r.source_table as string,
    keyColumns: r.key_columns as string[],
    keyOrigin: r.key_origin as 'primary key' | 'config',
    targetSchema: r.target_schema as string,
    targetTable: r.target_table as string,
    shape: (r.shape as TableShape | null) ?? null,
  };
}

const SELECT_TABLES = `select id, relid::int8 as relid, source_schema, source_table, key_columns, key_origin, target_schema, target_table, shape`;

/** What the capture triggers of a registered table need (also when they are installed again). */
export function captureTargetOf(t: RegisteredTable): CaptureTarget {
  return { tableId: t.id, relid: t.relid, sourceSchema: t.sourceSchema, sourceTable: t.sourceTable, keyColumns: t.keyColumns, keyOrigin: t.keyOrigin, shape: t.shape };
}

export async function listTables(db: Queryable, schema: string): Promise<RegisteredTable[]> {
  const res = await db.query(`${SELECT_TABLES} from ${qualify(schema, 'tables')} order by id`);
  return res.rows.map(rowToTable);
}

/**
 * Registers a table and (re)installs its triggers in one transaction. Idempotent: adding a table
 * again refreshes its key and triggers. `mapTarget` names the target table (the sink's naming rules).
 */
export async function addTable(
  pool: pg.Pool,
  schema: string,
  spec: TableSpec,
  targetName: (spec: TableSpec) => { schema: string; table: string },
): Promise<RegisteredTable> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const key = await resolveTable(client, spec);
    const target = targetName(spec);
    const name = displayName(spec.schema, spec.table);
    await checkShape(client, spec, { schema: spec.schema, table: spec.table, name }, await describeColumns(client, key.relid), key.keyColumns);
    const history = spec.history ? targetName({ ...spec, targetTable: spec.historyTable ?? `${spec.targetTable ?? spec.table}_history` }) : null;
    if (history && history.schema === target.schema && history.table === target.table) {
      throw new TableError(`the history table of ${name} would be its target table ${displayName(target.schema, target.table)}; set "historyTable" to another name`);
    }
    const shape = resolveShape(spec, history);
    const res = await client.query(
      `insert into ${qualify(schema, 'tables')} as t (relid, source_schema, source_table, key_columns, key_origin, target_schema, target_table, shape, hash_salt, columns_seen)
       values ($1, $2, $3, $4, $5, $6, $7, $8, $9,
               (select coalesce(array_agg(a.attnum || ':' || a.attname order by a.attnum), '{}') from pg_attribute a where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped))
       on conflict (source_schema, source_table) do update
         set relid = excluded.relid, key_columns = excluded.key_columns, key_origin = excluded.key_origin,
             -- the columns as last seen stay (column-watch.ts), unless this is another table by the same name
             columns_seen = case when t.relid = excluded.relid then t.columns_seen else excluded.columns_seen end,
             target_schema = excluded.target_schema, target_table = excluded.target_table, shape = excluded.shape, hash_salt = excluded.hash_salt
       returning id, relid::int8 as relid, source_schema, source_table, key_columns, key_origin, target_schema, target_table, shape`,
      [key.relid, spec.schema, spec.table, key.keyColumns, key.keyOrigin, target.schema, target.table, shape === null ? null : JSON.stringify(shape),
        shape !== null && shape.hashColumns.length > 0 ? spec.hashSalt ?? null : null],
    );
    const table = rowToTable(res.rows[0]);
    // the table, and every partition of a partitioned one (capture-install.ts)
    await installCapture(client, schema, captureTargetOf(table));
    // A newly captured table gets its existing rows copied; the triggers above are in place first,
    // so nothing written after the copy reads a row is missed. Re-adding keeps a finished copy.
    await scheduleBackfill(client, schema, table.id, false);
    await client.query('commit');
    return table;
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** Drops a table's triggers and registry entry. Events already captured stay and are still applied. */
export async function removeTable(pool: pg.Pool, schema: string, spec: TableSpec): Promise<boolean> {
  const client = await pool.connect();
  try {
    await client.query('begin');
    const res = await client.query<{ id: number; relid: number }>(
      `select id, relid::int8 as relid from ${qualify(schema, 'tables')} where source_schema = $1 and source_table = $2`,
      [spec.schema, spec.table],
    );
    if (res.rows.length === 0) { await client.query('rollback'); return false; }
    // wherever its triggers are: the table, its partitions, tables detached from it
    await removeCapture(client, schema, res.rows[0].id);
    await client.query(`delete from ${qualify(schema, 'partition_writes')} where table_id = $1`, [res.rows[0].id]);
    await client.query(`delete from ${qualify(schema, 'tables')} where id = $1`, [res.rows[0].id]);
    await client.query('commit');
    return true;
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** Describes registered tables from the live catalog, found by oid so that a renamed table still resolves. */
export class RegistryCatalog implements SourceCatalog {
  readonly #db: Queryable;
  readonly #schema: string;
  constructor(db: Queryable, schema: string) {
    this.#db = db;
    this.#schema = schema;
  }

  async describe(tableId: number): Promise<TableInfo> {
    const res = await this.#db.query(`${SELECT_TABLES} from ${qualify(this.#schema, 'tables')} where id = $1`, [tableId]);
    if (res.rows.length === 0) throw new TableError(`table id ${tableId} is not registered (was it removed while changes were pending?)`);
    const t = rowToTable(res.rows[0]);
    const all = await describeColumns(this.#db, t.relid);
    const name = displayName(t.sourceSchema, t.sourceTable);
    if (all.length === 0) {
      throw new TableError(`source table ${name} (oid ${t.relid}) no longer exists; its pending changes cannot be described`);
    }
    const gone = t.keyColumns.filter((k) => !all.some((c) => c.name === k));
    if (gone.length > 0) {
      // Renamed, most likely: the capture names the key columns, so until the table is captured
      // again (the watch does it, ops/key-watch.ts) its updates and deletes fail in the source.
      throw new TableError(
        `the key column${gone.length > 1 ? 's' : ''} ${gone.join(', ')} of ${name} no longer exist${gone.length > 1 ? '' : 's'} (renamed, or the primary key changed): ` +
          `its changes cannot be matched in the target until pg2crate captures it again under the new names (the replicator's watch does that by itself, or \`pg2crate tables add ${t.sourceSchema}.${t.sourceTable}\`); ` +
          'README "Schema changes" says what to do for the target',
      );
    }
    // An excluded or hashed column renamed, before the watch follows it: no row carries it (the
    // capture refuses, the loads and the publication leave it out), so the target gets no column for it.
    const renamed = t.shape === null ? [] : [...(await renamedShapeColumns(this.#db, this.#schema, tableId)).values()];
    return { ...t, columns: shapedColumns(all.filter((c) => !renamed.includes(c.name)), t.shape, name), toolSchema: this.#schema };
  }
}
