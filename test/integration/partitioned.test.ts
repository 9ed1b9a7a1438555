// Partitioned source tables in trigger mode: every write is captured whichever name it goes
// through (the parent, a partition, a sub-partition), partitions created or attached later are
// captured from their first row, a TRUNCATE of one partition removes only its rows, and a detached
// or dropped partition's rows stay in the target (README: partitioned tables).
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { PARTITIONED_TABLE, watchReachedAll } from '../helpers/partitions.js';
import { needsServer } from '../helpers/server-version.js';
import { assertSameRows, makeConfig, startReplicator, tableRows, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running;
const WATCH_MS = 1500;

/** The target equals the source, once the replicator caught up. */
async function same(): Promise<number> {
  await waitCaughtUp(src);
  return assertSameRows(src, dst, 'public.m', 'public.m', ['id']);
}


before(async () => {
  let srcUrl: string, dstUrl: string;
  ({ srcUrl, dstUrl, src, dst } = await bed.databases(6));
  await src.query(`
    ${PARTITIONED_TABLE}
    insert into public.m select g, 'seed ' || g from generate_series(0, 199, 3) g;`);
  rep = await startReplicator(makeConfig({
    DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.m', PG2CRATE_PARTITION_WATCH_MS: String(WATCH_MS),
  }));
  await same();
});

bed.onClose(() => rep?.stop());

test('writes through the parent, a partition, a sub-partition and the partition above it are all captured, rows moving between partitions too', async () => {
  await src.query(`insert into public.m values (1, 'parent'), (101, 'parent'), (151, 'parent')`);
  await src.query(`insert into public.m1 values (2, 'partition')`);
  await src.query(`insert into public.m2a values (104, 'sub-partition')`);
  await src.query(`insert into public.m2 values (152, 'partition above')`);
  await src.query(`update public.m1 set v = 'updated through m1' where id < 50`);
  await src.query(`update public.m2a set id = id + 3 where id = 104`); // a key change inside one partition
  await src.query(`update public.m set id = id + 120 where id in (1, 2)`); // rows move from m1 into m2a
  await src.query(`delete from public.m2b where id = 151`);
  assert.ok(await same() > 60);
});

test('MERGE through a partition and through the parent is captured: its updates, deletes and inserts', { skip: needsServer(15, 'MERGE') }, async () => {
  await src.query(`merge into public.m1 t using (values (3, 'merged'), (4, 'merged')) s(id, v) on t.id = s.id
                   when matched then update set v = s.v when not matched then insert values (s.id, s.v)`);
  await src.query(`merge into public.m t using (values (6, 'gone'), (9, 'kept'), (110, 'new')) s(id, v) on t.id = s.id
                   when matched and s.v = 'gone' then delete when matched then update set v = s.v when not matched then insert values (s.id, s.v)`);
  assert.ok(await same() > 60);
});

test('MERGE … WHEN NOT MATCHED BY SOURCE deletes are captured', { skip: needsServer(17, 'WHEN NOT MATCHED BY SOURCE') }, async () => {
  await src.query(`merge into public.m2b t using (values (153, 'only this one')) s(id, v) on t.id = s.id
                   when matched then update set v = s.v when not matched then insert values (s.id, s.v) when not matched by source then delete`);
  assert.ok(await same() > 30);
});

test('a TRUNCATE of one partition removes only its rows, of a sub-partitioned partition only its subtree, of the parent everything', async () => {
  await src.query(`truncate public.m1`);
  const n = await same();
  assert.ok(n > 0, 'the other partitions keep their rows');
  await src.query(`begin; insert into public.m1 values (5, 'after the truncate'); truncate public.m2; insert into public.m2b values (160, 'x'); commit`);
  assert.equal(await same(), 2);
  await src.query(`truncate public.m2a, public.m2b`);
  assert.equal(await same(), 1);
  await src.query(`insert into public.m select g, 'again' from generate_series(0, 199, 7) g`);
  await same();
  await src.query(`truncate public.m`);
  assert.equal(await same(), 0);
  await src.query(`insert into public.m select g, 'refilled' from generate_series(0, 199, 5) g`);
  await same();
});

test('a TRUNCATE of one partition in a REPEATABLE READ or SERIALIZABLE transaction is refused, saying why and what to do', async () => {
  const a = await src.connect();
  try {
    for (const level of ['repeatable read', 'serializable']) {
      await a.query(`begin isolation level ${level}`);
      await a.query('select 1'); // the transaction's snapshot
      // committed after that snapshot: the truncate would remove it, and the capture could not see it
      await src.query(`insert into public.m1 values (7, 'after the snapshot') on conflict (id) do update set v = excluded.v`);
      await assert.rejects(a.query('truncate public.m1'), (err: { code?: string; message: string; hint?: string }) => {
        assert.equal(err.code, '55000');
        assert.match(err.message, new RegExp(`TRUNCATE of partition m1 in a ${level.toUpperCase()} transaction is refused`));
        assert.match(err.hint ?? '', /READ COMMITTED/);
        return true;
      });
      await a.query('rollback');
    }
  } finally {
    a.release();
  }
  assert.equal((await src.query(`select count(*)::int as n from public.m1 where id = 7`)).rows[0].n, 1);
  await same();
});

test('an application role with no grant on the pg2crate schema writes and truncates partitions, and both are captured', async () => {
  await src.query(`create role app; grant usage on schema public to app;
    grant select, insert, update, delete, truncate on public.m, public.m1, public.m2, public.m2a, public.m2b to app`);
  const c = await src.connect();
  try {
    await c.query(`begin; set local role app; insert into public.m1 values (98, 'by the app'), (99, 'by the app'); insert into public.m2b values (198, 'by the app'); commit`);
    await same();
    await c.query(`begin; set local role app; truncate public.m1; commit`);
  } finally {
    c.release();
  }
  await same();
  const outboxDenied = await src.query(`select has_table_privilege('app', 'pg2crate.truncating', 'INSERT') as ins, has_schema_privilege('app', 'pg2crate', 'USAGE') as usage`);
  assert.deepEqual(outboxDenied.rows[0], { ins: false, usage: false });
});

test('a partition created later is captured from its first row: written, changed, moved and truncated through its own name before the watch reached it', async () => {
  // In the transaction that creates it, and right after, before the watch gives it its triggers.
  await src.query(`begin;
    create table public.m3 partition of public.m for values from (200) to (300);
    insert into public.m3 values (200, 'in the creating transaction');
    commit`);
  await src.query(`insert into public.m3 select g, 'own name' from generate_series(201, 230) g`);
  await src.query(`update public.m3 set v = 'updated through m3' where id < 210`);
  await src.query(`update public.m3 set id = 500 - id where id in (220, 280)`); // 220 → 280: a key change inside the partition
  await src.query(`delete from public.m3 where id = 225`);
  await src.query(`insert into public.m values (240, 'through the parent')`);
  const before = await src.query<{ n: number }>(`select count(*)::int as n from pg2crate.partition_writes`);
  assert.ok(before.rows[0].n > 0, 'the writes above must have happened before the watch reached the partition');
  await watchReachedAll(src);
  await same();
  // Now with its triggers: writes through its name are captured directly.
  await src.query(`update public.m3 set v = 'captured directly' where id = 201`);
  await same();

  // A TRUNCATE of a new partition before the watch reached it.
  await src.query(`create table public.m4 partition of public.m for values from (300) to (400)`);
  await src.query(`insert into public.m4 select g, 'soon gone' from generate_series(300, 320) g`);
  await src.query(`truncate public.m4`);
  await src.query(`insert into public.m4 values (399, 'stays')`);
  await watchReachedAll(src);
  await same();
});

test('a sub-partitioned partition created later is captured through its sub-partitions', async () => {
  await src.query(`
    create table public.m5 partition of public.m for values from (400) to (600) partition by range (id);
    create table public.m5a partition of public.m5 for values from (400) to (500);
    insert into public.m5a values (401, 'sub-partition of a new partition');
    create table public.m5b partition of public.m5 for values from (500) to (600)`);
  await src.query(`insert into public.m5b values (501, 'later sub-partition')`);
  await watchReachedAll(src);
  await same();
  await src.query(`update public.m5a set v = 'after the watch' where id = 401`);
  await src.query(`truncate public.m5b`);
  await same();
  // A sub-partition added to a partition the watch had reached already.
  await src.query(`alter table public.m5 detach partition public.m5b; drop table public.m5b;
    create table public.m5c partition of public.m5 for values from (500) to (600)`);
  await src.query(`insert into public.m5c values (502, 'later sub-partition of a captured partition'), (503, 'gone soon')`);
  await src.query(`delete from public.m5c where id = 503`);
  await watchReachedAll(src);
  await src.query(`update public.m5c set v = 'captured directly' where id = 502`);
  await same();
});

test('a table attached with rows has them copied; a detached or dropped partition keeps its rows in the target, and writes to the detached table are not captured', async () => {
  await src.query(`create table public.m6 (id integer primary key, v text not null)`);
  await src.query(`insert into public.m6 select g, 'came with the attach' from generate_series(600, 650) g`);
  await src.query(`alter table public.m attach partition public.m6 for values from (600) to (700)`);
  await watchReachedAll(src);
  await same();

  const kept = await tableRows(src, 'public.m6', ['id']);
  await src.query(`alter table public.m detach partition public.m6`);
  await src.query(`insert into public.m6 values (660, 'written after the detach'); update public.m6 set v = 'changed after the detach'`);
  await src.query(`insert into public.m values (1, 'a write that marks the end')`);
  await waitCaughtUp(src);
  const target = await tableRows(dst, 'public.m', ['id']);
  const source = await tableRows(src, 'public.m', ['id']);
  assert.deepEqual(target, [...source, ...kept].sort(byId), 'the target holds the table plus the detached rows as they were at the detach');
  await waitFor('the capture triggers to leave the detached table', async () =>
    (await src.query(`select 1 from pg_trigger where tgrelid = 'public.m6'::regclass and tgname like 'pg2crate%'`)).rows.length === 0);

  const dropped = await tableRows(src, 'public.m4', ['id']);
  await src.query(`drop table public.m4`);
  await src.query(`insert into public.m values (2, 'another end mark')`);
  await waitCaughtUp(src);
  const source2 = await tableRows(src, 'public.m', ['id']);
  assert.deepEqual(await tableRows(dst, 'public.m', ['id']), [...source2, ...kept, ...dropped].sort(byId));
});

function byId(a: string, b: string): number {
  return (JSON.parse(a) as { id: number }).id - (JSON.parse(b) as { id: number }).id;
}
