// How many rows an initial load will copy, for its progress (rows of the estimate, ETA). Read once
// when a copy starts; never exact, never needed for correctness.
import type pg from 'pg';
import type { RegisteredTable } from '../capture/registry.js';
import { rowFilterSql } from '../capture/row-image.js';
import { qualify } from '../core/identifiers.js';

/**
 * The planner's estimate of the rows the load reads (the table, through its row filter).
 *
 * pg_class.reltuples alone is 0 or -1 for a table never vacuumed nor analysed, which is the common
 * case for a table filled just before it was captured (autovacuum has not come by yet). The
 * planner does better at no cost: it scales reltuples to the table's current size in pages, and for
 * a table never analysed it takes the current pages times the rows that fit a page at the columns'
 * widths. Good enough for a progress display: it is off by the table's free space and dead rows
 * (typically well under 2×), it grows with the table as the planner sees it, it adds up the
 * partitions of a partitioned table, and the display caps at 100% and drops the ETA once the copy
 * passes it. The planner assumes at least 10 pages for a small table never analysed (about 1,400
 * narrow rows), an overestimate only where the copy takes a moment anyway. An exact count(*) would
 * read the whole table once more before the copy reads it.
 */
export async function estimateRows(db: pg.Pool, t: RegisteredTable): Promise<number> {
  const res = await db.query<{ 'QUERY PLAN': [{ Plan: { 'Plan Rows': number } }] }>(
    `explain (format json) select 1 from ${qualify(t.sourceSchema, t.sourceTable)} t where ${rowFilterSql(t.shape)}`,
  );
  return Math.max(0, Math.round(res.rows[0]['QUERY PLAN'][0].Plan['Plan Rows']));
}

/** Seconds left at this rate; null when unknown (no estimate or rate yet, or the copy passed the estimate). */
export function etaSeconds(rowsCopied: number, rowsEstimate: number | null, rowsPerSecond: number): number | null {
  if (!rowsEstimate || rowsPerSecond <= 0 || rowsCopied > rowsEstimate) return null;
  return Math.round((rowsEstimate - rowsCopied) / rowsPerSecond);
}
