// Shaped tables (table-shape.ts) in pgoutput mode: what the publication does for them, and what
// it cannot do (refused before a switch, with a message that says to stay in trigger mode).
//
// Done by the publication (PostgreSQL 15+):
// - column filters: a publication column list, so an excluded column is never decoded or sent. The
//   list is the table's columns as of the last start (an exclude list leaves columns added later
//   out until the replicator starts again, which brings the publication in line). Postgres keeps
//   the list by attnum, so an excluded column renamed stays out; the list made at a start leaves it
//   out under its new name too, also before the watch has followed the rename.
// - row filters: the publication's WHERE. An UPDATE whose old row passed and whose new row does not
//   is published as a DELETE, the reverse as an INSERT: the trigger mode's semantics.
// Refused, because the result would differ from trigger mode or break the application's writes:
// - hashed columns: a publication cannot hash; the raw value would leave the source.
// - history: a history row is identified by the event's id, which in pgoutput mode is a number of
//   the session, not of the change; a replay after a crash would add rows twice. (Hook for the
//   pgoutput source: a stable id from the commit LSN and the change's place in its transaction.)
// - a column list on a table with REPLICA IDENTITY FULL, and a row filter over columns outside a
//   key-only replica identity: Postgres would then refuse the application's UPDATEs and DELETEs.
// Source times: the pgoutput source may set Change.sourceTime from the transaction's commit time
// (BEGIN message); until it does, soft deletes are stamped with the applied time and the source
// time column stays NULL.
import type pg from 'pg';
import { TableError } from '../../core/errors.js';
import { displayName, qualify, quoteIdent } from '../../core/identifiers.js';
import type { TableShape } from '../../core/table-shape.js';
import { RENAMED_SHAPE_COLUMNS } from '../../capture/column-watch.js';

type Queryable = pg.ClientBase | pg.Pool;

const STAY = 'keep this table in trigger mode (PG2CRATE_CAPTURE=trigger)';

interface ShapedRow {
  source_schema: string;
  source_table: string;
  relid: string;
  key_columns: string[];
  shape: TableShape | null;
  replident: string | null;
  columns: string[] | null;
}

async function shapedTables(db: Queryable, schema: string): Promise<ShapedRow[]> {
  const res = await db.query<ShapedRow>(
    `select t.source_schema, t.source_table, t.relid::int8::text as relid, t.key_columns, t.shape, c.relreplident::text as replident,
            (select array_agg(a.attname::text order by a.attnum) from pg_attribute a where a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped) as columns
       from ${qualify(schema, 'tables')} t left join pg_class c on c.oid = t.relid
      where t.shape is not null order by t.id`,
  );
  return res.rows;
}

/** Throws when a registered table's shape cannot be captured with pgoutput (see the header). */
export async function checkShapesForPgoutput(db: Queryable, schema: string): Promise<void> {
  const rows = await shapedTables(db, schema);
  if (rows.length === 0) return;
  const version = Number((await db.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0].v);
  for (const t of rows) {
    const shape = t.shape!;
    const name = displayName(t.source_schema, t.source_table);
    if (shape.hashColumns.length > 0) throw new TableError(`${name} hashes columns (hashColumns), which a publication cannot do; ${STAY}`);
    if (shape.history) throw new TableError(`${name} keeps a history, whose rows pgoutput mode cannot yet identify across a restart; ${STAY}`);
    const lists = shape.includeColumns !== undefined || shape.excludeColumns !== undefined;
    if ((lists || shape.where !== undefined) && version < 150000) {
      throw new TableError(`${name} filters columns or rows, which needs publication column lists and row filters (PostgreSQL 15+); ${STAY}`);
    }
    if (lists && t.replident === 'f') {
      throw new TableError(`${name} filters columns and has REPLICA IDENTITY FULL; Postgres would refuse its updates under a publication column list: set REPLICA IDENTITY DEFAULT, or ${STAY}`);
    }
    if (shape.where !== undefined && t.replident !== 'f' && !(await predicateOnKeyOnly(db, t, shape.where))) {
      throw new TableError(
        `the row filter of ${name} reads columns outside its key, which Postgres publishes only with REPLICA IDENTITY FULL ` +
          `(ALTER TABLE ${qualify(t.source_schema, t.source_table)} REPLICA IDENTITY FULL${lists ? ', which a column filter rules out' : ''}); or ${STAY}`,
      );
    }
  }
}

/** Whether the predicate can be evaluated with the key columns alone. */
async function predicateOnKeyOnly(db: Queryable, t: ShapedRow, where: string): Promise<boolean> {
  try {
    await db.query(`select 1 from (select ${t.key_columns.map(quoteIdent).join(', ')} from ${qualify(t.source_schema, t.source_table)} limit 0) x where (${where})`);
    return true;
  } catch {
    return false;
  }
}

export interface PublishedTable {
  /** `schema.table [(columns)] [where (pred)]` */
  clause: string;
  /** the column list, or null for every column */
  columns: string[] | null;
}

/**
 * How a registered table is published. `columns` are the table's current columns in order;
 * `renamed` the current names of excluded columns renamed since the registry saw them
 * (RENAMED_SHAPE_COLUMNS): left out too, so that a replicator started before the watch's pass does
 * not put the column back into the list under its new name.
 */
export function publishedTable(t: { sourceSchema: string; sourceTable: string; shape: TableShape | null }, columns: readonly string[], renamed: readonly string[] = []): PublishedTable {
  const name = qualify(t.sourceSchema, t.sourceTable);
  const shape = t.shape;
  if (!shape) return { clause: name, columns: null };
  let listed: string[] | null = null;
  if (shape.includeColumns) listed = columns.filter((c) => shape.includeColumns!.includes(c));
  if (shape.excludeColumns) listed = columns.filter((c) => !shape.excludeColumns!.includes(c) && !renamed.includes(c));
  const list = listed ? ` (${listed.map(quoteIdent).join(', ')})` : '';
  const where = shape.where !== undefined ? ` where (${shape.where})` : '';
  return { clause: `${name}${list}${where}`, columns: listed };
}

/** Every registered table as it is to be published, by "schema\0table". */
export async function publishedTables(db: Queryable, schema: string): Promise<Map<string, PublishedTable>> {
  const res = await db.query<{ s: string; t: string; shape: TableShape | null; columns: string[] | null; renamed: string[] | null }>(
    `select t.source_schema as s, t.source_table as t, t.shape,
            (select array_agg(a.attname::text order by a.attnum) from pg_attribute a where a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped) as columns,
            (select array_agg(r.now) from (${RENAMED_SHAPE_COLUMNS}) r) as renamed
       from ${qualify(schema, 'tables')} t order by t.id`,
  );
  return new Map(res.rows.map((r) => [`${r.s}\u0000${r.t}`, publishedTable({ sourceSchema: r.s, sourceTable: r.t, shape: r.shape }, r.columns ?? [], r.renamed ?? [])]));
}
