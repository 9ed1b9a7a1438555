// Shaped targets in a Postgres target, the target side (issue 12): soft deletes (a delete, a
// re-insert, a truncate and a key change), metadata columns with the source transaction's time,
// and a history table that holds every change once, also after a crash replays a page; the
// point-in-time query of the README answers from it. A plain table beside them stays a plain copy.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { initialLoadsDone, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { recorder, SimulatedCrash } from '../helpers/sinks.js';

const bed = clusterForFile();
let srcUrl: string;
let dstUrl: string;
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running;

const ORDERS = {
  name: 'public.orders', deletes: 'soft', metadata: { sourceTime: '_src_at', appliedTime: '_applied_at', operation: '_op' }, history: true,
};

before(async () => {
  ({ srcUrl, dstUrl, src, dst } = await bed.databases());
  await src.query(`
    create table orders (id int primary key, status text, amount numeric(12,2));
    create table plain (id int primary key, v text);`);
  rep = await startReplicator(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl }, { tables: [ORDERS, 'public.plain'] }));
  // The (empty) initial loads first: a copy running later would write 'load' rows between the test's changes.
  await waitFor('the initial loads', () => initialLoadsDone(src));
});

bed.onClose(() => rep?.stop());

/** Runs the statements in one transaction and returns its now() as text (what the trigger writes). */
async function txn(sql: string): Promise<string> {
  const c = await src.connect();
  try {
    await c.query('begin');
    await c.query(sql);
    const at = (await c.query<{ t: string }>(`select now()::text as t`)).rows[0].t;
    await c.query('commit');
    return at;
  } finally {
    c.release();
  }
}

interface OrderRow { id: number; status: string | null; deleted: string | null; src: string | null; op: string; applied: string | null }

async function targetOrders(): Promise<Map<number, OrderRow>> {
  const res = await dst.query<OrderRow>(
    `select id, status, "_deleted_at"::text as deleted, "_src_at"::text as src, "_op" as op, "_applied_at"::text as applied from orders order by id`,
  );
  return new Map(res.rows.map((r) => [r.id, r]));
}

test('soft deletes: a delete keeps the row with its time, a re-insert clears it, truncate and key changes mark rows, metadata says when and what', async () => {
  const inserted = await txn(`insert into orders select g, 'new', g * 1.5 from generate_series(1, 5) g; insert into plain values (1, 'a'), (2, 'b')`);
  await waitCaughtUp(src);
  let rows = await targetOrders();
  assert.equal(rows.size, 5);
  for (const r of rows.values()) {
    assert.deepEqual([r.deleted, r.src, r.op], [null, inserted, 'insert']);
    assert.ok(r.applied !== null && Date.parse(r.applied) >= Date.parse(inserted), 'applied after it was made');
  }

  const deleted = await txn(`delete from orders where id = 2; delete from plain where id = 2`);
  await waitCaughtUp(src);
  rows = await targetOrders();
  assert.deepEqual([rows.get(2)?.status, rows.get(2)?.deleted, rows.get(2)?.src, rows.get(2)?.op], ['new', deleted, deleted, 'delete'], 'the deleted row stays, marked');
  assert.equal(rows.get(1)?.deleted, null);
  assert.deepEqual((await dst.query(`select id from plain order by id`)).rows, [{ id: 1 }], 'a table without shape deletes for real');
  const plainCols = (await dst.query(`select column_name from information_schema.columns where table_name = 'plain' order by ordinal_position`)).rows.map((r) => r.column_name);
  assert.deepEqual(plainCols, ['id', 'v'], 'and gets no added columns');

  const reinserted = await txn(`insert into orders values (2, 'again', 9)`);
  await waitCaughtUp(src);
  rows = await targetOrders();
  assert.deepEqual([rows.get(2)?.status, rows.get(2)?.deleted, rows.get(2)?.src, rows.get(2)?.op], ['again', null, reinserted, 'insert'], 'a re-insert brings the row back');

  const moved = await txn(`update orders set id = 30 where id = 3`);
  await waitCaughtUp(src);
  rows = await targetOrders();
  assert.deepEqual([rows.get(3)?.deleted, rows.get(3)?.op], [moved, 'delete'], 'the old key of a key change is marked deleted');
  assert.deepEqual([rows.get(30)?.status, rows.get(30)?.deleted, rows.get(30)?.op], ['new', null, 'update']);

  const truncated = await txn(`truncate orders; insert into orders values (4, 'after truncate', 1)`);
  await waitCaughtUp(src);
  rows = await targetOrders();
  assert.deepEqual([rows.get(4)?.status, rows.get(4)?.deleted, rows.get(4)?.op], ['after truncate', null, 'insert'], 'a row written after the truncate lives');
  for (const id of [1, 2, 5, 30]) assert.deepEqual([rows.get(id)?.deleted, rows.get(id)?.op], [truncated, 'truncate'], `row ${id} is marked by the truncate`);
  assert.equal(rows.get(3)?.deleted, moved, 'a row deleted before keeps its deletion time');
});

test('history: every change is one row, in event order, with its operation, time and image; the README query answers "as of T"', async () => {
  const tableId = (await src.query(`select id from pg2crate.tables where source_table = 'orders'`)).rows[0].id;
  await src.query(`update orders set status = 'paid' where id = 4`);
  const t1 = (await src.query<{ t: string }>(`select clock_timestamp()::text as t`)).rows[0].t;
  const asOfT1 = (await src.query(`select id, status from orders order by id`)).rows;
  await new Promise((r) => setTimeout(r, 20));
  await src.query(`update orders set status = 'shipped' where id = 4; insert into orders values (7, 'late', 2); delete from orders where id = 4`);
  await waitCaughtUp(src);

  const events = (await src.query(
    `select id::int8 as id, op, data, source_time::text as at from pg2crate.outbox where table_id = $1 order by id`, [tableId],
  )).rows;
  const names: Record<string, string> = { I: 'insert', U: 'update', D: 'delete', T: 'truncate', B: 'load' };
  const history = (await dst.query(
    `select "_event_id"::int8 as id, "_op" as op, "_src_at"::text as at, id as key, status from orders_history order by "_event_id"`,
  )).rows;
  assert.ok(events.length >= 15, `a sequence of changes, got ${events.length}`);
  assert.deepEqual(
    history.map((h) => [Number(h.id), h.op, h.at, h.key, h.status]),
    events.map((e) => [Number(e.id), names[e.op], e.at, e.data?.id ?? null, e.data?.status ?? null]),
    'the history holds exactly the changes, not coalesced',
  );
  // Each page coalesces, the history does not: two updates of id 4 in one transaction are both there.
  assert.deepEqual(history.filter((h) => h.key === 4).map((h) => h.status).slice(-4), ['after truncate', 'paid', 'shipped', null]);

  // README, "Shaping the target": every row as it was at time T (its last change up to T, unless
  // that was a delete, or a truncate came after it) …
  const asOf = await dst.query(
    `select id, status from (
       select distinct on (id) *
         from orders_history
        where "_src_at" <= $1 and "_op" <> 'truncate'
          and "_event_id" > coalesce((select max("_event_id") from orders_history where "_op" = 'truncate' and "_src_at" <= $1), 0)
        order by id, "_event_id" desc
     ) latest where "_op" <> 'delete' order by id`,
    [t1],
  );
  assert.deepEqual(asOf.rows, asOfT1);
  // … and one row: the latest of its changes and truncates up to T; a delete or truncate means "not there".
  const one = async (id: number) => (await dst.query(
    `select "_op", status from orders_history where (id = $2 or "_op" = 'truncate') and "_src_at" <= $1 order by "_event_id" desc limit 1`,
    [t1, id],
  )).rows[0];
  assert.deepEqual(await one(4), { _op: 'update', status: 'paid' });
  assert.deepEqual(await one(3), { _op: 'truncate', status: null });
});

test('a crash after a page was applied and before its checkpoint replays it without a second history row', async () => {
  // A replicator of its own, on pages of 5: it crashes right after the sink confirmed its 2nd page.
  await rep.stop();
  await src.query(`insert into orders select g, 'bulk', g from generate_series(100, 119) g`);
  await src.query(`update orders set status = 'bulk 2' where id between 100 and 119`);
  const config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_PAGE_SIZE: '5' }, { tables: [ORDERS, 'public.plain'] });
  const crashing = recorder({ after(call) { if (call.n === 2) throw new SimulatedCrash('crash after applying page 2'); } });
  const first = await startReplicator(config, testLogger(), { wrapSink: crashing.wrapSink });
  await assert.rejects(first.done, SimulatedCrash);
  await first.stop();
  const crashed = crashing.sink.calls[1].ids;
  const replaying = recorder();
  rep = await startReplicator(config, testLogger(), { wrapSink: replaying.wrapSink });
  await waitCaughtUp(src);
  assert.deepEqual(replaying.sink.calls[0].ids.slice(0, crashed.length), crashed, 'the crashed page is applied again');
  const dup = await dst.query(`select "_event_id", count(*) from orders_history group by 1 having count(*) > 1`);
  assert.deepEqual(dup.rows, []);
  const events = Number((await src.query(`select count(*) from pg2crate.outbox o join pg2crate.tables t on t.id = o.table_id where t.source_table = 'orders'`)).rows[0].count);
  assert.equal(Number((await dst.query(`select count(*) from orders_history`)).rows[0].count), events, 'one history row per event');
  assert.equal(Number((await dst.query(`select count(*) from orders where status = 'bulk 2' and "_deleted_at" is null`)).rows[0].count), 20);
});
