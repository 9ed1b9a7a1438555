// SQL for shaped targets in PostgreSQL (pure): soft deletes, metadata columns, the history table
// (table-shape.ts). Rows travel as in sql.ts, one JSON array per statement expanded against the
// target's own row type; the values pg2crate adds (source time, operation, event id) are put into
// each row's JSON object under their column names, which never collide with the source's columns.
//
// - upsert: the source columns, the deletion column NULL (a re-insert brings a row back), source
//   time and operation from the row, applied time the target's now().
// - soft delete: UPDATE … SET <deleted at> = the delete's source time (now() where none was
//   captured) plus the metadata, by key. A key the target does not hold stays absent: only rows
//   the target has seen are kept as deleted.
// - soft truncate: every live row marked, the same way.
// - history: INSERT … ON CONFLICT (event id) DO NOTHING: a replayed page adds nothing.
import type { Change, ColumnInfo, TableInfo } from '../../core/change.js';
import { qualify, quoteIdent } from '../../core/identifiers.js';
import { operationName, stateExtraColumns, type HistoryShape, type TableShape } from '../../core/table-shape.js';
import { pgColumnType } from './sql.js';

type Shaped = TableInfo & { shape: TableShape };

/** The columns pg2crate adds to the current-state table: name and Postgres type. */
export function stateExtras(shape: TableShape): { name: string; type: string }[] {
  return stateExtraColumns(shape).map((c) => ({ name: c.name, type: c.kind === 'timestamp' ? 'timestamptz' : 'text' }));
}

export function addExtraColumnSql(schema: string, table: string, c: { name: string; type: string }): string {
  return `alter table ${qualify(schema, table)} add column if not exists ${quoteIdent(c.name)} ${c.type}`;
}

/** A JSON object's text with more members (their names do not occur in it). */
export function withFields(raw: string | null, fields: Record<string, string | number | null>): string {
  const extra = JSON.stringify(fields);
  if (raw === null || /^\{\s*\}$/.test(raw)) return extra;
  const end = raw.lastIndexOf('}');
  return `${raw.slice(0, end)},${extra.slice(1)}`;
}

/** The JSON of an upsert or soft delete of the current-state table. */
export function stateRowJson(shape: TableShape, c: Change): string {
  const fields: Record<string, string | null> = {};
  if (shape.deletes === 'soft' && c.op === 'D') fields[shape.deletedAtColumn] = c.sourceTime ?? null;
  if (shape.metadata.sourceTime !== undefined) fields[shape.metadata.sourceTime] = c.sourceTime ?? null;
  if (shape.metadata.operation !== undefined) fields[shape.metadata.operation] = operationName(c.op);
  return Object.keys(fields).length === 0 ? (c.raw ?? 'null') : withFields(c.raw, fields);
}

/** $1: a JSON array of stateRowJson rows. */
export function shapedUpsertSql(t: Shaped): string {
  const target = qualify(t.targetSchema, t.targetTable);
  const applied = t.shape.metadata.appliedTime;
  const extras = stateExtras(t.shape).map((c) => c.name);
  const names = [...t.columns.map((c) => c.name), ...extras];
  const values = names.map((n) => (n === applied ? 'now()' : quoteIdent(n)));
  const keys = new Set(t.keyColumns);
  const set = names.filter((n) => !keys.has(n)).map((n) => `${quoteIdent(n)} = excluded.${quoteIdent(n)}`);
  return `insert into ${target} as t (${names.map(quoteIdent).join(', ')})
select ${values.join(', ')} from json_populate_recordset(null::${target}, $1::json)
on conflict (${t.keyColumns.map(quoteIdent).join(', ')}) do update set ${set.join(', ')}`;
}

function markSet(shape: TableShape, from: string | null): string[] {
  const v = (col: string, fallback: string) => (from === null ? fallback : `${from}.${quoteIdent(col)}`);
  const set = [`${quoteIdent(shape.deletedAtColumn)} = coalesce(${v(shape.deletedAtColumn, '$1::timestamptz')}, now())`];
  if (shape.metadata.sourceTime !== undefined) set.push(`${quoteIdent(shape.metadata.sourceTime)} = ${v(shape.metadata.sourceTime, '$1::timestamptz')}`);
  if (shape.metadata.appliedTime !== undefined) set.push(`${quoteIdent(shape.metadata.appliedTime)} = now()`);
  if (shape.metadata.operation !== undefined) set.push(`${quoteIdent(shape.metadata.operation)} = ${from === null ? `'truncate'` : `${from}.${quoteIdent(shape.metadata.operation)}`}`);
  return set;
}

/** $1: a JSON array of stateRowJson rows of deletes (key columns plus the added fields). */
export function softDeleteSql(t: Shaped, nullableKey: boolean): string {
  const target = qualify(t.targetSchema, t.targetTable);
  const eq = nullableKey ? 'is not distinct from' : '=';
  const match = t.keyColumns.map((c) => `t.${quoteIdent(c)} ${eq} k.${quoteIdent(c)}`).join(' and ');
  return `update ${target} as t set ${markSet(t.shape, 'k').join(', ')} from json_populate_recordset(null::${target}, $1::json) as k where ${match}`;
}

/** $1: the truncate's source time (text) or null. Marks every row that is not marked yet. */
export function softTruncateSql(t: Shaped): string {
  return `update ${qualify(t.targetSchema, t.targetTable)} set ${markSet(t.shape, null).join(', ')} where ${quoteIdent(t.shape.deletedAtColumn)} is null`;
}

/** The history table's own columns, then the source's. */
export function historyColumns(h: HistoryShape, columns: readonly ColumnInfo[]): { name: string; type: string }[] {
  return [
    { name: h.eventIdColumn, type: 'bigint' },
    { name: h.operationColumn, type: 'text' },
    { name: h.sourceTimeColumn, type: 'timestamptz' },
    ...columns.map((c) => ({ name: c.name, type: pgColumnType(c) })),
  ];
}

export function createHistorySql(h: HistoryShape, columns: readonly ColumnInfo[]): string[] {
  const cols = historyColumns(h, columns).map((c) => `${quoteIdent(c.name)} ${c.type}${c.name === h.eventIdColumn ? ' primary key' : ''}`);
  return [
    `create schema if not exists ${quoteIdent(h.schema)}`,
    `create table if not exists ${qualify(h.schema, h.table)} (\n  ${cols.join(',\n  ')}\n)`,
  ];
}

export function historyRowJson(h: HistoryShape, c: Change): string {
  return withFields(c.raw, { [h.eventIdColumn]: c.id, [h.operationColumn]: operationName(c.op), [h.sourceTimeColumn]: c.sourceTime ?? null });
}

/** $1: a JSON array of historyRowJson rows. */
export function historyInsertSql(h: HistoryShape, columns: readonly ColumnInfo[]): string {
  const target = qualify(h.schema, h.table);
  const names = historyColumns(h, columns).map((c) => quoteIdent(c.name)).join(', ');
  return `insert into ${target} (${names})
select ${names} from json_populate_recordset(null::${target}, $1::json)
on conflict (${quoteIdent(h.eventIdColumn)}) do nothing`;
}
