// Writes the plain ENABLE of a trigger would let pass uncaptured: a session with
// session_replication_role = replica (a logical replication subscription's apply worker, a restore
// with triggers disabled) is captured, since the triggers are ENABLE ALWAYS when pg2crate's role
// owns the table; and a capture trigger disabled by hand is named by `status`.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { PARTITIONED_TABLE } from '../helpers/partitions.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, type Running } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';
import { status } from '../../src/commands/status.js';
import type { Config } from '../../src/core/config.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running;
let config: Config;

before(async () => {
  let srcUrl: string, dstUrl: string;
  ({ srcUrl, dstUrl, src, dst } = await bed.databases());
  await src.query(`create table t (id integer primary key, v text); ${PARTITIONED_TABLE}`);
  config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.t,public.m' });
  rep = await startReplicator(config);
  await waitCaughtUp(src);
});

bed.onClose(() => rep?.stop());

test('writes of a session with session_replication_role = replica are captured, through a partition too', async () => {
  const c = await src.connect();
  try {
    await c.query(`set session_replication_role = replica`);
    await c.query(`insert into t values (1, 'as a subscriber applies it'), (2, 'x')`);
    await c.query(`update t set v = 'changed' where id = 2`);
    await c.query(`insert into public.m values (1, 'root'), (120, 'root')`);
    await c.query(`insert into public.m2b values (160, 'partition')`);
    await c.query(`delete from public.m1 where id = 1`);
    await c.query(`truncate public.m2a`);
  } finally {
    await c.query('reset session_replication_role');
    c.release();
  }
  await waitCaughtUp(src);
  assert.equal(await assertSameRows(src, dst, 'public.t', 'public.t', ['id']), 2);
  assert.equal(await assertSameRows(src, dst, 'public.m', 'public.m', ['id']), 1);
});

test('a capture trigger disabled by hand is named by status, on the table and on a partition', async () => {
  const admin = new Runner(config, testLogger());
  try {
    assert.deepEqual((await status(admin)).tables.map((t) => t.triggersDisabledOn), [[], []]);
    await src.query(`alter table t disable trigger pg2crate_capture_i; alter table public.m2b disable trigger pg2crate_capture_u`);
    const tables = (await status(admin)).tables;
    assert.deepEqual(tables.map((t) => [t.name, t.triggersDisabledOn]), [['public.t', ['t']], ['public.m', ['m2b']]]);
  } finally {
    await src.query(`alter table t enable always trigger pg2crate_capture_i; alter table public.m2b enable always trigger pg2crate_capture_u`);
    await admin.close();
  }
});
