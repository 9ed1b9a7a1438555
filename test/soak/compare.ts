// Source against target, table by table, row by row: by key, every column the source has now, each
// value in a canonical text form. A Postgres target holds the source's own types, so both sides
// render the row with the same SQL (json_build_array in UTC) and the texts must be equal. CrateDB is
// read over HTTP /_sql after REFRESH TABLE, and both sides are normalised where CrateDB keeps a
// value in another form (milliseconds, numbers as text, jsonb wrapped as an OBJECT).
//
// Columns the target has and the source no longer has (dropped) are not compared; a source column
// the target does not have yet compares as NULL, so a column no row ever set is not a difference.
import type pg from 'pg';
import { canonicalJson, canonicalNumber } from '../helpers/cratedb.js';
import { parseAnswer, type CrateClient } from '../../src/sink/cratedb/crate-client.js';
import { decodeJsonColumn } from '../../src/sink/cratedb/row-values.js';
import { crateColumnName } from '../../src/sink/cratedb/names.js';
import { qualify, quoteIdent, quoteLiteral } from '../../src/core/identifiers.js';
import type { JsonValue } from '../../src/core/change.js';

export type TargetSide = { kind: 'postgres'; pool: pg.Pool } | { kind: 'cratedb'; client: CrateClient };

type Kind = 'number' | 'text' | 'json' | 'timestamp' | 'array' | 'bool';

interface Column {
  name: string;
  kind: Kind;
}

export interface TableToCompare {
  tableId: number;
  source: string;
  sourceSchema: string;
  sourceTable: string;
  targetSchema: string;
  targetTable: string;
  keyColumns: string[];
  columns: Column[];
}

export interface RowDiff {
  /** the key as a JSON object, e.g. {"id": 5} */
  key: string;
  source: string | null;
  target: string | null;
}

export interface TableDiff {
  table: string;
  target: string;
  tableId: number;
  sourceRows: number;
  targetRows: number;
  missing: number;
  extra: number;
  different: number;
  /** the first few hundred of each kind */
  rows: RowDiff[];
}

const KEEP_ROWS = 500;

/** The registered tables (names from the registry, so the target's naming rules are respected) and their columns now. */
export async function tablesToCompare(src: pg.Pool, schema = 'pg2crate'): Promise<TableToCompare[]> {
  const reg = await src.query<{ id: number; relid: string; source_schema: string; source_table: string; target_schema: string; target_table: string; key_columns: string[] }>(
    `select id, relid::text, source_schema, source_table, target_schema, target_table, key_columns from ${qualify(schema, 'tables')} order by id`,
  );
  const out: TableToCompare[] = [];
  for (const t of reg.rows) {
    const cols = await src.query<{ name: string; type: string; dims: number; cat: string }>(
      `select a.attname as name, format_type(a.atttypid, a.atttypmod) as type, a.attndims as dims, ty.typcategory as cat
         from pg_attribute a join pg_type ty on ty.oid = a.atttypid
        where a.attrelid = $1::oid and a.attnum > 0 and not a.attisdropped order by a.attnum`,
      [t.relid],
    );
    out.push({
      tableId: t.id, source: `${t.source_schema}.${t.source_table}`, sourceSchema: t.source_schema, sourceTable: t.source_table,
      targetSchema: t.target_schema, targetTable: t.target_table, keyColumns: t.key_columns,
      columns: cols.rows.map((c) => ({ name: c.name, kind: kindOf(c.type, c.cat) })),
    });
  }
  return out;
}

function kindOf(type: string, category: string): Kind {
  if (category === 'A' || type.endsWith('[]')) return 'array';
  if (category === 'N') return 'number';
  if (type === 'jsonb' || type === 'json') return 'json';
  if (type.startsWith('timestamp')) return 'timestamp';
  if (type === 'boolean') return 'bool';
  return 'text';
}

/** Compares one table completely. */
export async function compareTable(src: pg.Pool, target: TargetSide, t: TableToCompare): Promise<TableDiff> {
  const [a, b] = target.kind === 'postgres'
    ? await Promise.all([pgRows(src, t, t.sourceSchema, t.sourceTable, null), pgTargetRows(target.pool, t)])
    : await Promise.all([sourceRowsForCrate(src, t), crateRows(target.client, t)]);
  const diff: TableDiff = {
    table: t.source, target: `${t.targetSchema}.${t.targetTable}`, tableId: t.tableId, sourceRows: a.size, targetRows: b.size,
    missing: 0, extra: 0, different: 0, rows: [],
  };
  for (const [k, row] of a) {
    const other = b.get(k);
    if (other === undefined) {
      diff.missing++;
      if (diff.rows.length < KEEP_ROWS) diff.rows.push({ key: row.key, source: row.value, target: null });
    } else if (other.value !== row.value) {
      diff.different++;
      if (diff.rows.length < KEEP_ROWS) diff.rows.push({ key: row.key, source: row.value, target: other.value });
    }
  }
  for (const [k, row] of b) {
    if (a.has(k)) continue;
    diff.extra++;
    if (diff.rows.length < KEEP_ROWS) diff.rows.push({ key: row.key, source: null, target: row.value });
  }
  return diff;
}

export function differences(d: TableDiff): number {
  return d.missing + d.extra + d.different;
}

/**
 * True when the target holds the same rows as the source. A Postgres target compares a count and a
 * sum of row hashes on each side (cheap enough to ask every few seconds); CrateDB compares in full.
 */
export async function sameRows(src: pg.Pool, target: TargetSide, t: TableToCompare): Promise<boolean> {
  if (target.kind === 'cratedb') {
    // counts first: fetching 200,000 rows from both sides is worth it only when they could be equal
    const table = qualify(t.targetSchema, t.targetTable);
    const n = await src.query<{ n: string }>(`select count(*)::text as n from ${qualify(t.sourceSchema, t.sourceTable)}`);
    const m = await target.client.sql(`REFRESH TABLE ${table}`).then(() => target.client.sql(`SELECT count(*) FROM ${table}`), () => null);
    if (!m || String(m.rows[0][0]) !== n.rows[0].n) return false;
    return differences(await compareTable(src, target, t)) === 0;
  }
  const targetCols = await targetColumns(target.pool, t);
  const digest = (cols: Set<string> | null) => `select count(*)::text || '/' || coalesce(sum(hashtextextended(${rowSql(t, cols)}, 0)::numeric), 0)::text as d`;
  const [a, b] = await Promise.all([
    src.query<{ d: string }>(`${digest(null)} from ${qualify(t.sourceSchema, t.sourceTable)} t`),
    target.pool.query<{ d: string }>(`${digest(targetCols)} from ${qualify(t.targetSchema, t.targetTable)} t`),
  ]);
  return a.rows[0].d === b.rows[0].d;
}

type Rows = Map<string, { key: string; value: string }>;

/** json_build_array of the source's columns; a column the target lacks is NULL */
function rowSql(t: TableToCompare, present: Set<string> | null): string {
  return `json_build_array(${t.columns.map((c) => (present && !present.has(c.name) ? 'null' : `t.${quoteIdent(c.name)}`)).join(', ')})::text`;
}

function keySql(t: TableToCompare): string {
  return `jsonb_build_object(${t.keyColumns.map((k) => `${quoteLiteral(k)}, t.${quoteIdent(k)}`).join(', ')})::text`;
}

async function pgRows(db: pg.Pool, t: TableToCompare, schema: string, table: string, present: Set<string> | null): Promise<Rows> {
  const res = await db.query<{ k: string; v: string }>(`select ${keySql(t)} as k, ${rowSql(t, present)} as v from ${qualify(schema, table)} t`);
  return new Map(res.rows.map((r) => [r.k, { key: r.k, value: r.v }]));
}

async function targetColumns(db: pg.Pool, t: TableToCompare): Promise<Set<string>> {
  const res = await db.query<{ c: string }>(`select column_name as c from information_schema.columns where table_schema = $1 and table_name = $2`, [t.targetSchema, t.targetTable]);
  return new Set(res.rows.map((r) => r.c));
}

async function pgTargetRows(db: pg.Pool, t: TableToCompare): Promise<Rows> {
  const present = await targetColumns(db, t);
  if (present.size === 0) return new Map();
  return pgRows(db, t, t.targetSchema, t.targetTable, present);
}

// ---- CrateDB ----

/** The source's value of a column in the form its CrateDB copy is normalised to (see norm()). */
function sourceExprForCrate(c: Column): string {
  const col = `t.${quoteIdent(c.name)}`;
  switch (c.kind) {
    case 'number': return `${col}::text`;
    case 'timestamp': return `floor(extract(epoch from ${col}) * 1000)::bigint::text`;
    case 'array': return `to_jsonb(${col})`;
    default: return col;
  }
}

function crateExpr(c: Column, present: Set<string>): string {
  const name = crateColumnName(c.name);
  if (!present.has(name)) return 'NULL';
  // numbers as text: a NUMERIC or BIGINT read as a JSON number could pass through a double
  return c.kind === 'number' ? `${quoteIdent(name)}::TEXT` : quoteIdent(name);
}

function norm(c: Column, v: unknown, crate: boolean): unknown {
  if (v === null || v === undefined) return null;
  switch (c.kind) {
    case 'number':
    case 'timestamp': return canonicalNumber(String(v));
    case 'json': return canonicalJson(crate ? decodeJsonColumn(v as JsonValue) : v);
    case 'array': return canonicalJson(v);
    case 'bool': return Boolean(v);
    default: return String(v);
  }
}

function canonicalRow(t: TableToCompare, values: unknown[], crate: boolean): string {
  return JSON.stringify(t.columns.map((c, i) => norm(c, values[i], crate)));
}

function matchKey(t: TableToCompare, values: unknown[], crate: boolean): string {
  return JSON.stringify(t.keyColumns.map((k) => {
    const i = t.columns.findIndex((c) => c.name === k);
    return norm(t.columns[i], values[i], crate);
  }));
}

async function sourceRowsForCrate(db: pg.Pool, t: TableToCompare): Promise<Rows> {
  const res = await db.query<{ k: string; v: string }>(
    `select ${keySql(t)} as k, json_build_array(${t.columns.map(sourceExprForCrate).join(', ')})::text as v from ${qualify(t.sourceSchema, t.sourceTable)} t`,
  );
  const out: Rows = new Map();
  for (const r of res.rows) {
    const values = parseAnswer(r.v) as unknown[];
    out.set(matchKey(t, values, false), { key: r.k, value: canonicalRow(t, values, false) });
  }
  return out;
}

async function crateRows(c: CrateClient, t: TableToCompare): Promise<Rows> {
  const table = qualify(t.targetSchema, t.targetTable);
  const cols = await c.sql('SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?', [t.targetSchema, t.targetTable]);
  const present = new Set(cols.rows.map((r) => String(r[0])));
  if (present.size === 0) return new Map();
  await c.sql(`REFRESH TABLE ${table}`);
  const select = `SELECT ${t.columns.map((col) => crateExpr(col, present)).join(', ')} FROM ${table}`;
  const out: Rows = new Map();
  const add = (rows: unknown[][]) => {
    for (const values of rows) {
      // the key as the source's jsonb would write it, so that evidence can look it up in the audit
      const key = `{${t.keyColumns.map((k) => {
        const i = t.columns.findIndex((col) => col.name === k);
        return `${JSON.stringify(k)}: ${t.columns[i].kind === 'number' ? String(values[i]) : JSON.stringify(String(values[i]))}`;
      }).join(', ')}}`;
      out.set(matchKey(t, values, true), { key, value: canonicalRow(t, values, true) });
    }
  };
  const keyCol = t.columns.find((col) => col.name === t.keyColumns[0]);
  if (t.keyColumns.length === 1 && keyCol?.kind === 'number') {
    // page by key: one answer of 200,000 rows is more than a request should carry
    const k = quoteIdent(crateColumnName(keyCol.name));
    let after: string | null = null;
    for (;;) {
      const res = await c.sql(`${select}${after === null ? '' : ` WHERE ${k} > CAST(? AS BIGINT)`} ORDER BY ${k} LIMIT 20000`, after === null ? [] : [after]);
      add(res.rows);
      if (res.rows.length < 20000) break;
      after = String(res.rows[res.rows.length - 1][t.columns.indexOf(keyCol)]);
    }
  } else {
    add((await c.sql(select)).rows);
  }
  return out;
}
