// Shaped targets in CrateDB (pure): the columns pg2crate adds (deletion time, metadata), soft
// deletes, and the append-only history table (table-shape.ts). Values travel as bulk_args.
//
// - upsert: the source columns, then the added ones: deletion time NULL (a re-insert brings a row
//   back), source time and operation as parameters, applied time CURRENT_TIMESTAMP (CrateDB's clock).
// - soft delete: bulk `UPDATE … SET <deleted at> = coalesce(?, CURRENT_TIMESTAMP), … WHERE key = ?`,
//   by key, so it sees rows written a moment ago; a key CrateDB does not hold answers "document
//   missing", which for a mark means there is nothing to mark (bulk-writer.ts mode 'mark').
// - soft truncate: REFRESH, then one `UPDATE … WHERE <deleted at> IS NULL` (a search: it sees only
//   refreshed rows, hence the refresh, as for a truncate).
// - history: PARTITIONED BY a day column generated from the source time (epoch day when none was
//   captured), primary key (event id, day): both follow from the event, so a replayed page adds
//   nothing (ON CONFLICT DO NOTHING). CrateDB 6.4.3 answers a bulk request whose rows create more
//   than one new partition with its row results out of order (rows of existing partitions first),
//   which would pin a refused row on the wrong change; so history rows are sent one day per request.
import type { Change, JsonValue, TableInfo } from '../../core/change.js';
import { qualify, quoteIdent } from '../../core/identifiers.js';
import { operationName, stateExtraColumns, type HistoryShape, type TableShape } from '../../core/table-shape.js';
import { planColumn, type ColumnPlan, type CrateFeatures, type PlanOptions, type TablePlan } from './column-types.js';
import { toJson } from './json-text.js';
import { crateColumnName } from './names.js';
import { columnValue, deleteArgs, rowImage, upsertArgs } from './row-values.js';
import { tableOptionsSql, type DdlOptions } from './sql.js';

const TIMESTAMPTZ = 'TIMESTAMP WITH TIME ZONE';

function extraPlan(name: string, kind: 'timestamp' | 'text' | 'exact-number'): ColumnPlan {
  const ddl = kind === 'timestamp' ? TIMESTAMPTZ : kind === 'text' ? 'TEXT' : 'BIGINT';
  return { source: name, target: crateColumnName(name), ddl, kind, dims: 0, indexedText: kind === 'text', isKey: false };
}

/** The columns pg2crate adds to the current-state table, in the order of stateExtraColumns. */
export function extraColumnPlans(shape: TableShape): ColumnPlan[] {
  return stateExtraColumns(shape).map((c) => extraPlan(c.name, c.kind));
}

/** The plan with the added columns, for DDL (CREATE TABLE, ADD COLUMN). */
export function withExtraColumns(plan: TablePlan, shape: TableShape): TablePlan {
  return { ...plan, columns: [...plan.columns, ...extraColumnPlans(shape)] };
}

/** The value SQL of an added column: the applied time is CrateDB's clock, the others parameters. */
function extraValue(shape: TableShape, c: ColumnPlan): string {
  return c.source === shape.metadata.appliedTime ? 'CURRENT_TIMESTAMP' : '?';
}

/** One parameter row per row: the source columns (upsertArgs), then shapedExtraArgs. */
export function shapedUpsertSql(plan: TablePlan, shape: TableShape, fixed: ReadonlySet<string>): string {
  const extras = extraColumnPlans(shape);
  const all = [...plan.columns, ...extras];
  const keys = new Set(plan.keys.map((k) => k.target));
  const set = all.filter((c) => !keys.has(c.target) && !fixed.has(c.target)).map((c) => `${quoteIdent(c.target)} = excluded.${quoteIdent(c.target)}`);
  return `INSERT INTO ${qualify(plan.schema, plan.table)} (${all.map((c) => quoteIdent(c.target)).join(', ')})` +
    ` VALUES (${[...plan.columns.map(() => '?'), ...extras.map((c) => extraValue(shape, c))].join(', ')})` +
    ` ON CONFLICT (${plan.keys.map((k) => quoteIdent(k.target)).join(', ')}) DO UPDATE SET ${set.join(', ')}`;
}

/** Values of the added columns that are parameters, in column order; `deleted` for a soft delete. */
function extraArgs(shape: TableShape, change: Change, deleted: boolean): JsonValue[] {
  const out: JsonValue[] = [];
  for (const c of extraColumnPlans(shape)) {
    if (c.source === shape.metadata.appliedTime) continue;
    if (shape.deletes === 'soft' && c.source === shape.deletedAtColumn) out.push(deleted ? change.sourceTime ?? null : null);
    else if (c.source === shape.metadata.sourceTime) out.push(change.sourceTime ?? null);
    else if (c.source === shape.metadata.operation) out.push(operationName(change.op));
  }
  return out;
}

function appendArgs(args: string, more: readonly JsonValue[]): string {
  if (more.length === 0) return args;
  const tail = more.map(toJson).join(',');
  return args === '[]' ? `[${tail}]` : `${args.slice(0, -1)},${tail}]`;
}

export function shapedUpsertArgs(plan: TablePlan, shape: TableShape, change: Change): string {
  return appendArgs(upsertArgs(plan, change), extraArgs(shape, change, false));
}

function markSet(shape: TableShape): string[] {
  const set = [`${quoteIdent(crateColumnName(shape.deletedAtColumn))} = coalesce(CAST(? AS ${TIMESTAMPTZ}), CURRENT_TIMESTAMP)`];
  const m = shape.metadata;
  if (m.sourceTime !== undefined) set.push(`${quoteIdent(crateColumnName(m.sourceTime))} = CAST(? AS ${TIMESTAMPTZ})`);
  if (m.appliedTime !== undefined) set.push(`${quoteIdent(crateColumnName(m.appliedTime))} = CURRENT_TIMESTAMP`);
  if (m.operation !== undefined) set.push(`${quoteIdent(crateColumnName(m.operation))} = ?`);
  return set;
}

/** Parameters: deletion time, [source time], [operation], then the key values in key order. */
export function softDeleteSql(plan: TablePlan, shape: TableShape): string {
  return `UPDATE ${qualify(plan.schema, plan.table)} SET ${markSet(shape).join(', ')}` +
    ` WHERE ${plan.keys.map((k) => `${quoteIdent(k.target)} = ?`).join(' AND ')}`;
}

function markArgs(shape: TableShape, change: Change): JsonValue[] {
  const out: JsonValue[] = [change.sourceTime ?? null];
  if (shape.metadata.sourceTime !== undefined) out.push(change.sourceTime ?? null);
  if (shape.metadata.operation !== undefined) out.push(operationName(change.op));
  return out;
}

export function softDeleteArgs(plan: TablePlan, shape: TableShape, change: Change): string {
  const keys = deleteArgs(plan, change);
  const head = markArgs(shape, change).map(toJson).join(',');
  return keys === '[]' ? `[${head}]` : `[${head},${keys.slice(1)}`;
}

/** The statements of a soft truncate and the UPDATE's parameters (refresh first: the UPDATE searches). */
export function softTruncate(plan: TablePlan, shape: TableShape, at: string | undefined): { refresh: string; update: string; args: JsonValue[] } {
  const t = qualify(plan.schema, plan.table);
  const deletedAt = quoteIdent(crateColumnName(shape.deletedAtColumn));
  return {
    refresh: `REFRESH TABLE ${t}`,
    update: `UPDATE ${t} SET ${markSet(shape).join(', ')} WHERE ${deletedAt} IS NULL`,
    args: markArgs(shape, { id: 0, tableId: 0, op: 'T', key: '', row: null, raw: null, ...(at !== undefined ? { sourceTime: at } : {}) }),
  };
}

export const HISTORY_DAY = '_day';

export interface HistoryPlan extends TablePlan {
  history: HistoryShape;
  /** the source's columns in the history table (after the three of pg2crate) */
  sourceColumns: ColumnPlan[];
}

/** The history table's plan: event id, operation, source time, then every source column (none a key). */
export function historyPlan(t: TableInfo, h: HistoryShape, base: TablePlan, opts: PlanOptions, features: CrateFeatures): HistoryPlan {
  const eventId = { ...extraPlan(h.eventIdColumn, 'exact-number'), isKey: true };
  const sourceColumns = t.columns.map((c) => planColumn(c, false, opts, features));
  return {
    schema: h.schema, table: h.table, history: h, sourceColumns, exactNumbers: base.exactNumbers,
    columns: [eventId, extraPlan(h.operationColumn, 'text'), extraPlan(h.sourceTimeColumn, 'timestamp'), ...sourceColumns],
    keys: [eventId],
  };
}

export function createHistorySql(plan: HistoryPlan, opts: DdlOptions): string {
  const sourceTime = quoteIdent(plan.columns[2].target);
  const day = quoteIdent(HISTORY_DAY);
  const cols = plan.columns.map((c) => `${quoteIdent(c.target)} ${c.ddl}`);
  cols.splice(3, 0, `${day} ${TIMESTAMPTZ} GENERATED ALWAYS AS date_trunc('day', coalesce(${sourceTime}, 0::${TIMESTAMPTZ}))`);
  cols.push(`PRIMARY KEY (${quoteIdent(plan.keys[0].target)}, ${day})`);
  // Partitioned by day: the clause's settings hold for every partition CrateDB creates later.
  return `CREATE TABLE IF NOT EXISTS ${qualify(plan.schema, plan.table)} (\n  ${cols.join(',\n  ')}\n) PARTITIONED BY (${day})${tableOptionsSql(opts)}`;
}

export function historyInsertSql(plan: HistoryPlan): string {
  return `INSERT INTO ${qualify(plan.schema, plan.table)} (${plan.columns.map((c) => quoteIdent(c.target)).join(', ')})` +
    ` VALUES (${plan.columns.map(() => '?').join(', ')}) ON CONFLICT (${quoteIdent(plan.keys[0].target)}, ${quoteIdent(HISTORY_DAY)}) DO NOTHING`;
}

/** The parameter row of one change's history row; throws ValueRejected like the other builders. */
export function historyArgs(plan: HistoryPlan, change: Change): string {
  const row = change.row === null ? {} : rowImage(plan, change);
  const values: JsonValue[] = [String(change.id), operationName(change.op), change.sourceTime ?? null, ...plan.sourceColumns.map((c) => columnValue(c, row))];
  return `[${values.map(toJson).join(',')}]`;
}

/** The partition a history row lands in (UTC day of its source time), for one request per day. */
export function historyDay(change: Change): string {
  return change.sourceTime?.slice(0, 10) ?? '1970-01-01';
}
