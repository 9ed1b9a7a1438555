import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { initialLoadsDone, makeConfig, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { deadLetters } from '../../src/commands/dead-letters.js';
import { addTables } from '../../src/commands/tables.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running;

before(async () => {
  let s: string, d: string;
  ({ srcUrl: s, dstUrl: d, src, dst } = await bed.databases());
  await src.query(`create table t (id int primary key, a text, n integer, big text, arr integer[], doc jsonb)`);
  await src.query(`create table gone (id int primary key, v text)`);
  rep = await startReplicator(makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t,public.gone', PG2CRATE_RETENTION_CRON: 'off' }));
  await waitFor('the initial loads', () => initialLoadsDone(src));
});

bed.onClose(() => rep?.stop());

test('very large values arrive whole: a 50 MB text, a 10,000-element array, jsonb nested 500 deep', async () => {
  const deep = `${'{"a":'.repeat(500)}1${'}'.repeat(500)}`;
  await src.query(`insert into t (id, a, big, arr, doc) values (1, 'large', repeat('x', 50 * 1024 * 1024), (select array_agg(g) from generate_series(1, 10000) g), $1::jsonb)`, [deep]);
  await waitCaughtUp(src, 'pg2crate', 120_000);
  const r = (await dst.query(`select length(big) as len, md5(big) as h, cardinality(arr) as n, doc::text = $1::jsonb::text as same from t where id = 1`, [deep])).rows[0];
  const s = (await src.query(`select md5(big) as h from t where id = 1`)).rows[0];
  assert.deepEqual({ len: r.len, n: r.n, same: r.same, h: r.h }, { len: 50 * 1024 * 1024, n: 10000, same: true, h: s.h });
  await src.query(`delete from t where id = 1`);
  await waitCaughtUp(src);
});

test('renaming a column: the new name is added, the old column keeps its old values', async () => {
  await src.query(`insert into t (id, a, n) values (10, 'before rename', 1)`);
  await waitCaughtUp(src);
  await src.query(`alter table t rename column a to label`);
  await src.query(`update t set n = 2 where id = 10`);
  await waitCaughtUp(src);
  const row = (await dst.query(`select a, label, n from t where id = 10`)).rows[0];
  assert.deepEqual(row, { a: 'before rename', label: 'before rename', n: 2 });
});

test('changing a column type: values that still fit arrive; one that no longer fits is parked, the rest flows on', async () => {
  await src.query(`alter table t alter column n type bigint`);
  await src.query(`insert into t (id, n) values (11, 5), (12, 5000000000), (13, 7)`);
  await waitCaughtUp(src);
  const got = (await dst.query(`select id, n from t where id in (11, 12, 13) order by id`)).rows;
  assert.deepEqual(got.map((r) => [r.id, r.n]), [[11, 5], [13, 7]]);
  const letters = await deadLetters(rep.runner);
  assert.equal(letters.length, 1);
  assert.equal(letters[0].code, '22003');
});

test('renaming a captured table keeps replicating into the same target table', async () => {
  await src.query(`alter table t rename to t_renamed`);
  await src.query(`insert into t_renamed (id, label) values (20, 'after table rename')`);
  await waitCaughtUp(src);
  assert.equal((await dst.query(`select label from t where id = 20`)).rows[0]?.label, 'after table rename');
});

test('dropping a captured table: changes committed before the drop are applied, and replication of the others goes on', async () => {
  await src.query(`insert into gone values (0, 'first')`);
  await waitCaughtUp(src);
  await src.query(`insert into gone values (1, 'last words')`);
  await src.query(`drop table gone`);
  await src.query(`insert into t_renamed (id, label) values (21, 'still flowing')`);
  await waitCaughtUp(src);
  assert.equal((await dst.query(`select v from gone where id = 1`)).rows[0]?.v, 'last words');
  assert.equal((await dst.query(`select label from t where id = 21`)).rows[0]?.label, 'still flowing');
});

test('a table dropped before its first change reached the target: that change is parked as a dead letter, never lost silently', async () => {
  await src.query(`create table brief (id int primary key, v text)`);
  await addTables(rep.runner, [{ schema: 'public', table: 'brief' }]);
  await waitFor('the initial loads', () => initialLoadsDone(src));
  const before = (await deadLetters(rep.runner)).length;
  await src.query(`insert into brief values (1, 'gone soon')`);
  await src.query(`drop table brief`);
  await waitCaughtUp(src);
  const letters = await deadLetters(rep.runner);
  assert.equal(letters.length, before + 1);
  assert.match(letters.at(-1)!.error, /no longer exists/);
});
