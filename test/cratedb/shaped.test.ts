// Shaped targets (issue 12) in a real CrateDB, the same scenarios as the Postgres-target suite:
// soft deletes (delete, re-insert, truncate, key change) with metadata columns, a history table
// partitioned by day that holds every change once (also after a crash replays a page), an excluded
// column that never leaves the source, a hashed column, rows moving in and out of a row filter, and
// the initial load and verify honouring the filters.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Config } from '../../src/core/config.js';
import { qualify } from '../../src/core/identifiers.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';
import { createVerifyTarget, runVerify } from '../../src/verify/run-verify.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { crateClient, endCrateSuite, refresh, skipWithoutCrate, testSchema } from '../helpers/cratedb.js';
import { initialLoadsDone, makeConfig, pool, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { recorder, SimulatedCrash } from '../helpers/sinks.js';

const SALT = 'crate-pepper';
const ORDERS = {
  name: 'public.orders', deletes: 'soft', metadata: { sourceTime: '_src_at', appliedTime: '_applied_at', operation: '_op' }, history: true,
};
const PEOPLE = { name: 'public.people', excludeColumns: ['ssn'], hashColumns: ['email'], where: 'tenant_id = 42' };

describe('shaped targets in a real CrateDB', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('shaped');
  let cluster: Cluster;
  let srcUrl: string;
  let src: pg.Pool;
  let crate: CrateClient;
  let config: Config;
  let rep: Running;
  const q = (table: string) => qualify(schema, table);
  const env = () => ({ DATABASE_URL: srcUrl, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_HASH_SALT: SALT });

  before(async () => {
    cluster = await startCluster();
    srcUrl = await cluster.createDatabase('src');
    src = pool(srcUrl, 6);
    crate = crateClient();
    await src.query(`
      create table orders (id int primary key, status text, amount numeric(12,2));
      create table people (id int primary key, tenant_id int not null, name text, email text, ssn text);
      insert into people select g, case when g % 3 = 0 then 7 else 42 end, 'p' || g, 'p' || g || '@example.com', 'ssn-' || g from generate_series(1, 30) g;`);
    config = makeConfig(env(), { tables: [ORDERS, PEOPLE] });
    rep = await startReplicator(config);
    await waitFor('the initial loads', () => initialLoadsDone(src));
    await waitCaughtUp(src);
  });

  after(async () => {
    await endCrateSuite({ replicators: [rep], pools: [src], cluster, crate, schemas: [schema] });
  });

  /** Runs the statements in one transaction; returns its now() in epoch milliseconds (CrateDB's resolution). */
  async function txn(sql: string): Promise<number> {
    const c = await src.connect();
    try {
      await c.query('begin');
      await c.query(sql);
      const at = (await c.query<{ ms: string }>(`select floor(extract(epoch from now()) * 1000)::int8::text as ms`)).rows[0].ms;
      await c.query('commit');
      return Number(at);
    } finally {
      c.release();
    }
  }

  async function orders(): Promise<Map<number, { status: string | null; deleted: number | null; src: number | null; op: string; applied: number | null }>> {
    await refresh(crate, schema, 'orders');
    const res = await crate.sql(`SELECT id, status, "_deleted_at", "_src_at", "_op", "_applied_at" FROM ${q('orders')}`);
    return new Map(res.rows.map((r) => [Number(r[0]), { status: r[1] as string | null, deleted: r[2] as number | null, src: r[3] as number | null, op: String(r[4]), applied: r[5] as number | null }]));
  }

  test('soft deletes: a delete keeps the row with its time, a re-insert clears it, truncate and key changes mark rows; metadata says when and what', async () => {
    const inserted = await txn(`insert into orders select g, 'new', g * 1.5 from generate_series(1, 5) g`);
    await waitCaughtUp(src);
    let rows = await orders();
    assert.equal(rows.size, 5);
    for (const r of rows.values()) {
      assert.deepEqual([r.deleted, r.src, r.op], [null, inserted, 'insert']);
      assert.ok(r.applied !== null && r.applied >= inserted - 1000, 'applied time from CrateDB\'s clock');
    }
    const deleted = await txn(`delete from orders where id = 2`);
    await waitCaughtUp(src);
    rows = await orders();
    assert.deepEqual([rows.get(2)?.status, rows.get(2)?.deleted, rows.get(2)?.src, rows.get(2)?.op], ['new', deleted, deleted, 'delete']);
    const reinserted = await txn(`insert into orders values (2, 'again', 9)`);
    await waitCaughtUp(src);
    rows = await orders();
    assert.deepEqual([rows.get(2)?.status, rows.get(2)?.deleted, rows.get(2)?.src, rows.get(2)?.op], ['again', null, reinserted, 'insert']);
    const moved = await txn(`update orders set id = 30 where id = 3`);
    await waitCaughtUp(src);
    rows = await orders();
    assert.deepEqual([rows.get(3)?.deleted, rows.get(3)?.op], [moved, 'delete']);
    assert.deepEqual([rows.get(30)?.status, rows.get(30)?.deleted], ['new', null]);
    // A key deleted right after its insert, in another page: the mark is by key and sees the unrefreshed row.
    await src.query(`insert into orders values (40, 'short', 1)`);
    await waitCaughtUp(src);
    const short = await txn(`delete from orders where id = 40`);
    await waitCaughtUp(src);
    const truncated = await txn(`truncate orders; insert into orders values (4, 'after truncate', 1)`);
    await waitCaughtUp(src);
    rows = await orders();
    assert.deepEqual([rows.get(40)?.deleted, rows.get(40)?.op], [short, 'delete']);
    assert.deepEqual([rows.get(4)?.status, rows.get(4)?.deleted, rows.get(4)?.op], ['after truncate', null, 'insert']);
    for (const id of [1, 2, 5, 30]) assert.deepEqual([rows.get(id)?.deleted, rows.get(id)?.op], [truncated, 'truncate'], `row ${id} is marked by the truncate`);
    assert.equal(rows.get(3)?.deleted, moved, 'a row deleted before keeps its time');
  });

  test('history: every change once, in event order, partitioned by day; a crash replay adds nothing', async () => {
    await src.query(`update orders set status = 'paid' where id = 4; update orders set status = 'shipped' where id = 4; delete from orders where id = 4`);
    await waitCaughtUp(src);
    // A replicator of its own on pages of 5 crashes right after its 2nd page was applied.
    await rep.stop();
    await src.query(`insert into orders select g, 'bulk', g from generate_series(100, 119) g; update orders set status = 'bulk 2' where id >= 100`);
    const small = makeConfig({ ...env(), PG2CRATE_PAGE_SIZE: '5' }, { tables: [ORDERS, PEOPLE] });
    const crashing = recorder({ after(call) { if (call.n === 2) throw new SimulatedCrash('crash after page 2'); } });
    const first = await startReplicator(small, testLogger(), { wrapSink: crashing.wrapSink });
    await assert.rejects(first.done, SimulatedCrash);
    await first.stop();
    const replaying = recorder();
    rep = await startReplicator(small, testLogger(), { wrapSink: replaying.wrapSink });
    await waitCaughtUp(src);
    assert.deepEqual(replaying.sink.calls[0].ids.slice(0, crashing.sink.calls[1].ids.length), crashing.sink.calls[1].ids, 'the crashed page is applied again');

    const events = (await src.query(
      `select o.id::int8 as id, o.op, o.data, floor(extract(epoch from o.source_time) * 1000)::int8 as at
         from pg2crate.outbox o join pg2crate.tables t on t.id = o.table_id where t.source_table = 'orders' order by o.id`,
    )).rows;
    const names: Record<string, string> = { I: 'insert', U: 'update', D: 'delete', T: 'truncate', B: 'load' };
    await refresh(crate, schema, 'orders_history');
    const history = (await crate.sql(`SELECT "_event_id", "_op", "_src_at", id, status FROM ${q('orders_history')} ORDER BY "_event_id" LIMIT 1000`)).rows;
    assert.ok(events.length > 40);
    assert.deepEqual(
      history.map((h) => [Number(h[0]), h[1], h[2], h[3], h[4]]),
      events.map((e) => [Number(e.id), names[e.op], Number(e.at), e.data?.id ?? null, e.data?.status ?? null]),
      'exactly the changes, none twice, not coalesced',
    );
    // Changes of three days in one page (written as the capture would, with older source times) land in three partitions.
    const before = Number((await crate.sql(`SELECT count(*) FROM information_schema.table_partitions WHERE table_schema = ? AND table_name = 'orders_history'`, [schema])).rows[0][0]);
    await src.query(
      `insert into pg2crate.outbox (table_id, op, data, source_time)
       select t.id, 'U', jsonb_build_object('id', 500 + d, 'status', 'day ' || d, 'amount', null), timestamptz '2020-03-01 12:00:00+00' + d * interval '1 day'
         from pg2crate.tables t, generate_series(0, 2) d where t.source_table = 'orders'`,
    );
    await waitCaughtUp(src);
    await refresh(crate, schema, 'orders_history');
    const days = await crate.sql(`SELECT "_day", status FROM ${q('orders_history')} WHERE id >= 500 ORDER BY "_event_id"`);
    assert.deepEqual(days.rows, [0, 1, 2].map((d) => [Date.UTC(2020, 2, 1 + d), `day ${d}`]));
    const parts = await crate.sql(`SELECT count(*) FROM information_schema.table_partitions WHERE table_schema = ? AND table_name = 'orders_history'`, [schema]);
    assert.equal(Number(parts.rows[0][0]), before + 3, 'one partition per day');
    // it refreshes as every created table does (PG2CRATE_CRATE_REFRESH_MS; its partitions inherit it)
    const refreshMs = await crate.sql(`SELECT settings['refresh_interval'] FROM information_schema.tables WHERE table_schema = ? AND table_name = 'orders_history'`, [schema]);
    assert.deepEqual(refreshMs.rows, [[500]]);
    await src.query(`insert into orders select 500 + d, 'day ' || d, null from generate_series(0, 2) d`); // the source agrees again
    await waitCaughtUp(src);

    // README, "Shaping the target", the CrateDB form: the table as of T from the history; T = now is the source as it is.
    await refresh(crate, schema, 'orders_history');
    const now = new Date().toISOString();
    const asOf = await crate.sql(
      `SELECT id, status FROM (
         SELECT *, row_number() OVER (PARTITION BY id ORDER BY "_event_id" DESC) AS rn FROM ${q('orders_history')}
          WHERE "_src_at" <= ? AND "_op" <> 'truncate'
            AND "_event_id" > coalesce((SELECT max("_event_id") FROM ${q('orders_history')} WHERE "_op" = 'truncate' AND "_src_at" <= ?), 0)
       ) latest WHERE rn = 1 AND "_op" <> 'delete' ORDER BY id LIMIT 1000`,
      [now, now],
    );
    assert.deepEqual(asOf.rows, (await src.query(`select id, status from orders order by id`)).rows.map((r) => [r.id, r.status]));
    const ddl = await crate.sql(`SELECT partitioned_by FROM information_schema.tables WHERE table_schema = ? AND table_name = 'orders_history'`, [schema]);
    assert.deepEqual(ddl.rows[0][0], ['_day']);
  });

  test('an excluded column never leaves the source, a hashed one arrives hashed, and rows move in and out of the filter', async () => {
    const cols = await crate.sql('SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position', [schema, 'people']);
    assert.deepEqual(cols.rows.map((r) => r[0]), ['id', 'tenant_id', 'name', 'email']);
    assert.equal(cols.rows[3][1], 'text');
    await src.query(`insert into people values (100, 42, 'in', 'in@example.com', 'x'), (101, 7, 'out', 'out@example.com', 'y')`);
    await src.query(`update people set tenant_id = 7 where id in (2, 4); update people set tenant_id = 42 where id in (3, 6)`);
    await src.query(`update people set id = id + 1000 where id in (8, 9); delete from people where id in (10, 12); update people set email = null where id = 11`);
    await waitCaughtUp(src);
    const want = (await src.query(
      `select id, name, encode(sha256(convert_to($1 || email, 'UTF8')), 'hex') as email from people where tenant_id = 42 order by id`, [SALT],
    )).rows.map((r) => [r.id, r.name, r.email]);
    await refresh(crate, schema, 'people');
    const have = (await crate.sql(`SELECT id, name, email FROM ${q('people')} ORDER BY id LIMIT 1000`)).rows;
    assert.deepEqual(have, want);
    assert.ok(have.some((r) => r[0] === 3) && !have.some((r) => r[0] === 2) && !have.some((r) => r[0] === 101) && have.some((r) => r[0] === 1008));
    assert.equal(have.find((r) => r[0] === 100)![2], createHash('sha256').update(`${SALT}in@example.com`).digest('hex'));
    const leaks = await src.query(
      `select count(*)::int as n from pg2crate.outbox o join pg2crate.tables t on t.id = o.table_id
        where t.source_table = 'people' and (o.data::jsonb ? 'ssn' or o.data::text like '%@example.com%')`,
    );
    assert.equal(leaks.rows[0].n, 0, 'no excluded or raw hashed value in the outbox');
  });

  test('verify compares the filtered, hashed copy and the live rows of a soft-deleting table, and --repair removes a row outside the filter', async () => {
    const run = async (repair: boolean) => {
      const target = createVerifyTarget(config, testLogger());
      try {
        return await runVerify({ config, pool: src, target, tables: [{ schema: 'public', table: 'people' }, { schema: 'public', table: 'orders' }], repair, logger: testLogger(), rangeRows: 7, catchUpTimeoutMs: 20_000 });
      } finally {
        await target.close();
      }
    };
    const clean = await run(false);
    assert.equal(clean.equal, true, JSON.stringify(clean.reports.map((r) => [r.table, r.sourceRows, r.targetRows, r.differences])));
    assert.ok(clean.reports.find((r) => r.table === 'public.orders')!.targetRows < Number((await crate.sql(`SELECT count(*) FROM ${q('orders')}`)).rows[0][0]), 'deleted rows are kept but not compared');
    await crate.sql(`INSERT INTO ${q('people')} (id, tenant_id, name) VALUES (101, 7, 'stray')`);
    await crate.sql(`UPDATE ${q('people')} SET email = 'raw@example.com' WHERE id = 100`);
    await refresh(crate, schema, 'people');
    const found = await run(false);
    const people = found.reports.find((r) => r.table === 'public.people')!;
    assert.deepEqual([people.differences.extra.keys, people.differences.different.keys], [['{"id": 101}'], ['{"id": 100}']]);
    const repaired = await run(true);
    assert.equal(repaired.equal, true, JSON.stringify(repaired.reports.map((r) => r.repair)));
  });
});
