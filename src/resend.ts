// Re-sending rows: the one way a row's current state (or its absence) is written into the outbox
// again, for the replicator to apply through the normal stream, never by writing to the target
// here. verify --repair, the direct load's fix-up, dead-letter retries and the partition watch all
// call it; it sits below them (it needs only capture/ and core/).
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
// with a smaller id, and the delete would then win. verify --repair re-checks the repaired keys after
// the replicator caught up and repairs what is still off (an 'U' for such a key is safe), so that
// race costs a round, not a row.
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
 * one transaction per batch of keys. Returns the events written.
 */
export async function resendRows(pool: pg.Pool, schema: string, table: TableInfo, upsertKeys: readonly KeyJson[], deleteKeys: readonly KeyJson[]): Promise<ResendCounts> {
  const sql = resendSql(schema, table);
  const out: ResendCounts = { upserts: 0, deletes: 0 };
  const run = async (stmt: string, keys: readonly KeyJson[]): Promise<number> => {
    let n = 0;
    for (let i = 0; i < keys.length; i += BATCH) {
      n += await withOutputSettings(pool, async (c) => {
        // the xid before the first outbox id (outbox-bounds.ts): a delete event is this transaction's first write
        await c.query(TAKE_XID);
        const res = await c.query(stmt, [keysJsonArray(keys.slice(i, i + BATCH))]);
        await c.query(sql.notify);
        return res.rowCount ?? 0;
      }, true);
    }
    return n;
  };
  out.upserts = await run(sql.upsert, upsertKeys);
  out.deletes = await run(sql.delete, deleteKeys);
  return out;
}
