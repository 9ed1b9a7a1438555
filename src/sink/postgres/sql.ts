// SQL builders for the PostgreSQL target (pure). Rows travel as one JSON array per statement,
// expanded by json_populate_recordset against the target's own row type: the values are converted
// by Postgres from their exact text, never through JavaScript numbers. The parameter is `json`, not
// `jsonb`: the text is parsed once, object by object, instead of first being built into one jsonb
// value (about a tenth of the target's CPU per applied row); the rows are the outbox's jsonb text,
// so both give the same values.
import type { ColumnInfo, TableInfo } from '../../core/change.js';
import { qualify, quoteIdent } from '../../core/identifiers.js';

/** The target column type: the source type where the target surely has it, text otherwise. */
export function pgColumnType(c: ColumnInfo): string {
  const builtin = c.baseType !== 'other' && c.typtype !== 'e' && c.typtype !== 'c' && c.typtype !== 'p';
  const base = builtin ? c.baseFormatted : 'text';
  return c.dims > 0 ? `${base}[]` : base;
}

export function createSchemaSql(t: TableInfo): string {
  return `create schema if not exists ${quoteIdent(t.targetSchema)}`;
}

export function createTableSql(t: TableInfo): string {
  const cols = t.columns.map((c) => `${quoteIdent(c.name)} ${pgColumnType(c)}`);
  const keys = t.keyColumns.map(quoteIdent).join(', ');
  // Key columns configured for a table without a primary key may hold NULL (the capture side and
  // the delete match it with IS NOT DISTINCT FROM). A primary key would refuse such rows; a unique
  // constraint that treats NULLs as equal (Postgres 15+) keeps them and still arbitrates the upsert.
  const nullableKey = t.keyColumns.some((k) => !t.columns.find((c) => c.name === k)?.notNull);
  cols.push(nullableKey ? `unique nulls not distinct (${keys})` : `primary key (${keys})`);
  return `create table if not exists ${qualify(t.targetSchema, t.targetTable)} (\n  ${cols.join(',\n  ')}\n)`;
}

export function addColumnSql(t: TableInfo, c: ColumnInfo): string {
  return `alter table ${qualify(t.targetSchema, t.targetTable)} add column if not exists ${quoteIdent(c.name)} ${pgColumnType(c)}`;
}

/** $1: a JSON array of row images. Columns that left the source are not touched on update. */
export function upsertSql(t: TableInfo): string {
  const target = qualify(t.targetSchema, t.targetTable);
  const names = t.columns.map((c) => quoteIdent(c.name));
  const keys = new Set(t.keyColumns);
  const rest = t.columns.filter((c) => !keys.has(c.name)).map((c) => `${quoteIdent(c.name)} = excluded.${quoteIdent(c.name)}`);
  const action = rest.length > 0 ? `do update set ${rest.join(', ')}` : 'do nothing';
  return `insert into ${target} as t (${names.join(', ')})
select ${names.join(', ')} from json_populate_recordset(null::${target}, $1::json)
on conflict (${t.keyColumns.map(quoteIdent).join(', ')}) ${action}`;
}

/** $1: a JSON array of key objects. Configured keys may hold NULL and match it. */
export function deleteSql(t: TableInfo, nullableKey: boolean): string {
  const target = qualify(t.targetSchema, t.targetTable);
  const eq = nullableKey ? 'is not distinct from' : '=';
  const match = t.keyColumns.map((c) => `t.${quoteIdent(c)} ${eq} k.${quoteIdent(c)}`).join(' and ');
  return `delete from ${target} as t using json_populate_recordset(null::${target}, $1::json) as k where ${match}`;
}

export function truncateSql(t: TableInfo): string {
  return `truncate ${qualify(t.targetSchema, t.targetTable)}`;
}

/**
 * $1: a JSON array of partial row images that all carry exactly `columns` besides the key. Updates
 * those columns of rows that exist; a missing row stays missing (after a complete initial load a
 * partial change always finds its row).
 */
export function updateColumnsSql(t: TableInfo, columns: readonly string[], nullableKey: boolean): string {
  const target = qualify(t.targetSchema, t.targetTable);
  const eq = nullableKey ? 'is not distinct from' : '=';
  const set = columns.map((c) => `${quoteIdent(c)} = k.${quoteIdent(c)}`).join(', ');
  const match = t.keyColumns.map((c) => `t.${quoteIdent(c)} ${eq} k.${quoteIdent(c)}`).join(' and ');
  return `update ${target} as t set ${set} from json_populate_recordset(null::${target}, $1::json) as k where ${match}`;
}

/** Partial changes grouped by the non-key columns they carry (one UPDATE statement per group). */
export function groupPartial<C extends { row: Record<string, unknown> | null }>(t: TableInfo, changes: readonly C[]): { columns: string[]; changes: C[] }[] {
  const keys = new Set(t.keyColumns);
  const known = new Set(t.columns.map((c) => c.name));
  const groups = new Map<string, { columns: string[]; changes: C[] }>();
  for (const c of changes) {
    const columns = Object.keys(c.row ?? {}).filter((k) => !keys.has(k) && known.has(k)).sort();
    if (columns.length === 0) continue;
    const id = JSON.stringify(columns);
    let g = groups.get(id);
    if (!g) groups.set(id, (g = { columns, changes: [] }));
    g.changes.push(c);
  }
  return [...groups.values()];
}
