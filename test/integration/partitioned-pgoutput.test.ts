// Partitioned source tables in pgoutput mode, and across both switches. The slot sends inserts,
// updates and deletes made through any partition as the root's (publish_via_partition_root), also
// for partitions created later, but not the TRUNCATE of one partition: that one comes from the
// truncate triggers the table keeps in this mode, through the outbox, even in a transaction whose
// other changes the slot sends.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { Runner } from '../../src/runner.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { PARTITIONED_TABLE, watchReachedAll } from '../helpers/partitions.js';
import { captureMode, waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { assertSameRows, makeConfig, startReplicator, tableRows, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { switchCapture } from '../../src/commands/switch-capture.js';
import { needsServer } from '../helpers/server-version.js';

/** The whole file is about pgoutput mode, which pg2crate refuses before PostgreSQL 14. */
const skip = needsServer(14, 'pgoutput mode');

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;
const reps: Running[] = [];

async function switchTo(to: 'trigger' | 'pgoutput'): Promise<void> {
  const runner = new Runner(makeConfig(env), testLogger());
  try {
    assert.equal(await switchCapture(runner, to), 'switched');
  } finally {
    await runner.close();
  }
  assert.equal(await captureMode(src), to);
}

async function sameViaSlot(): Promise<number> {
  await waitSlotCaughtUp(src, 'parts');
  return assertSameRows(src, dst, 'public.m', 'public.m', ['id']);
}


before(async () => {
  if (skip) return;
  ({ src, dst, env } = await bed.settled(`
    ${PARTITIONED_TABLE}
    insert into public.m select g, 'seed ' || g from generate_series(0, 199, 2) g;`,
  { PG2CRATE_TABLES: 'public.m', PG2CRATE_SLOT: 'parts', PG2CRATE_PARTITION_WATCH_MS: '1000' }, 6));
  await switchTo('pgoutput');
  reps.push(await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' })));
});

bed.onClose(async () => {
  for (const r of reps) await r.stop();
});

test('in pgoutput mode the table keeps only its truncate triggers and guard', { skip }, async () => {
  const names = await src.query<{ tgname: string }>(`select distinct tgname from pg_trigger where tgname like 'pg2crate%' order by 1`);
  assert.deepEqual(names.rows.map((r) => r.tgname), ['pg2crate_capture_b', 'pg2crate_capture_g', 'pg2crate_capture_t']);
});

test('pgoutput: writes through any partition arrive, and a TRUNCATE of one partition removes only its rows, also beside other changes in its transaction', { skip }, async () => {
  await src.query(`insert into public.m1 values (1, 'partition'); insert into public.m2a values (101, 'sub-partition'); insert into public.m values (151, 'parent')`);
  await src.query(`update public.m2 set v = 'through the partition above' where id between 100 and 160`);
  await src.query(`update public.m set id = 199 where id = 1`);
  await sameViaSlot();
  await src.query(`begin; insert into public.m1 values (3, 'before the truncate'); truncate public.m2a; insert into public.m2b values (153, 'beside it'); commit`);
  await sameViaSlot();
  await src.query(`truncate public.m2`);
  await sameViaSlot();
  await src.query(`truncate public.m`);
  assert.equal(await sameViaSlot(), 0);
  await src.query(`insert into public.m select g, 'refilled' from generate_series(0, 199, 3) g`);
  await sameViaSlot();
});

test('pgoutput: a partition created later is sent from its first row, and its TRUNCATE before the watch reached it is seen through its recorded keys', { skip }, async () => {
  await src.query(`create table public.m3 partition of public.m for values from (200) to (300)`);
  await src.query(`insert into public.m3 select g, 'new partition' from generate_series(200, 220) g`);
  await src.query(`truncate public.m3`);
  await src.query(`insert into public.m3 values (250, 'stays')`);
  await watchReachedAll(src);
  await sameViaSlot();
  await src.query(`truncate public.m3`);
  await sameViaSlot();
  await src.query(`create table public.m4 (id integer primary key, v text not null); insert into public.m4 select g, 'attached' from generate_series(300, 330) g`);
  await src.query(`alter table public.m attach partition public.m4 for values from (300) to (400)`);
  await watchReachedAll(src);
  await waitFor('the attached rows to be copied', async () =>
    (await src.query(`select 1 from pg2crate.backfills where status <> 'done'`)).rows.length === 0);
  await sameViaSlot();
});

const byId = (a: string, b: string) => (JSON.parse(a) as { id: number }).id - (JSON.parse(b) as { id: number }).id;

test('pgoutput: a detached or dropped partition keeps its rows in the target, and writes to the detached table are not sent once the watch released it', { skip }, async () => {
  await src.query(`create table public.m5 partition of public.m for values from (500) to (600); create table public.m6 partition of public.m for values from (600) to (700)`);
  await src.query(`insert into public.m select g, 'to leave' from generate_series(500, 690, 10) g`);
  await watchReachedAll(src);
  await sameViaSlot();
  const detached = await tableRows(src, 'public.m5', ['id']);
  const dropped = await tableRows(src, 'public.m6', ['id']);
  await src.query(`alter table public.m detach partition public.m5`);
  await src.query(`drop table public.m6`);
  // On PostgreSQL 14 the slot sends the detached table's writes until the watch, on releasing it, touched the publication.
  await waitFor('the watch to release the detached table', async () =>
    (await src.query(`select 1 from pg_trigger where tgrelid = 'public.m5'::regclass and tgname like 'pg2crate%'`)).rows.length === 0);
  await src.query(`insert into public.m5 values (555, 'after the detach'); update public.m5 set v = 'changed after the detach'`);
  await src.query(`insert into public.m values (8, 'an end mark')`);
  await waitSlotCaughtUp(src, 'parts');
  const source = await tableRows(src, 'public.m', ['id']);
  assert.deepEqual(await tableRows(dst, 'public.m', ['id']), [...source, ...detached, ...dropped].sort(byId));
  // What verify --repair would remove; gone by hand so that the next test starts from equal tables.
  await dst.query(`delete from public.m where id between 500 and 699`);
});

test('pgoutput: writes to a table right after its DETACH are not sent', { skip: skip || needsServer(15, 'leaving out the writes of a partition detached since the last watch pass') }, async () => {
  await src.query(`create table public.m7 partition of public.m for values from (700) to (800)`);
  await src.query(`insert into public.m select g, 'to leave' from generate_series(700, 790, 10) g`);
  await watchReachedAll(src);
  await sameViaSlot();
  const detached = await tableRows(src, 'public.m7', ['id']);
  await src.query(`alter table public.m detach partition public.m7`);
  await src.query(`insert into public.m7 values (755, 'after the detach'); update public.m7 set v = 'changed after the detach'`);
  await src.query(`insert into public.m values (10, 'an end mark')`);
  await waitSlotCaughtUp(src, 'parts');
  const source = await tableRows(src, 'public.m', ['id']);
  assert.deepEqual(await tableRows(dst, 'public.m', ['id']), [...source, ...detached].sort(byId));
  await dst.query(`delete from public.m where id between 700 and 799`);
});

test('switching back to triggers gives every partition, old and new, its triggers again', { skip }, async () => {
  await reps.pop()!.stop();
  await switchTo('trigger');
  reps.push(await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: 'trigger' })));
  await src.query(`insert into public.m1 values (7, 'trigger mode again'); update public.m3 set v = 'through m3' ; delete from public.m4 where id < 310`);
  await src.query(`truncate public.m2b`);
  await waitCaughtUp(src);
  assert.ok(await assertSameRows(src, dst, 'public.m', 'public.m', ['id']) > 30);
  const rows = await tableRows(dst, 'public.m', ['id']);
  assert.ok(rows.some((r) => r.includes('trigger mode again')));
});
