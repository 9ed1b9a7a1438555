// A key column renamed in a partitioned source table (README "Partitioned tables", "Schema
// changes"): Postgres renames it in every partition, and the root and every partition share one
// capture function, so the watch's one pass mends writes through every name. As for a plain table,
// every change from the rename on is parked until the target has the new key; partitions created or
// attached after the rename are captured under the new name, and keys the guard recorded under the
// old name in a partition the watch had not reached yet are not lost.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { TableError } from '../../src/core/errors.js';
import { discardDeadLetters, retryDeadLetters } from '../../src/commands/dead-letters.js';
import { verify } from '../../src/commands/verify.js';
import { catchUp } from '../../src/commands/catch-up.js';
import { Runner } from '../../src/runner.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { needsServer } from '../helpers/server-version.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { columns, keyWatchHeld, lettersOf, rows, streamingPgoutput } from '../helpers/key-rename.js';
import { watchReachedAll } from '../helpers/partitions.js';
import { assertSameRows, caughtUp, logLines, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;
let rep: Running;

const byEvent = <T extends { eventId: number }>(letters: T[]) => [...letters].sort((a, b) => a.eventId - b.eventId);

/** `name` partitioned by range on id: `name`1 [0,100) and `name`2 [100,200), rows 1–5 and 101–105. */
const partitioned = (name: string) => `
  create table ${name} (id int primary key, v text) partition by range (id);
  create table ${name}1 partition of ${name} for values from (0) to (100);
  create table ${name}2 partition of ${name} for values from (100) to (200);
  insert into ${name} select g, 'row ' || g from generate_series(1, 5) g union all select g, 'row ' || g from generate_series(101, 105) g;`;
const SEEDED = [1, 2, 3, 4, 5, 101, 102, 103, 104, 105].map((k) => [k, `row ${k}`]);

before(async () => {
  let s: string, d: string;
  ({ srcUrl: s, dstUrl: d, src, dst } = await bed.databases(6));
  await src.query(partitioned('pm') + partitioned('pc') + partitioned('pw'));
  env = { DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.pm,public.pc,public.pw', PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_PARTITION_WATCH_MS: '300' };
  rep = await startReplicator(makeConfig(env));
  await waitCaughtUp(src);
});

bed.onClose(() => rep?.stop());

test('the key renamed on a partitioned root while the replicator runs: updates and deletes through the root and through a partition fail until the watch\'s pass, then work with no command; every change is parked, none lost', async () => {
  await keyWatchHeld(src, 'pm', async () => {
    await src.query(`alter table pm rename column id to ident`);
    assert.deepEqual([await columns(src, 'pm1'), await columns(src, 'pm2')], [['ident', 'v'], ['ident', 'v']]);
    await assert.rejects(src.query(`update pm set v = 'in the window' where ident = 1`), /column o\.id does not exist/);
    await assert.rejects(src.query(`update pm1 set v = 'in the window' where ident = 2`), /column o\.id does not exist/);
    await assert.rejects(src.query(`delete from pm2 where ident = 101`), /column o\.id does not exist/);
    await src.query(`insert into pm values (6, 'through the root in the window')`);
    await src.query(`insert into pm2 values (106, 'through pm2 in the window')`);
    await waitCaughtUp(src);
  });
  await waitFor('updates through the root to work again', () => src.query(`update pm set v = 'through the root after' where ident = 1`).then(() => true, () => false), 15_000, 100);
  await src.query(`update pm2 set v = 'through pm2 after' where ident = 102`);
  // one transaction, so one page: through the root, a partition, and a row moving from pm1 into pm2
  await src.query(`begin;
    update pm set v = 'again' where ident = 3; delete from pm1 where ident = 4; update pm set ident = 107 where ident = 5;
    insert into pm2 values (108, 'through pm2'); delete from pm where ident = 103; commit`);
  await waitCaughtUp(src);

  assert.deepEqual((await src.query(`select key_columns from pg2crate.tables where source_table = 'pm'`)).rows[0].key_columns, ['ident']);
  // Nothing of the table reached the target since the rename.
  assert.deepEqual(await columns(dst, 'pm'), ['id', 'v']);
  assert.deepEqual(await rows(dst, 'pm', 'id'), SEEDED);
  const [w1, w2, ...after] = byEvent(await lettersOf(rep.runner, 'public.pm'));
  assert.deepEqual([w1, w2, ...after].map((l) => l.op), ['I', 'I', 'U', 'U', 'U', 'D', 'D', 'U', 'I', 'D']);
  for (const l of [w1, w2]) assert.match(l.error, /no value for the key column id of public\.pm/);
  for (const l of after) assert.match(l.error, /target table public\.pm is keyed by \(id\) but the changes of public\.pm are keyed by \(ident\)/);
  const told = logLines.filter((l) => l.includes('captured it again under the new names') && l.includes('public.pm"'));
  assert.equal(told.length, 1);
});

test('a partition created and one attached after the rename are captured under the new key name, writes through their own names too', async () => {
  await src.query(`create table pm3 partition of pm for values from (200) to (300)`);
  // before the watch reached pm3: the guard records these keys, under the new name
  await src.query(`insert into pm3 values (201, 'through pm3 before the watch'), (202, 'through pm3 before the watch')`);
  await src.query(`create table pm4 (ident int not null, v text); insert into pm4 values (301, 'came with pm4'), (302, 'came with pm4')`);
  await src.query(`alter table pm attach partition pm4 for values from (300) to (400)`);
  await watchReachedAll(src, 'public.pm');
  await src.query(`update pm3 set v = 'through pm3 after the watch' where ident = 202`);
  await src.query(`delete from pm4 where ident = 302`);
  await src.query(`insert into pm4 values (303, 'through pm4')`);
  // pm4 came with rows: the table is copied again, and the copy waits for the target's key
  await waitFor('the copy to wait for the target', () => logLines.some((l) => l.includes('initial load waits for its target table') && l.includes('public.pm')));
  // everything written is applied or parked (the copy still waits, so not waitCaughtUp)
  await waitFor('the writes of pm3 and pm4 to be parked', () => caughtUp(src));
  // 201, 202 (inserted and updated: one letter or two, as the pages fall), 302 and 303
  const late = byEvent(await lettersOf(rep.runner, 'public.pm')).slice(10);
  assert.ok(late.length >= 4, `${late.length} letters of pm3 and pm4`);
  for (const l of late) assert.match(l.error, /keyed by \(id\) but the changes of public\.pm are keyed by \(ident\)/);
  assert.deepEqual(await rows(dst, 'pm', 'id'), SEEDED);
});

test('recovery: the target\'s key renamed the same way, retrying the dead letters and the waiting copy make the target equal to the source, and changes through every name flow again', async () => {
  await dst.query(`alter table pm rename column id to ident`);
  await retryDeadLetters(rep.runner, 'all');
  await waitCaughtUp(src);
  assert.deepEqual(await lettersOf(rep.runner, 'public.pm'), []);
  assert.equal(await assertSameRows(src, dst, 'pm', 'pm', ['ident']), 15);
  await src.query(`update pm set v = 'later' where ident in (1, 201); update pm1 set v = 'later through pm1' where ident = 2`);
  await src.query(`delete from pm3 where ident = 202; update pm4 set ident = 304 where ident = 301; insert into pm2 values (109, 'later')`);
  await waitCaughtUp(src);
  assert.deepEqual(await lettersOf(rep.runner, 'public.pm'), []);
  assert.equal(await assertSameRows(src, dst, 'pm', 'pm', ['ident']), 15);
});

test('renamed while no replicator runs (cron mode): the catch-up captures the partitioned table again first, writes through a partition work, and the recovery makes the target equal to the source', async () => {
  await rep.stop();
  // committed before the rename, not yet applied: written under the old key name, through the root and through pc2
  await src.query(`update pc set v = 'before the rename' where id = 1; delete from pc2 where id = 102`);
  await src.query(`alter table pc rename column id to ident`);
  await src.query(`insert into pc1 values (6, 'in the window')`);
  await assert.rejects(src.query(`update pc2 set v = 'in the window' where ident = 101`), /column o\.id does not exist/);
  const runner = new Runner(makeConfig(env), testLogger());
  try {
    await catchUp(runner);
    await src.query(`update pc2 set v = 'after' where ident = 101`);
    await src.query(`create table pc3 partition of pc for values from (200) to (300); insert into pc3 values (201, 'through pc3')`);
    await catchUp(runner);
    const letters = await lettersOf(runner, 'public.pc');
    assert.deepEqual(byEvent(letters).map((l) => l.op), ['U', 'D', 'I', 'U', 'U']);
    assert.deepEqual(await rows(dst, 'pc', 'id'), SEEDED);

    await dst.query(`alter table pc rename column id to ident`);
    // the letters written under the old name cannot be retried by key: retry says so and does nothing
    await assert.rejects(retryDeadLetters(runner, 'all'), (e: unknown) => e instanceof TableError && /written under other key names.*verify --repair public\.pc/.test(e.message));
    const res = await verify(runner, { tables: [{ schema: 'public', table: 'pc' }], repair: true, out: () => {} });
    assert.equal(res.equal, true);
    await discardDeadLetters(runner, letters.map((l) => l.id));
    assert.equal(await assertSameRows(src, dst, 'pc', 'pc', ['ident']), 11);
    await src.query(`update pc3 set v = 'later through pc3' where ident = 201; delete from pc where ident = 2`);
    await catchUp(runner);
    assert.deepEqual(await lettersOf(runner, 'public.pc'), []);
    assert.equal(await assertSameRows(src, dst, 'pc', 'pc', ['ident']), 10);
  } finally {
    await runner.close();
  }
});

test('cron mode: keys recorded under the old name in a partition the watch had not reached yet are sent under the new name, so a delete through it is not lost', async () => {
  const runner = new Runner(makeConfig(env), testLogger());
  try {
    // pw3 created and a row moved into it through the root; pw3 is busy while the catch-up's watch
    // passes, so only the move reaches the target, and pw3's guard goes on recording its keys.
    await src.query(`create table pw3 partition of pw for values from (200) to (300)`);
    await src.query(`update pw set id = 201 where id = 1`);
    const busy = await src.connect();
    try {
      await busy.query(`begin; lock table pw3 in row exclusive mode`);
      await catchUp(runner);
    } finally {
      await busy.query('rollback');
      busy.release();
    }
    assert.deepEqual((await rows(dst, 'pw', 'id')).at(-1), [201, 'row 1']);
    // Through pw3's own name, recorded by its guard under the name id; then the key renamed.
    await src.query(`delete from pw3 where id = 201; insert into pw3 values (202, 'through pw3')`);
    await src.query(`alter table pw rename column id to ident`);
    await catchUp(runner);
    await watchReachedAll(src, 'public.pw');
    assert.deepEqual((await lettersOf(runner, 'public.pw')).map((l) => l.op).sort(), ['D', 'U']);
    await dst.query(`alter table pw rename column id to ident`);
    await retryDeadLetters(runner, 'all');
    await catchUp(runner);
    assert.deepEqual(await lettersOf(runner, 'public.pw'), []);
    assert.equal(await assertSameRows(src, dst, 'pw', 'pw', ['ident']), 10);
  } finally {
    await runner.close();
  }
});

test('pgoutput mode: the application\'s writes go on, only a partition\'s TRUNCATE fails until the watch\'s pass; the rows sent under the new name are parked, and the same recovery works', { skip: needsServer(14, 'pgoutput mode') }, async () => {
  const { src: s, dst: d, rep: pgo } = await streamingPgoutput(bed, partitioned('pp'), 'pp', 'pp_rename');
  try {
    await keyWatchHeld(s, 'pp', async () => {
      await s.query(`alter table pp rename column id to ident`);
      // the partition's truncate trigger names the key; the slot sends everything else
      await assert.rejects(s.query(`truncate pp1`), /column o\.id does not exist/);
      await s.query(`update pp set v = 'through the root in the window' where ident = 1; update pp2 set v = 'through pp2 in the window' where ident = 101`);
    });
    await waitFor('a partition\'s TRUNCATE to work again', () => s.query(`truncate pp1`).then(() => true, () => false), 15_000, 100);
    await s.query(`insert into pp1 values (7, 'after the truncate'); delete from pp2 where ident = 102; update pp set ident = 108 where ident = 103`);
    await waitSlotCaughtUp(s, 'pp_rename');
    await waitFor('the table\'s changes to be parked', async () => (await lettersOf(pgo.runner, 'public.pp')).length >= 9);
    assert.deepEqual(await rows(d, 'pp', 'id'), SEEDED.map(([k, v]) => [k, k === 105 ? 'streaming' : v]));
    await d.query(`alter table pp rename column id to ident`);
    await retryDeadLetters(pgo.runner, 'all');
    await waitFor('the target to equal the source', async () =>
      (await lettersOf(pgo.runner, 'public.pp')).length === 0 && JSON.stringify(await rows(s, 'pp', 'ident')) === JSON.stringify(await rows(d, 'pp', 'ident')));
    assert.equal(await assertSameRows(s, d, 'pp', 'pp', ['ident']), 5);
  } finally {
    await pgo.stop();
  }
});
