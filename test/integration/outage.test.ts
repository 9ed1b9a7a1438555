// A source or target that goes away for a few seconds (a restart, a failover) does not stop the
// replicator: it retries with backoff and applies what was written before and after.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { assertNoLeaks, assertSameRows, makeConfig, pool, settle, startReplicator, waitCaughtUp, type Running } from '../helpers/replication.js';

let source: Cluster;
let target: Cluster;
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running | undefined;
let stoppedWith: unknown;

before(async () => {
  [source, target] = await Promise.all([startCluster(), startCluster()]);
  const [srcUrl, dstUrl] = await Promise.all([source.createDatabase('src'), target.createDatabase('dst')]);
  src = pool(srcUrl);
  dst = pool(dstUrl);
  // The test's own idle connections die with the server too; the pools replace them.
  src.on('error', () => {});
  dst.on('error', () => {});
  await src.query(`create table public.events (id integer primary key, kind text not null)`);
  const config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.events' });
  await settle(config, src);
  rep = await startReplicator(config);
  rep.done.then(() => { stoppedWith = 'stopped without an error'; }, (err: unknown) => { stoppedWith = err; });
});

after(async () => {
  await rep?.stop();
  await src?.end();
  await dst?.end();
  await Promise.all([source?.stop(), target?.stop()]);
  await assertNoLeaks();
});

async function write(from: number, kind: string): Promise<void> {
  await src.query(`insert into events select g, $2 from generate_series($1::int, $1::int + 99) g`, [from, kind]);
}

test('the replicator outlives four seconds without its source database', { skip: process.env.TEST_DATABASE_URL ? 'needs its own cluster' : false }, async () => {
  await write(1, 'before');
  await waitCaughtUp(src);
  await source.restart('fast', 4000);
  await write(101, 'after');
  await waitCaughtUp(src);
  assert.equal(stoppedWith, undefined, `the replicator stopped: ${String(stoppedWith)}`);
  assert.equal(await assertSameRows(src, dst, 'public.events', 'public.events', ['id']), 200);
});

test('the replicator outlives three seconds without its target database, and applies what waited', { skip: process.env.TEST_DATABASE_URL ? 'needs its own cluster' : false }, async () => {
  const down = target.restart('fast', 3000);
  await write(201, 'while the target is down');
  await down;
  await write(301, 'after');
  await waitCaughtUp(src);
  assert.equal(stoppedWith, undefined, `the replicator stopped: ${String(stoppedWith)}`);
  assert.equal(await assertSameRows(src, dst, 'public.events', 'public.events', ['id']), 400);
});
