// SQL builders for the CrateDB target (pure). Every identifier is quoted; values never appear in
// statement text, they travel as bulk_args parameters.
//
// Deletes go BY KEY with one parameter row per key (`WHERE "pk" = ?`): CrateDB runs those as
// lookups by id, which see a row written a moment ago. `= ANY(?)` and `IN (?, …)` are searches,
// which only see rows a refresh has made visible, and silently delete nothing otherwise.
import type { CrateOptions } from '../../core/config.js';
import { qualify, quoteIdent, quoteLiteral } from '../../core/identifiers.js';
import type { ColumnPlan, TablePlan } from './column-types.js';

export type DdlOptions = Pick<CrateOptions, 'shards' | 'replicas'> & Partial<Pick<CrateOptions, 'refreshIntervalMs'>>;

export function createTableSql(plan: TablePlan, opts: DdlOptions): string {
  const cols = plan.columns.map((c) => `${quoteIdent(c.target)} ${c.ddl}`);
  cols.push(`PRIMARY KEY (${plan.keys.map((k) => quoteIdent(k.target)).join(', ')})`);
  return `CREATE TABLE IF NOT EXISTS ${qualify(plan.schema, plan.table)} (\n  ${cols.join(',\n  ')}\n)${tableOptionsSql(opts)}`;
}

/** The shards and settings every table pg2crate creates gets (the targets and the history tables). */
export function tableOptionsSql(opts: DdlOptions): string {
  const shards = opts.shards === undefined ? '' : ` CLUSTERED INTO ${opts.shards} SHARDS`;
  // Without a refresh_interval the table keeps CrateDB's default (1 s).
  const refresh = opts.refreshIntervalMs === undefined ? '' : `, refresh_interval = ${opts.refreshIntervalMs}`;
  return `${shards} WITH (number_of_replicas = ${quoteLiteral(opts.replicas)}${refresh}, column_policy = 'strict')`;
}

/** ALTER TABLE … ADD COLUMN has no IF NOT EXISTS in CrateDB: check information_schema first. */
export function addColumnSql(plan: TablePlan, c: ColumnPlan): string {
  return `ALTER TABLE ${qualify(plan.schema, plan.table)} ADD COLUMN ${quoteIdent(c.target)} ${c.ddl}`;
}

/**
 * One parameter row per changed row, values in the order of `plan.columns`. Key columns, and the
 * columns CrateDB routes or partitions by (`fixed`), must not be in SET: CrateDB refuses that.
 */
export function upsertSql(plan: TablePlan, fixed: ReadonlySet<string> = new Set()): { sql: string; doNothing: boolean } {
  const names = plan.columns.map((c) => quoteIdent(c.target));
  const keys = new Set(plan.keys.map((k) => k.target));
  const set = plan.columns
    .filter((c) => !keys.has(c.target) && !fixed.has(c.target))
    .map((c) => `${quoteIdent(c.target)} = excluded.${quoteIdent(c.target)}`);
  const action = set.length > 0 ? `DO UPDATE SET ${set.join(', ')}` : 'DO NOTHING';
  const sql = `INSERT INTO ${qualify(plan.schema, plan.table)} (${names.join(', ')}) VALUES (${plan.columns.map(() => '?').join(', ')})` +
    ` ON CONFLICT (${plan.keys.map((k) => quoteIdent(k.target)).join(', ')}) ${action}`;
  return { sql, doNothing: set.length === 0 };
}

/**
 * An insert that keeps a row already there (rowcount 0 for it): for an initial load's chunks into a
 * table the load found empty (sink.ts keepExisting). For new keys CrateDB runs an upsert as this
 * insert first; this spares it the update of the keys it finds.
 */
export function insertKeepingSql(plan: TablePlan): string {
  return `INSERT INTO ${qualify(plan.schema, plan.table)} (${plan.columns.map((c) => quoteIdent(c.target)).join(', ')}) VALUES (${plan.columns.map(() => '?').join(', ')})` +
    ` ON CONFLICT (${plan.keys.map((k) => quoteIdent(k.target)).join(', ')}) DO NOTHING`;
}

/**
 * An update of some columns by key (a partial image: pgoutput leaves unchanged TOASTed values out).
 * One parameter row per changed row: the `columns` values, then the key values in key order.
 */
export function updateColumnsSql(plan: TablePlan, columns: readonly ColumnPlan[]): string {
  return `UPDATE ${qualify(plan.schema, plan.table)} SET ${columns.map((c) => `${quoteIdent(c.target)} = ?`).join(', ')}` +
    ` WHERE ${plan.keys.map((k) => `${quoteIdent(k.target)} = ?`).join(' AND ')}`;
}

/** One parameter row per key, values in key order. */
export function deleteByKeySql(plan: TablePlan): string {
  return `DELETE FROM ${qualify(plan.schema, plan.table)} WHERE ${plan.keys.map((k) => `${quoteIdent(k.target)} = ?`).join(' AND ')}`;
}

/** `DELETE FROM t` without WHERE only sees refreshed rows, so a truncate refreshes first. */
export function truncateSql(plan: Pick<TablePlan, 'schema' | 'table'>): [refresh: string, deleteAll: string] {
  const t = qualify(plan.schema, plan.table);
  return [`REFRESH TABLE ${t}`, `DELETE FROM ${t}`];
}

/** Top-level columns of a table ($1 schema, $2 table); object sub-columns have a subscript in their name. */
export const COLUMNS_QUERY =
  'SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position';

/** The routing and partition columns of a table, which an upsert may not SET. */
export const TABLE_QUERY =
  'SELECT clustered_by, partitioned_by FROM information_schema.tables WHERE table_schema = ? AND table_name = ?';

export const PRIMARY_KEY_QUERY =
  "SELECT column_name FROM information_schema.key_column_usage WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position";
