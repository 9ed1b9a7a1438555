// A source or target that goes away for a few seconds (a restart, a failover) does not stop the
// replicator: it retries with backoff and applies what was written before and after.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { assertNoLeaks, assertSameRows, logLines, makeConfig, pool, settle, startReplicator, waitCaughtUp, type Running } from '../helpers/replication.js';

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

test('the source shut down in immediate mode while writers commit: the replicator reconnects and finishes', { skip: process.env.TEST_DATABASE_URL ? 'needs its own cluster' : false }, async () => {
  let stop = false;
  let next = 1000;
  const writer = (async () => {
    while (!stop) {
      const from = next;
      next += 10;
      // a write lost with the crash was never committed; try it again until it commits
      for (;;) {
        try {
          await src.query(`insert into events select g, 'stream' from generate_series($1::int, $1::int + 9) g on conflict (id) do nothing`, [from]);
          break;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
  })();
  await new Promise((r) => setTimeout(r, 1000));
  await source.restart('immediate', 2000);
  await new Promise((r) => setTimeout(r, 1000));
  stop = true;
  await writer;
  await waitCaughtUp(src);
  assert.equal(stoppedWith, undefined, `the replicator stopped: ${String(stoppedWith)}`);
  assert.ok(next > 1100, 'the writers made too few changes to test anything');
  await assertSameRows(src, dst, 'public.events', 'public.events', ['id']);
});

test('a target away for thirty seconds: the replicator waits with bounded memory, says what it waits for, and applies everything', { skip: process.env.TEST_DATABASE_URL ? 'needs its own cluster' : false }, async () => {
  const rssBefore = process.memoryUsage().rss;
  const logged = logLines.length;
  const down = target.restart('fast', 30_000);
  let peak = rssBefore;
  for (let i = 0; i < 25; i++) {
    await src.query(`insert into events select g, 'during the outage' from generate_series($1::int, $1::int + 999) g`, [100_000 + i * 1000]);
    peak = Math.max(peak, process.memoryUsage().rss);
    await new Promise((r) => setTimeout(r, 1000));
  }
  await down;
  await waitCaughtUp(src, 'pg2crate', 120_000);
  assert.equal(stoppedWith, undefined, `the replicator stopped: ${String(stoppedWith)}`);
  assert.ok(peak - rssBefore < 200 * 1024 * 1024, `memory grew by ${Math.round((peak - rssBefore) / 1048576)} MB while the target was away`);
  assert.ok(logLines.slice(logged).some((l) => /retrying/.test(l)), 'nothing in the log says the replicator is waiting for the target');
  await assertSameRows(src, dst, 'public.events', 'public.events', ['id']);
});
