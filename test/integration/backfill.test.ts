import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, mkdirSync } from 'node:fs';
import type pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { assertNoLeaks, assertSameRows, makeConfig, pool, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';

let cluster: Cluster;
const pools: pg.Pool[] = [];
const children: ChildProcess[] = [];

before(async () => {
  cluster = await startCluster();
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(pools.map((p) => p.end()));
  await cluster?.stop();
  await assertNoLeaks();
});

async function databases(): Promise<{ s: string; d: string; src: pg.Pool; dst: pg.Pool }> {
  const [s, d] = await Promise.all([cluster.createDatabase('src'), cluster.createDatabase('dst')]);
  const src = pool(s, 8);
  const dst = pool(d);
  pools.push(src, dst);
  return { s, d, src, dst };
}

async function backfillDone(src: pg.Pool): Promise<boolean> {
  const r = await src.query(`select bool_and(status = 'done') as ok from pg2crate.backfills`);
  return r.rows[0].ok === true;
}

test('an initial load of 200,000 rows while 4 writers update, insert and delete ends equal to the source', async () => {
  const { s, d, src, dst } = await databases();
  await src.query(`create table items (id int primary key, grp int not null, label text, amount numeric(20,6), seen timestamptz)`);
  await src.query(`insert into items select g, g % 97, 'item ' || g, g * 1.000001, now() from generate_series(1, 200000) g`);
  const rep = await startReplicator(makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.items', PG2CRATE_BACKFILL_CHUNK_ROWS: '5000' }));
  let stop = false;
  let writes = 0;
  const writer = async (n: number) => {
    let x = n * 7919;
    while (!stop) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const id = 1 + (x % 220000);
      const op = x % 10;
      if (op < 6) await src.query(`update items set label = 'w${n} ' || $2, amount = amount + 1 where id = $1`, [id, writes]);
      else if (op < 8) await src.query(`delete from items where id = $1`, [id]);
      else await src.query(`insert into items values ($1, 1, 'new', 0, now()) on conflict (id) do update set label = 'upserted'`, [id]);
      writes++;
    }
  };
  const writers = [1, 2, 3, 4].map(writer);
  try {
    await waitFor('the initial load to finish copying', () => backfillDone(src), 120_000, 200);
  } finally {
    stop = true;
    await Promise.all(writers);
  }
  await waitCaughtUp(src, 'pg2crate', 120_000);
  await rep.stop();
  assert.ok(writes > 100, `writers made too few changes (${writes}) to test anything`);
  const rows = await assertSameRows(src, dst, 'public.items', 'public.items', ['id']);
  assert.ok(rows > 150_000);
  // and verify, the tool a user has, reports no difference
  const checker = new Runner(makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.items' }), testLogger());
  try {
    const lines: string[] = [];
    const res = await checker.verify({ repair: false, json: false, out: (l) => lines.push(l) });
    assert.equal(res.equal, true, lines.join('\n'));
  } finally {
    await checker.close();
  }
});

test('an initial load killed midway resumes after the last chunk and ends equal, with no chunk copied twice', async () => {
  const { s, d, src, dst } = await databases();
  await src.query(`create table big (id bigint primary key, payload text)`);
  await src.query(`insert into big select g, repeat('x', 50) || g from generate_series(1, 300000) g`);
  mkdirSync('.tmp', { recursive: true });
  const env = {
    ...process.env, DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.big', PG2CRATE_BACKFILL_CHUNK_ROWS: '2000',
    PG2CRATE_POLL_INTERVAL_MS: '100', LOG_LEVEL: 'warn',
  };
  const run = (args: string[]) => {
    const fd = openSync(`.tmp/backfill-kill-${process.pid}.log`, 'a');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { env, stdio: ['ignore', fd, fd] });
    closeSync(fd);
    children.push(child);
    return child;
  };
  const exit = (c: ChildProcess) => new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
  const migrateChild = run(['migrate']);
  assert.equal(await exit(migrateChild), 0);
  const first = run(['start']);
  await waitFor('part of the copy', async () => {
    const r = await src.query(`select rows_copied from pg2crate.backfills`);
    return Number(r.rows[0]?.rows_copied ?? 0) >= 40_000;
  }, 60_000, 20);
  first.kill('SIGKILL');
  await exit(first);
  const copiedAtKill = Number((await src.query(`select rows_copied from pg2crate.backfills`)).rows[0].rows_copied);
  assert.ok(copiedAtKill < 300_000, 'the copy finished before the kill; the test proves nothing');
  const second = run(['start']);
  await waitFor('the copy to finish', () => backfillDone(src), 120_000, 200);
  await waitCaughtUp(src, 'pg2crate', 120_000);
  second.kill('SIGTERM');
  await exit(second);
  // Each row was copied exactly once: chunks are committed with the job's position.
  const copied = await src.query(`select rows_copied::int8 as n, (select count(*) from pg2crate.outbox where op = 'B') as events from pg2crate.backfills`);
  assert.equal(Number(copied.rows[0].n), 300_000);
  assert.equal(Number(copied.rows[0].events), 300_000);
  assert.equal(await assertSameRows(src, dst, 'public.big', 'public.big', ['id']), 300_000);
});
