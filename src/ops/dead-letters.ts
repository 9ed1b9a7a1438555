// Dead letters: changes the target refused, kept with the target's message. `retry` sends the
// source's *current* state of those keys through the stream again (an upsert of the row, or a
// delete when the row is gone), never the parked image: that may be older than what the target
// holds by now, and replaying it would move the key backwards. Then the letters are removed.
import type pg from 'pg';
import type { Logger } from '../core/logger.js';
import type { SourceCatalog, TableInfo } from '../core/change.js';
import { keyOf, parseRow } from '../core/change.js';
import { TableError } from '../core/errors.js';
import { displayName, qualify } from '../core/identifiers.js';
import { resendRows } from '../resend.js';

export interface DeadLetterRow {
  id: number;
  eventId: number;
  table: string;
  tableId: number;
  op: string;
  code: string | null;
  error: string;
  attempts: number;
  createdAt: string;
}

export async function listDeadLetters(db: pg.Pool, schema: string, stream: string, limit = 1000): Promise<DeadLetterRow[]> {
  const res = await db.query(
    `select d.id::int8 as id, d.event_id::text as event_id, d.table_id, coalesce(t.source_schema || '.' || t.source_table, '(table id ' || d.table_id || ')') as name,
            d.op, d.error_code, d.error, d.attempts, d.created_at
       from ${qualify(schema, 'dead_letters')} d left join ${qualify(schema, 'tables')} t on t.id = d.table_id
      where d.stream = $1 order by d.id limit $2`,
    [stream, limit],
  );
  return res.rows.map((r) => ({
    id: Number(r.id), eventId: Number(r.event_id), table: r.name, tableId: r.table_id, op: r.op, code: r.error_code, error: r.error,
    attempts: r.attempts, createdAt: new Date(r.created_at).toISOString(),
  }));
}

function idFilter(ids: number[] | 'all'): { sql: string; params: unknown[] } {
  return ids === 'all' ? { sql: 'true', params: [] } : { sql: 'd.id = any($2::int8[])', params: [ids] };
}

export async function discardDeadLetters(db: pg.Pool, schema: string, stream: string, ids: number[] | 'all'): Promise<number> {
  const f = idFilter(ids);
  const res = await db.query(`delete from ${qualify(schema, 'dead_letters')} d where d.stream = $1 and ${f.sql}`, [stream, ...f.params]);
  return res.rowCount ?? 0;
}

/** Re-sends the current source state of the letters' keys, then removes the letters. */
export async function retryDeadLetters(db: pg.Pool, schema: string, stream: string, catalog: SourceCatalog, ids: number[] | 'all', logger?: Logger): Promise<number> {
  const f = idFilter(ids);
  const res = await db.query<{ id: string; table_id: number; data: string | null }>(
    `select d.id::text as id, d.table_id, d.data::text as data from ${qualify(schema, 'dead_letters')} d where d.stream = $1 and ${f.sql} order by d.id`,
    [stream, ...f.params],
  );
  const byTable = new Map<number, { ids: number[]; keys: Map<string, string> }>();
  /**
   * letters that name no key of their table: a truncate (parked with its table's other changes), or a
   * row written under other key names
   */
  const unkeyed = new Map<number, { table: TableInfo; ids: number[] }>();
  for (const r of res.rows) {
    let e = byTable.get(r.table_id);
    if (!e) byTable.set(r.table_id, (e = { ids: [], keys: new Map() }));
    e.ids.push(Number(r.id));
    const table = await catalog.describe(r.table_id);
    const row = r.data === null ? null : parseRow(r.data);
    if (row === null || table.keyColumns.some((k) => row[k] === undefined)) {
      // Sent by a key it does not have, it would become a change of no row: nothing is retried.
      const u = unkeyed.get(table.id) ?? { table, ids: [] };
      unkeyed.set(table.id, u);
      u.ids.push(Number(r.id));
      continue;
    }
    const key: Record<string, unknown> = {};
    for (const k of table.keyColumns) key[k] = row[k];
    // the key values' exact text: LosslessNumber serialises as its digits
    e.keys.set(keyOf(row, table.keyColumns), JSON.stringify(key, (_k, v) => (typeof v === 'object' && v !== null && 'isLosslessNumber' in v ? `${v}` : v)));
  }
  if (unkeyed.size > 0) {
    const { table, ids } = [...unkeyed.values()][0];
    const name = displayName(table.sourceSchema, table.sourceTable);
    throw new TableError(
      `dead letters ${ids.join(', ')} of ${name} (key ${table.keyColumns.join(', ')}) name no key of it (a TRUNCATE, or a row written under other key names after a key column was renamed or the primary key changed), so they cannot be retried by key; nothing was retried. ` +
        `Run \`pg2crate verify --repair ${name}\` (it sends every row that differs), then \`pg2crate dead-letters discard ${ids.join(' ')}\`, then retry the others`,
    );
  }
  let retried = 0;
  for (const [tableId, e] of byTable) {
    const table = await catalog.describe(tableId);
    const keys = [...e.keys].map(([text, json]) => ({ text, json }));
    await resendRows(db, schema, table, keys, keys, logger);
    await db.query(`delete from ${qualify(schema, 'dead_letters')} where id = any($1::int8[])`, [e.ids]);
    retried += e.ids.length;
  }
  return retried;
}
