// Re-sending rows: the one way a row's current state (or its absence) is written into the outbox
// again, for the replicator to apply through the normal stream, never by writing to the target
// here. verify --repair and dead-letter retries call resendRows; the direct load's fix-up and the
// partition watch write its statements (resendSql) inside transactions of their own, and guard
// their deletes themselves (the fix-up) or with recheckDeletes (the watch). It sits below them (it
// needs only capture/ and core/).
//
// Missing and different keys get an 'U' event with the source row's current image, written by
//   insert into outbox (table_id, op, data) select id, 'U', to_jsonb(t.*) from T t where <key in set> for share of t
// under the capture trigger's output settings (core/pg-session.ts), so the JSON is what the trigger would
// write. FOR SHARE orders the repair after any concurrent writer of the same row: a writer holds the
// row lock until it commits, so the repair waits, then reads the committed version, and its event id
// is drawn after the writer's; a later writer waits for the repair's transaction to end, and its
// events come after. So for each key the last event in commit order carries the last committed
// version, which is what the drainer's windows rely on. A row deleted meanwhile yields no event (its
// delete event already says the right thing).
//
// Extra keys get a 'D' event whose key object is the target's key cast through the source's column
// types (jsonb_populate_recordset), i.e. exactly what the trigger writes for a delete, unless the key
// exists in the source by then. No row lock can guard a row that does not exist: an insert of that key
// that has already drawn its event id but commits after the repair's check can land in the same window
// with a smaller id, and the delete would then win. So resendRows, once its deletes are committed,
// waits until every transaction open at that moment has ended (each one that drew an outbox id
// before a delete's is among them: its xid was assigned before its first write) and then sends the
// current state of the deleted keys again, FOR SHARE: a key whose row exists by then gets an 'U'
// after everything such a transaction wrote. A transaction that begins later draws its ids after the
// deletes'. The wait needs no replicator (dead-letter retries run from cron too); it lasts as long as
// the longest transaction open at the time, and says so in the log while it waits. A caller that
// writes deletes in its own transaction calls recheckDeletes once that transaction has committed.
//
// A shaped table (core/table-shape.ts) is repaired through its shape: the 'U' image is the capture's
// (columns left out or hashed), only rows passing its predicate are re-sent, and a key whose row
// no longer passes it gets a 'D', as the trigger would write.
import type pg from 'pg';
import type { TableInfo } from './core/change.js';
import { qualify, quoteIdent, quoteLiteral } from './core/identifiers.js';
import { withOutputSettings } from './core/pg-session.js';
import { keyInSetSql, keysJsonArray, type KeyJson } from './core/key-set.js';
import { wakeupChannel } from './capture/names.js';
import { TAKE_XID } from './capture/outbox-bounds.js';
import { rowFilterSql, rowImageSql, sourceTimeSql } from './capture/row-image.js';
import type { Logger } from './core/logger.js';
import { sleep } from './core/sleep.js';

const BATCH = 1000;

export interface ResendSql {
  upsert: string;
  delete: string;
  notify: string;
}

/** $1 a JSON array of key objects (both statements); `schema` is the tool's schema. */
export function resendSql(schema: string, table: TableInfo): ResendSql {
  const outbox = qualify(schema, 'outbox');
  const source = qualify(table.sourceSchema, table.sourceTable);
  const keyCond = keyInSetSql('t', table.keyColumns, source, '$1');
  const image = rowImageSql(schema, table, 't');
  const filter = rowFilterSql(table.shape);
  const keyObject = `jsonb_build_object(${table.keyColumns.map((c) => `${quoteLiteral(c)}, k.${quoteIdent(c)}`).join(', ')})`;
  const sameKey = table.keyColumns.map((c) => `t.${quoteIdent(c)} = k.${quoteIdent(c)}`).join(' and ');
  const at = sourceTimeSql(table.shape);
  return {
    upsert: `insert into ${outbox} (table_id, op, data${at.column})
select ${table.id}, 'U', ${image.expr}${at.value} from ${source} t${image.lateral} where ${keyCond} and ${filter} for share of t`,
    delete: `insert into ${outbox} (table_id, op, data${at.column})
select ${table.id}, 'D', ${keyObject}${at.value} from jsonb_populate_recordset(null::${source}, $1::jsonb) as k
 where not exists (select 1 from ${source} t where ${sameKey} and ${filter})`,
    // The triggers wake an idle drainer the same way; without it the repair waits for the next poll.
    notify: `select pg_notify(${quoteLiteral(wakeupChannel(schema))}, '') from ${qualify(schema, 'state')} where idle`,
  };
}

export interface ResendCounts {
  upserts: number;
  deletes: number;
}

/**
 * Re-sends the current rows of `upsertKeys` and deletes for the `deleteKeys` gone from the source,
 * one transaction per batch of keys; then the deleted keys' current rows once more, after the
 * transactions open at the deletes have ended (top of the file). Returns the events written.
 */
export async function resendRows(pool: pg.Pool, schema: string, table: TableInfo, upsertKeys: readonly KeyJson[], deleteKeys: readonly KeyJson[], logger?: Logger): Promise<ResendCounts> {
  const sql = resendSql(schema, table);
  const out: ResendCounts = { upserts: 0, deletes: 0 };
  // Each batch in a transaction of its own: the events written, and the rows the statement returns.
  const run = async (stmt: string, keys: readonly KeyJson[]): Promise<{ events: number; rows: { k: string }[] }> => {
    const done = { events: 0, rows: [] as { k: string }[] };
    for (let i = 0; i < keys.length; i += BATCH) {
      const res = await withOutputSettings(pool, async (c) => {
        // the xid before the first outbox id (outbox-bounds.ts): a delete event is this transaction's first write
        await c.query(TAKE_XID);
        const r = await c.query<{ k: string }>(stmt, [keysJsonArray(keys.slice(i, i + BATCH))]);
        await c.query(sql.notify);
        return r;
      }, true);
      done.events += res.rowCount ?? 0;
      done.rows.push(...res.rows);
    }
    return done;
  };
  out.upserts = (await run(sql.upsert, upsertKeys)).events;
  // the key objects of the deletes written: the keys to check again
  const deleted = (await run(`${sql.delete} returning data::text as k`, deleteKeys)).rows.map((r) => ({ json: r.k }));
  out.deletes = deleted.length;
  if (deleted.length > 0) out.upserts += await recheckDeletes(pool, schema, table, deleted, logger);
  return out;
}

/**
 * The check after deletes written by a caller's own transaction, once it has committed: waits until
 * every transaction open now has ended, then sends the current rows of `deleted` (the key objects
 * the deletes wrote) FOR SHARE (the top of the file). Returns the events written.
 */
export async function recheckDeletes(pool: pg.Pool, schema: string, table: TableInfo, deleted: readonly KeyJson[], logger?: Logger): Promise<number> {
  if (deleted.length === 0) return 0;
  await waitForOpenTransactions(pool, logger, deleted.length);
  return (await resendRows(pool, schema, table, deleted, [], logger)).upserts;
}

/**
 * Waits until every transaction open now has ended (committed or rolled back), polling
 * pg_xact_status, which any role may call. Logs every 10 s while it waits, with the oldest xid.
 */
async function waitForOpenTransactions(pool: pg.Pool, logger: Logger | undefined, keys: number): Promise<void> {
  const open = (await pool.query<{ x: string }>(`select x::text as x from pg_catalog.pg_snapshot_xip(pg_catalog.pg_current_snapshot()) x`)).rows.map((r) => r.x);
  let pending = open;
  const began = Date.now();
  let told = began;
  while (pending.length > 0) {
    pending = (await pool.query<{ x: string }>(
      `select x::text as x from unnest($1::xid8[]) x where pg_catalog.pg_xact_status(x) = 'in progress'`, [pending])).rows.map((r) => r.x);
    if (pending.length === 0) break;
    if (Date.now() - told >= 10_000) {
      told = Date.now();
      logger?.warn({ transactions: pending.length, oldestXid: pending[0], waitedMs: told - began, keys },
        'rows re-sent as deletes are checked again once the transactions open at the delete have ended; waiting for them');
    }
    await sleep(50);
  }
}
