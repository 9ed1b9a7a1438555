// The direct load's fix-up (direct-load.ts has the argument): once every chunk is in the target, the
// current state of every key changed outside the load's snapshot is sent again through the outbox,
// read FOR SHARE, so it is applied after every chunk. The same sending makes up for a chunk that
// may have landed after another instance took the load over (an unfenced target: CrateDB).
import type { Change, TableInfo } from '../core/change.js';
import { backoffDelay, describe } from '../core/errors.js';
import { qualify, quoteLiteral } from '../core/identifiers.js';
import { OUTPUT_SETTINGS } from '../core/pg-session.js';
import { resendSql } from '../resend.js';
import type { DirectLoadContext } from './direct-load-context.js';
import { keyObjectText } from './copied-row.js';
import type { RegisteredTable } from '../capture/registry.js';
import { sleep } from '../core/sleep.js';
import { TAKE_XID } from '../capture/outbox-bounds.js';

const FIXUP_BATCH = 1000;
const LOCK_TIMEOUT_MS = 200;
/** How long a late chunk's rows may take to be sent again (sendChunkAgain). */
const MAKE_UP_MS = 60_000;

/** The key objects of every event of table $1 not visible in snapshot $2 (truncates aside). */
export function changedKeysSql(schema: string, keyColumns: readonly string[]): string {
  return `select distinct jsonb_build_object(${keyColumns.map((c) => `${quoteLiteral(c)}, o.data -> ${quoteLiteral(c)}`).join(', ')})::text as k
  from ${qualify(schema, 'outbox')} o
 where o.table_id = $1 and o.op <> 'T' and o.data is not null and not pg_visible_in_snapshot(o.xid, $2::pg_snapshot)`;
}

export function stopped(ctx: DirectLoadContext): boolean {
  return ctx.signal.aborted || !ctx.isLeader();
}

export async function waitApplied(ctx: DirectLoadContext, xid: string): Promise<boolean> {
  for (;;) {
    if (stopped(ctx)) return false;
    if (await ctx.applied(xid)) return true;
    await sleep(ctx.pollMs, ctx.signal);
  }
}

/**
 * Sends the current state of every key changed outside the snapshot again. Returns the xid of the
 * last transaction that wrote such events (null when there was nothing to send), or false when the
 * copier stopped on the way.
 */
export async function fixUp(ctx: DirectLoadContext, t: RegisteredTable, info: TableInfo, snapshot: string): Promise<string | null | false> {
  const cursor = await ctx.pool.connect();
  let broken = false;
  let open = false;
  try {
    // A cursor WITH HOLD keeps the key set once its transaction ends; each batch of keys is then
    // re-sent in a short transaction of its own. It outlives its transaction on a pooled
    // connection, so every way out of here closes it (the fix-up runs again after a stop).
    await cursor.query('begin');
    await cursor.query(`declare pg2crate_fixup no scroll cursor with hold for ${changedKeysSql(ctx.schema, t.keyColumns)}`, [t.id, snapshot]);
    await cursor.query('commit');
    open = true;
    let keysSeen = 0;
    const out = await sendAgain(ctx, info, async () => {
      const batch = (await cursor.query<{ k: string }>(`fetch ${FIXUP_BATCH} from pg2crate_fixup`)).rows.map((r) => r.k);
      keysSeen += batch.length;
      return batch;
    });
    if (out !== false && keysSeen > 0) ctx.logger.info({ table: `${t.sourceSchema}.${t.sourceTable}`, keys: keysSeen, gone: out.gone }, 'initial load: rows changed during the copy sent again');
    return out === false ? false : out.xid;
  } catch (err) {
    broken = true;
    throw err;
  } finally {
    if (open && !broken) broken = await cursor.query('close pg2crate_fixup').then(() => false, () => true);
    cursor.release(broken);
  }
}

/**
 * A chunk written into an unfenced target may have landed after another instance took the load
 * over, and after that instance's fix-up put newer states of its rows there. Its rows are sent again
 * now, read FOR SHARE (a row gone by now as a delete), so those events come after it. This runs
 * after this instance lost the stream, often while it stops: neither cuts it short, only a bound on
 * the wait for its deletes to be applied (which needs an instance that drains).
 */
export async function sendChunkAgain(ctx: DirectLoadContext, info: TableInfo, changes: Change[]): Promise<void> {
  const always = { ...ctx, isLeader: () => true, signal: AbortSignal.timeout(MAKE_UP_MS) };
  // A built row has no image: its key object stands in for it (copied-row.ts).
  const images = changes.map((c) => keyObjectText(info, c));
  // The key objects of the chunk's row images, as the fix-up reads them from the outbox.
  const keysOf = `select jsonb_build_object(${info.keyColumns.map((c) => `${quoteLiteral(c)}, e -> ${quoteLiteral(c)}`).join(', ')})::text as k
    from jsonb_array_elements($1::jsonb) e`;
  let i = 0;
  const out = await sendAgain(always, info, async () => {
    const slice = images.slice(i, (i += FIXUP_BATCH));
    return slice.length === 0 ? [] : (await ctx.pool.query<{ k: string }>(keysOf, [`[${slice.join(',')}]`])).rows.map((r) => r.k);
  });
  if (out === false) ctx.logger.warn({ table: `${info.sourceSchema}.${info.sourceTable}`, rows: images.length }, 'stopped before a late initial-load chunk was made up for; run `pg2crate verify --repair` for this table');
  else ctx.logger.info({ table: `${info.sourceSchema}.${info.sourceTable}`, rows: images.length }, 'initial load: a chunk written after another instance took over was sent again');
}

/**
 * Sends the keys that `next` yields (JSON objects with at least the key columns; an empty batch
 * ends it) again, batch by batch: an upsert read FOR SHARE for each row that exists, a delete for
 * the others. A delete written for a missing row cannot lock anything, so an insert of that key
 * that drew its event id earlier but committed after the check could be applied before the delete
 * in the same window; once that window is applied, those keys are read again and re-sent FOR SHARE
 * where a row exists by then. That read's snapshot is later than the applied window's: an insert it
 * sees gets an upsert after the delete; one it does not see was not in that window and lands later.
 */
async function sendAgain(ctx: DirectLoadContext, info: TableInfo, next: () => Promise<string[]>): Promise<{ xid: string | null; gone: number } | false> {
  const sql = resendSql(ctx.schema, info);
  let lastXid: string | null = null;
  const gone: string[] = [];
  for (;;) {
    if (stopped(ctx)) return false;
    const batch = await next();
    if (batch.length === 0) break;
    const out = await resend(ctx, sql, batch, true);
    if (out === false) return false;
    lastXid = out.xid;
    gone.push(...out.gone);
  }
  if (gone.length === 0 || lastXid === null) return { xid: lastXid, gone: 0 };
  if (!(await waitApplied(ctx, lastXid))) return false;
  for (let i = 0; i < gone.length; i += FIXUP_BATCH) {
    const out = await resend(ctx, sql, gone.slice(i, i + FIXUP_BATCH), false);
    if (out === false) return false;
    lastXid = out.xid;
  }
  return { xid: lastXid, gone: gone.length };
}

/** One batch of keys, in one transaction: an upsert for each row that exists, a delete for the others (with `deletes`). */
async function resend(ctx: DirectLoadContext, sql: ReturnType<typeof resendSql>, keys: string[], deletes: boolean): Promise<{ xid: string; gone: string[] } | false> {
  const param = `[${keys.join(',')}]`;
  for (let attempt = 0; ; attempt++) {
    if (stopped(ctx)) return false;
    const client = await ctx.pool.connect();
    let broken = false;
    try {
      await client.query(`begin; ${OUTPUT_SETTINGS}; set local lock_timeout = ${LOCK_TIMEOUT_MS}`);
      // the xid before the first outbox id (outbox-bounds.ts): with every row gone, a delete is the first write
      await client.query(TAKE_XID);
      await client.query(sql.upsert, [param]);
      const gone = deletes ? (await client.query<{ k: string }>(`${sql.delete} returning data::text as k`, [param])).rows.map((r) => r.k) : [];
      await client.query(sql.notify);
      const xid = (await client.query<{ xid: string }>('select pg_current_xact_id()::text as xid')).rows[0].xid;
      await client.query('commit');
      return { xid, gone };
    } catch (err) {
      broken = await client.query('rollback').then(() => false, () => true);
      const code = (err as { code?: string }).code;
      // Never make the application wait long or be the deadlock victim: give way and try again.
      if (code !== '55P03' && code !== '40P01') throw err;
      ctx.logger.debug({ err: describe(err), attempt }, 'initial load fix-up waited for a row lock; trying again');
      await sleep(backoffDelay(Math.min(attempt, 6), 20, 2000), ctx.signal);
    } finally {
      client.release(broken);
    }
  }
}
