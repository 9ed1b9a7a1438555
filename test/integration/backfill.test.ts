import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, mkdirSync } from 'node:fs';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';
import { runRetention } from '../../src/ops/retention.js';
import { verify } from '../../src/commands/verify.js';

const bed = clusterForFile();
const children: ChildProcess[] = [];
bed.onClose(() => {
  for (const c of children) c.kill('SIGKILL');
});

async function databases(): Promise<{ s: string; d: string; src: pg.Pool; dst: pg.Pool }> {
  const { srcUrl: s, dstUrl: d, src, dst } = await bed.databases(8);
  return { s, d, src, dst };
}

async function backfillDone(src: pg.Pool): Promise<boolean> {
  const r = await src.query(`select bool_and(status = 'done') as ok from pg2crate.backfills`);
  return r.rows[0].ok === true;
}

for (const method of ['direct', 'outbox'] as const) {
test(`an initial load (${method}) of 200,000 rows while 4 writers update, insert and delete ends equal to the source`, async () => {
  const { s, d, src, dst } = await databases();
  await src.query(`create table items (id int primary key, grp int not null, label text, amount numeric(20,6), seen timestamptz)`);
  await src.query(`insert into items select g, g % 97, 'item ' || g, g * 1.000001, now() from generate_series(1, 200000) g`);
  const rep = await startReplicator(makeConfig({
    DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.items', PG2CRATE_BACKFILL_CHUNK_ROWS: '5000', PG2CRATE_INITIAL_LOAD: method,
  }));
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
    const res = await verify(checker, { repair: false, json: false, out: (l) => lines.push(l) });
    assert.equal(res.equal, true, lines.join('\n'));
  } finally {
    await checker.close();
  }
});

test(`an initial load (${method}) killed midway resumes after the last chunk and ends equal, with no chunk counted twice`, async () => {
  const { s, d, src, dst } = await databases();
  await src.query(`create table big (id bigint primary key, payload text)`);
  await src.query(`insert into big select g, repeat('x', 50) || g from generate_series(1, 300000) g`);
  mkdirSync('.tmp', { recursive: true });
  const env = {
    ...process.env, DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.big', PG2CRATE_BACKFILL_CHUNK_ROWS: '2000',
    PG2CRATE_POLL_INTERVAL_MS: '100', LOG_LEVEL: 'warn', PG2CRATE_INITIAL_LOAD: method,
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
  // Each chunk counted once: the job's position moves with the chunk (outbox: in the chunk's own
  // transaction, so each row has exactly one event; direct: after the sink confirmed it, so the
  // chunk in flight at the kill is written again, which an upsert makes harmless).
  const copied = await src.query(`select rows_copied::int8 as n, (select count(*) from pg2crate.outbox where op = 'B') as events from pg2crate.backfills`);
  assert.equal(Number(copied.rows[0].n), 300_000);
  assert.equal(Number(copied.rows[0].events), method === 'outbox' ? 300_000 : 0);
  assert.equal(await assertSameRows(src, dst, 'public.big', 'public.big', ['id']), 300_000);
});
}

/** A direct load of 100,000 rows of `table` in chunks of 500, a tenth of the way through. */
async function loadUnderWay(table: string): Promise<{ src: pg.Pool; dst: pg.Pool; rep: Running }> {
  const { s, d, src, dst } = await databases();
  await src.query(`create table ${table} (id int primary key, v text)`);
  await src.query(`insert into ${table} select g, 'before ' || g from generate_series(1, 100000) g`);
  const rep = await startReplicator(makeConfig({
    DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: `public.${table}`, PG2CRATE_BACKFILL_CHUNK_ROWS: '500', PG2CRATE_INITIAL_LOAD: 'direct',
  }));
  await waitFor('part of the copy', async () => {
    const r = await src.query(`select rows_copied from pg2crate.backfills`);
    return Number(r.rows[0]?.rows_copied ?? 0) >= 10_000;
  }, 60_000, 10).catch(async (err: unknown) => {
    await rep.stop();
    throw err;
  });
  return { src, dst, rep };
}

test('a table truncated during its direct initial load ends equal, the copy starting over when the truncate reached the target first', async () => {
  const { src, dst, rep } = await loadUnderWay('tr');
  try {
    // Rows after the copy's position: the copy goes on writing chunks after the drainer applied the truncate.
    await src.query(`begin; truncate tr; insert into tr select g, 'after ' || g from generate_series(50001, 100000) g; commit`);
    await src.query(`update tr set v = 'changed' where id % 10 = 0`);
    await waitFor('the copy to finish', () => backfillDone(src), 120_000, 100);
    await waitCaughtUp(src, 'pg2crate', 120_000);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.tr', 'public.tr', ['id']), 50_000);
  // Usually the copy started over after the truncate (50,000 rows copied). But TRUNCATE is not
  // MVCC-safe: a chunk read whose snapshot was taken before the truncate committed (it waited for
  // the truncate's lock) sees the emptied table, so the copy can end at its position before the
  // drainer applies the truncate. Then the truncate, applied after every chunk, empties the target
  // of the copy too, and the rows after it arrive as changes: no start over is needed, and the
  // target is equal all the same (above), which is what this test holds to.
  const job = await src.query(`select rows_copied::int8 as n from pg2crate.backfills`);
  process.stderr.write(`truncate during a direct load: ${Number(job.rows[0].n) === 50_000 ? 'the copy started over' : `the copy ended at ${job.rows[0].n} rows, before the truncate was applied`}\n`);
});

test('a chunk read that waited for a truncate and saw the emptied table ends the copy early, and the target still ends equal', async () => {
  const { src, dst, rep } = await loadUnderWay('tr2');
  const writer = await src.connect();
  try {
    // The truncate holds its lock until the copier's next chunk read waits for it: that read's
    // snapshot is older than the truncate, so it finds the table empty (TRUNCATE is not MVCC-safe).
    await writer.query('begin');
    await writer.query('truncate tr2');
    await waitFor('a chunk read waiting for the truncate', async () => (await src.query(
      `select 1 from pg_locks where relation = 'public.tr2'::regclass and not granted`)).rows.length > 0, 30_000, 10);
    await writer.query(`insert into tr2 select g, 'after ' || g from generate_series(50001, 100000) g`);
    await writer.query('commit');
    await src.query(`update tr2 set v = 'changed' where id % 10 = 0`);
    await waitFor('the copy to finish', () => backfillDone(src), 120_000, 100);
    await waitCaughtUp(src, 'pg2crate', 120_000);
  } finally {
    writer.release();
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.tr2', 'public.tr2', ['id']), 50_000);
  const n = Number((await src.query(`select rows_copied from pg2crate.backfills`)).rows[0].rows_copied);
  process.stderr.write(`a chunk read behind a truncate: ${n === 50_000 ? 'the copy started over (the truncate was applied first)' : `the copy ended at ${n} rows`}\n`);
});

test('a column dropped during a direct initial load: the load describes the table again and goes on, ending equal', async () => {
  const { src, dst, rep } = await loadUnderWay('dc');
  try {
    // The chunks read from here on name a column that is gone (42703): without describing the
    // table again the copier stopped, and the load never ended.
    await src.query(`alter table dc drop column v`);
    await src.query(`insert into dc values (100001)`);
    await waitFor('the copy to finish', () => backfillDone(src), 120_000, 100);
    await waitCaughtUp(src, 'pg2crate', 120_000);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.dc', 'public.dc', ['id'], ['id']), 100_001);
});

test('retention keeps the events a running direct load has still to re-send, and truncates them once it is done', async () => {
  const { s, d, src } = await databases();
  await src.query(`create table kept (id int primary key, v text)`);
  const rep = await startReplicator(makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.kept' }));
  try {
    await waitFor('the (empty) initial load', () => backfillDone(src), 60_000, 50);
    await src.query(`insert into kept select g, 'v' || g from generate_series(1, 100) g`);
    await waitCaughtUp(src, 'pg2crate', 60_000);
  } finally {
    await rep.stop();
  }
  const before = (await src.query(`select count(*)::int as n from pg2crate.outbox where table_id = (select id from pg2crate.tables)`)).rows[0].n;
  assert.equal(before, 100);
  // A job still copying since a snapshot in which none of these writes is visible.
  await src.query(`update pg2crate.backfills set status = 'running', copy_done = false, snapshot = '1:1:'`);
  await src.query(`update pg2crate.state set gen = 1`);
  const opts = { schema: 'pg2crate', rotateBytes: 1 << 30, lockTimeoutMs: 1000, logger: testLogger() };
  const held = await runRetention(src, opts);
  assert.deepEqual(held.truncated, [], 'a generation with events the load has to re-send was truncated');
  assert.equal((await src.query(`select count(*)::int as n from pg2crate.outbox_0`)).rows[0].n, 100);
  await src.query(`update pg2crate.backfills set status = 'done'`);
  const freed = await runRetention(src, opts);
  assert.deepEqual(freed.truncated, [0]);
  assert.equal((await src.query(`select count(*)::int as n from pg2crate.outbox`)).rows[0].n, 0);
});

test('a direct load whose binary chunk the target refuses sends that chunk row by row and parks only the rows at fault', async () => {
  const { s, d, src, dst } = await databases();
  await src.query(`create table picky (id int primary key, v text not null)`);
  await src.query(`insert into picky select g, case when g in (777, 4242, 9999) then 'bad' else 'ok ' || g end from generate_series(1, 12000) g`);
  // The target table exists already, with a rule the source does not have.
  await dst.query(`create table picky (id int primary key, v text not null check (v <> 'bad'))`);
  const rep = await startReplicator(makeConfig({
    DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.picky', PG2CRATE_BACKFILL_CHUNK_ROWS: '5000', PG2CRATE_REJECT_ATTEMPTS: '1',
  }));
  try {
    await waitFor('the copy to finish', () => backfillDone(src), 60_000, 50);
    await waitCaughtUp(src, 'pg2crate', 60_000);
  } finally {
    await rep.stop();
  }
  assert.equal(Number((await dst.query(`select count(*) as n from picky`)).rows[0].n), 11_997);
  const letters = await src.query(`select op, data ->> 'id' as id, error_code from pg2crate.dead_letters order by (data ->> 'id')::int`);
  assert.deepEqual(letters.rows.map((r) => [r.op, r.id, r.error_code]), [['B', '777', '23514'], ['B', '4242', '23514'], ['B', '9999', '23514']]);
});

test('under PG2CRATE_DEAD_LETTERS=halt a direct load the target refuses stops the replicator, and resumes once the target is fixed', async () => {
  const { s, d, src, dst } = await databases();
  await src.query(`create table picky (id int primary key, v text not null)`);
  await src.query(`insert into picky select g, case when g = 7777 then 'bad' else 'ok ' || g end from generate_series(1, 12000) g`);
  await dst.query(`create table picky (id int primary key, v text not null, constraint no_bad check (v <> 'bad'))`);
  const config = makeConfig({
    DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.picky', PG2CRATE_BACKFILL_CHUNK_ROWS: '5000',
    PG2CRATE_REJECT_ATTEMPTS: '1', PG2CRATE_DEAD_LETTERS: 'halt',
  });
  const first = await startReplicator(config);
  try {
    await assert.rejects(first.done, (err: Error) => {
      assert.equal(err.name, 'HaltError');
      assert.match(err.message, /rejected 1 copied row\(s\) of public\.picky \(target error code 23514\)/);
      assert.match(err.message, /PG2CRATE_DEAD_LETTERS=park/);
      // The refused value stays out of the error (it may be personal data).
      assert.doesNotMatch(err.message, /'bad'|"bad"/);
      return true;
    });
  } finally {
    await first.stop();
  }
  // Nothing was parked, the load is not done, and the chunks before the refused one stay confirmed.
  assert.equal((await src.query(`select count(*)::int as n from pg2crate.dead_letters`)).rows[0].n, 0);
  assert.equal(await backfillDone(src), false);
  const kept = Number((await dst.query(`select count(*) as n from picky`)).rows[0].n);
  assert.ok(kept >= 5000 && kept < 12000, `${kept} rows in the target after the halt`);

  // A change made while the replicator is stopped is not lost either.
  await src.query(`update picky set v = 'changed' where id = 1`);
  await dst.query(`alter table picky drop constraint no_bad`);
  const second = await startReplicator(config);
  try {
    await waitFor('the copy to finish', () => backfillDone(src), 60_000, 50);
    await waitCaughtUp(src, 'pg2crate', 60_000);
  } finally {
    await second.stop();
  }
  await assertSameRows(src, dst, 'public.picky', 'public.picky', ['id']);
  assert.equal((await src.query(`select count(*)::int as n from pg2crate.dead_letters`)).rows[0].n, 0);
});
