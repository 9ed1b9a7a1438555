// A key column renamed in the source (README "Schema changes"): the capture function names the key
// columns, so the application's updates and deletes fail until the replicator's watch captures the
// table again under the new names; the target keeps the old key, so every change of the table from
// then on is parked (never applied as a delete or update that matches nothing) until the operator
// renames the target's key column too and retries them.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { Change, ColumnInfo, TableInfo } from '../../src/core/change.js';
import { TableError } from '../../src/core/errors.js';
import { PostgresSink } from '../../src/sink/postgres/postgres-sink.js';
import { discardDeadLetters, retryDeadLetters } from '../../src/commands/dead-letters.js';
import { verify } from '../../src/commands/verify.js';
import { addTables } from '../../src/commands/tables.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { needsServer } from '../helpers/server-version.js';
import { catchUp } from '../../src/commands/catch-up.js';
import { noteColumns } from '../../src/capture/column-watch.js';
import { Runner } from '../../src/runner.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { columns, keyWatchHeld, lettersOf, rows, streamingPgoutput } from '../helpers/key-rename.js';
import { assertSameRows, logLines, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;
let rep: Running;

before(async () => {
  let s: string, d: string;
  ({ srcUrl: s, dstUrl: d, src, dst } = await bed.databases());
  await src.query(`create table kr (id int primary key, v text); insert into kr select g, 'row ' || g from generate_series(1, 5) g`);
  await src.query(`create table cron (id int primary key, v text); insert into cron select g, 'row ' || g from generate_series(1, 5) g`);
  env = { DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.kr,public.cron', PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_PARTITION_WATCH_MS: '300' };
  rep = await startReplicator(makeConfig(env));
  await waitCaughtUp(src);
});

bed.onClose(() => rep?.stop());

test('a key column renamed while the replicator runs: updates and deletes fail until the watch captures the table again, then work with no command; every change is parked, none lost', async () => {
  await keyWatchHeld(src, 'kr', async () => {
    await src.query(`alter table kr rename column id to ident`);
    await assert.rejects(src.query(`update kr set v = 'in the window' where ident = 1`), /column o\.id does not exist/);
    await assert.rejects(src.query(`delete from kr where ident = 2`), /column o\.id does not exist/);
    await src.query(`insert into kr values (6, 'inserted in the window')`);
    await waitCaughtUp(src);
  });
  await waitFor('updates of kr to work again', () => src.query(`update kr set v = 'updated after' where ident = 1`).then(() => true, () => false), 15_000, 100);
  // one transaction, so one page: keyed by the stale name, all three would be one null key
  await src.query(`begin; update kr set v = 'updated again' where ident = 4; delete from kr where ident = 3; insert into kr values (7, 'inserted after'); commit`);
  await waitCaughtUp(src);

  assert.deepEqual((await src.query(`select key_columns from pg2crate.tables where source_table = 'kr'`)).rows[0].key_columns, ['ident']);
  // Nothing of the table reached the target since the rename: row 3 is still there, no column was added.
  assert.deepEqual(await columns(dst, 'kr'), ['id', 'v']);
  assert.deepEqual(await rows(dst, 'kr', 'id'), [[1, 'row 1'], [2, 'row 2'], [3, 'row 3'], [4, 'row 4'], [5, 'row 5']]);
  // Every change committed since is parked: the window's insert, then the updates, the delete and the insert.
  const letters = await lettersOf(rep.runner, 'public.kr');
  assert.deepEqual(letters.map((l) => [l.eventId, l.op]).sort((a, b) => Number(a[0]) - Number(b[0])).map((x) => x[1]), ['I', 'U', 'U', 'D', 'I']);
  const [window, ...after] = [...letters].sort((a, b) => a.eventId - b.eventId);
  assert.match(window.error, /no value for the key column id of public\.kr/);
  for (const l of after) assert.match(l.error, /target table public\.kr is keyed by \(id\) but the changes of public\.kr are keyed by \(ident\): a key column was renamed/);
  const told = logLines.filter((l) => l.includes('captured it again under the new names'));
  assert.equal(told.length, 1);
  assert.deepEqual([JSON.parse(told[0]).oldKey, JSON.parse(told[0]).newKey], [['id'], ['ident']]);
});

test('recovery: the target\'s key column renamed the same way, retrying the dead letters makes the target equal to the source, and changes flow again', async () => {
  await dst.query(`alter table kr rename column id to ident`);
  await retryDeadLetters(rep.runner, 'all');
  await waitCaughtUp(src);
  assert.deepEqual(await lettersOf(rep.runner, 'public.kr'), []);
  assert.equal(await assertSameRows(src, dst, 'kr', 'kr', ['ident']), 6);
  await src.query(`update kr set v = 'later' where ident = 2; delete from kr where ident = 5; insert into kr values (8, 'later')`);
  await waitCaughtUp(src);
  assert.equal(await assertSameRows(src, dst, 'kr', 'kr', ['ident']), 6);
});

test('a configured key follows its column by attnum when it is renamed: the watch captures the table again under the new name', async () => {
  await src.query(`create table ck (code text, v text); insert into ck values ('a', 'one'), ('b', 'two')`);
  await addTables(rep.runner, [{ schema: 'public', table: 'ck', keyColumns: ['code'] }]);
  await waitCaughtUp(src);
  await src.query(`alter table ck rename column code to ref`);
  await waitFor('updates of ck to work again', () => src.query(`update ck set v = 'after' where ref = 'a'`).then(() => true, () => false), 15_000, 100);
  assert.deepEqual((await src.query(`select key_columns from pg2crate.tables where source_table = 'ck'`)).rows[0].key_columns, ['ref']);
  await waitCaughtUp(src);
  assert.deepEqual((await lettersOf(rep.runner, 'public.ck')).map((l) => l.op), ['U']);
  await dst.query(`alter table ck rename column code to ref`);
  await retryDeadLetters(rep.runner, 'all');
  await waitCaughtUp(src);
  assert.equal(await assertSameRows(src, dst, 'ck', 'ck', ['ref']), 2);
});

test('a serial key renamed: the copy scheduled for its column (it has a default) waits for the target\'s key instead of stopping the replicator, and completes once the target is renamed', async () => {
  await src.query(`create table sr (id serial primary key, v text); insert into sr (v) select 'r' || g from generate_series(1, 50) g`);
  await addTables(rep.runner, [{ schema: 'public', table: 'sr' }]);
  await waitCaughtUp(src);
  let stopped: unknown = null;
  rep.done.catch((err: unknown) => { stopped = err; });
  await src.query(`alter table sr rename column id to ident`);
  await waitFor('updates of sr to work again', () => src.query(`update sr set v = 'after' where ident = 1`).then(() => true, () => false), 15_000, 100);
  await waitFor('the copy to wait for the target', () => logLines.some((l) => l.includes('initial load waits for its target table') && l.includes('public.sr')));
  assert.equal(stopped, null);
  assert.notEqual((await src.query(`select b.status from pg2crate.backfills b join pg2crate.tables t on t.id = b.table_id where t.source_table = 'sr'`)).rows[0].status, 'done');
  await dst.query(`alter table sr rename column id to ident`);
  await retryDeadLetters(rep.runner, 'all');
  await waitCaughtUp(src);
  assert.equal(stopped, null);
  assert.equal(await assertSameRows(src, dst, 'sr', 'sr', ['ident']), 50);
});

test('a TRUNCATE parked with the changes of a renamed key is not dropped by retry: retry names it, and verify --repair applies it', async () => {
  await src.query(`create table tk (id int primary key, v text); insert into tk select g, 'row ' || g from generate_series(1, 5) g`);
  await addTables(rep.runner, [{ schema: 'public', table: 'tk' }]);
  await waitCaughtUp(src);
  await src.query(`alter table tk rename column id to ident`);
  await waitFor('updates of tk to work again', () => src.query(`update tk set v = 'after' where ident = 1`).then(() => true, () => false), 15_000, 100);
  await waitFor('the update to be parked', async () => (await lettersOf(rep.runner, 'public.tk')).length === 1);
  await src.query(`truncate tk`);
  await waitCaughtUp(src);
  const letters = await lettersOf(rep.runner, 'public.tk');
  assert.deepEqual(letters.map((l) => l.op), ['U', 'T']);
  assert.equal((await dst.query(`select count(*)::int as n from tk`)).rows[0].n, 5);
  await dst.query(`alter table tk rename column id to ident`);
  await assert.rejects(retryDeadLetters(rep.runner, letters.map((l) => l.id)), (e: unknown) => e instanceof TableError && new RegExp(`dead letters ${letters[1].id} of public\\.tk .*a TRUNCATE`).test(e.message));
  const res = await verify(rep.runner, { tables: [{ schema: 'public', table: 'tk' }], repair: true, out: () => {} });
  assert.equal(res.equal, true);
  await discardDeadLetters(rep.runner, letters.map((l) => l.id));
  assert.equal((await dst.query(`select count(*)::int as n from tk`)).rows[0].n, 0);
});

test('renamed while no replicator runs (cron mode): the catch-up captures the table again first; changes written under the old name are parked, and verify --repair recovers them', async () => {
  await rep.stop();
  // committed before the rename, not yet applied: written under the old key name
  await src.query(`update cron set v = 'before the rename' where id = 1; delete from cron where id = 2`);
  await src.query(`alter table cron rename column id to ident`);
  await src.query(`insert into cron values (6, 'in the window')`);
  const runner = new Runner(makeConfig(env), testLogger());
  try {
    await catchUp(runner);
    await src.query(`update cron set v = 'after' where ident = 3`);
    await catchUp(runner);
    const letters = await lettersOf(runner, 'public.cron');
    assert.deepEqual(letters.map((l) => l.op).sort(), ['D', 'I', 'U', 'U']);
    assert.deepEqual(await rows(dst, 'cron', 'id'), [[1, 'row 1'], [2, 'row 2'], [3, 'row 3'], [4, 'row 4'], [5, 'row 5']]);

    await dst.query(`alter table cron rename column id to ident`);
    // the letters written under the old name cannot be retried by key: retry says so and does nothing
    await assert.rejects(retryDeadLetters(runner, 'all'), (e: unknown) => e instanceof TableError && /written under other key names.*verify --repair public\.cron/.test(e.message));
    assert.equal((await lettersOf(runner, 'public.cron')).length, 4);
    const res = await verify(runner, { tables: [{ schema: 'public', table: 'cron' }], repair: true, out: () => {} });
    assert.equal(res.equal, true);
    await discardDeadLetters(runner, letters.map((l) => l.id));
    assert.equal(await assertSameRows(src, dst, 'cron', 'cron', ['ident']), 5);
  } finally {
    await runner.close();
  }
});

test('a configured key renamed: a drainer that describes the table before the watch\'s pass does not take away the attnum the watch follows it by', async () => {
  // runs after the cron test: no replicator, so nothing but this test acts on the table
  await src.query(`create table ckd (code text, v text); insert into ckd values ('a', 'one'), ('b', 'two')`);
  const runner = new Runner(makeConfig(env), testLogger());
  try {
    await addTables(runner, [{ schema: 'public', table: 'ckd', keyColumns: ['code'] }]);
    await catchUp(runner);
    await src.query(`alter table ckd rename column code to ref`);
    await assert.rejects(src.query(`update ckd set v = 'x' where ref = 'a'`), /code/);
    // an insert carries the new name, and the drainer describes the table, before the watch's pass
    await src.query(`insert into ckd values ('c', 'three')`);
    const id = (await src.query(`select id from pg2crate.tables where source_table = 'ckd'`)).rows[0].id;
    const client = await src.connect();
    try {
      await noteColumns(client, 'pg2crate', id);
    } finally {
      client.release();
    }
    await catchUp(runner);
    assert.deepEqual((await src.query(`select key_columns from pg2crate.tables where id = $1`, [id])).rows[0].key_columns, ['ref']);
    await src.query(`update ckd set v = 'after' where ref = 'a'`);
    await src.query(`delete from ckd where ref = 'b'`);
  } finally {
    await runner.close();
  }
});

test('the Postgres sink checks the target key where it reads the target: a table keyed otherwise gets no column and no write until its key is renamed too', async () => {
  await dst.query(`create table sk (id int primary key, v text); insert into sk values (1, 'a'), (3, 'c')`);
  const col = (name: string, notNull = false): ColumnInfo => ({ name, type: 'integer', baseType: 'int4', baseFormatted: 'integer', dims: 0, typtype: 'b', notNull });
  const text: ColumnInfo = { name: 'v', type: 'text', baseType: 'text', baseFormatted: 'text', dims: 0, typtype: 'b', notNull: false };
  const info: TableInfo = { id: 1, relid: 1, sourceSchema: 'public', sourceTable: 'sk', targetSchema: 'public', targetTable: 'sk', keyColumns: ['ident'], columns: [col('ident', true), text] };
  const del: Change = { id: 1, tableId: 1, op: 'D', key: '[{"n":"3"}]', row: { ident: 3 }, raw: '{"ident": 3}' };
  const sink = new PostgresSink(env.TARGET_DATABASE_URL, testLogger());
  try {
    await sink.start();
    await assert.rejects(sink.prepare(info), (e: unknown) => e instanceof TableError && /public\.sk is keyed by \(id\) but the changes of public\.sk are keyed by \(ident\)/.test(e.message));
    assert.deepEqual(await columns(dst, 'sk'), ['id', 'v']);
    await dst.query(`alter table sk rename column id to ident`);
    await sink.prepare(info);
    await sink.apply([{ table: info, truncate: false, deletes: [del], upserts: [] }]);
    assert.deepEqual(await rows(dst, 'sk', 'ident'), [[1, 'a']]);
  } finally {
    await sink.stop();
  }
});

test('pgoutput mode: a key column renamed; the rows sent under the new name are parked, not coalesced under a null key, and the same recovery works', { skip: needsServer(14, 'pgoutput mode') }, async () => {
  const { src: s, dst: d, env: base, rep: pgo } = await streamingPgoutput(bed, `create table pk (id int primary key, v text); insert into pk select g, 'row ' || g from generate_series(1, 5) g`, 'pk', 'key_rename');
  try {
    await s.query(`alter table pk rename column id to ident`);
    // one transaction, so one page
    await s.query(`begin; insert into pk values (6, 'new'); update pk set v = 'changed' where ident = 1; delete from pk where ident = 3; commit`);
    await waitSlotCaughtUp(s, 'key_rename');
    await waitFor('the three changes parked', async () => (await lettersOf(pgo.runner, 'public.pk')).length === 3);
    assert.deepEqual((await lettersOf(pgo.runner, 'public.pk')).map((l) => l.op).sort(), ['D', 'I', 'U']);
    assert.deepEqual(await rows(d, 'pk', 'id'), [[1, 'row 1'], [2, 'row 2'], [3, 'row 3'], [4, 'row 4'], [5, 'streaming']]);
    await waitFor('the registry to follow the rename', async () => (await s.query(`select key_columns from pg2crate.tables where source_table = 'pk'`)).rows[0].key_columns[0] === 'ident');
    await d.query(`alter table pk rename column id to ident`);
    await retryDeadLetters(pgo.runner, 'all');
    await waitFor('the target to equal the source', async () =>
      (await lettersOf(pgo.runner, 'public.pk')).length === 0 && JSON.stringify(await rows(s, 'pk', 'ident')) === JSON.stringify(await rows(d, 'pk', 'ident')));
  } finally {
    await pgo.stop();
  }
  // Renamed while no replicator runs: the next one follows the key before it checks the replica identities.
  await s.query(`alter table pk rename column ident to ref`);
  const again = await startReplicator(makeConfig({ ...base, PG2CRATE_CAPTURE: 'pgoutput' }));
  try {
    let stopped: unknown = null;
    again.done.catch((err: unknown) => { stopped = err; });
    await s.query(`insert into pk values (9, 'nine')`);
    await waitFor('the insert to be parked', async () => (await lettersOf(again.runner, 'public.pk')).length === 1);
    assert.equal(stopped, null);
    assert.deepEqual((await s.query(`select key_columns from pg2crate.tables where source_table = 'pk'`)).rows[0].key_columns, ['ref']);
  } finally {
    await again.stop();
  }
});
