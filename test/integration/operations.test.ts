import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';
import type { Sink } from '../../src/sink/sink.js';
import { migrate } from '../../src/commands/migrate.js';
import { status } from '../../src/commands/status.js';

const bed = clusterForFile();

async function databases() {
  const { srcUrl: s, dstUrl: d, src, dst } = await bed.databases(8);
  await src.query(`create table t (id int primary key, v text)`);
  return { s, d, src, dst };
}

test('a catch-up scheduled every second applies changes, and a run that would overlap a slow one is skipped', async () => {
  const { s, d, src, dst } = await databases();
  let slow = false;
  const wrapSink = (sink: Sink): Sink => ({
    name: sink.name, start: () => sink.start(), prepare: (t) => sink.prepare(t), stop: () => sink.stop(),
    async apply(b) {
      if (slow) await new Promise((r) => setTimeout(r, 2500));
      return sink.apply(b);
    },
  });
  const config = makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t', PG2CRATE_CATCHUP_CRON: '* * * * * *', PG2CRATE_RETENTION_CRON: 'off' });
  const rep = await startReplicator(config, testLogger(), { wrapSink });
  try {
    await src.query(`insert into t select g, 'a' from generate_series(1, 100) g`);
    await waitFor('scheduled catch-up to apply the rows', async () => (await dst.query('select count(*)::int as n from t').catch(() => ({ rows: [{ n: 0 }] }))).rows[0].n === 100, 20_000);
    slow = true;
    await src.query(`update t set v = 'b'`);
    await waitFor('a skipped run', () => (rep.runner.schedulerStats?.get('catch-up')?.skipped ?? 0) > 0, 20_000);
    await waitFor('the slow run to apply', async () => (await dst.query(`select count(*)::int as n from t where v = 'b'`)).rows[0].n === 100, 20_000);
    await waitFor('the slow run to finish', () => (rep.runner.schedulerStats?.get('catch-up')?.runs ?? 0) >= 2, 20_000);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.t', 'public.t', ['id']), 100);
});

test('retention under 4 writers never removes an unapplied event and keeps the outbox bounded over 20 rounds', async () => {
  const { s, d, src, dst } = await databases();
  const config = makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t', PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_RETENTION_ROTATE_KB: '256' });
  // First, with no drainer running, retention must leave every event in place.
  const admin = new Runner(config, testLogger());
  await migrate(admin);
  await src.query(`insert into t select g, repeat('x', 200) from generate_series(1, 5000) g`);
  for (let i = 0; i < 3; i++) await admin.retention();
  assert.equal(Number((await src.query('select count(*) from pg2crate.outbox')).rows[0].count), 5000, 'retention removed unapplied events');
  await admin.close();

  const rep = await startReplicator(config);
  let stop = false;
  const writer = async (w: number) => {
    let i = 0;
    while (!stop) {
      const id = 10_000 + w * 1_000_000 + (i++ % 3000);
      await src.query(`insert into t values ($1, repeat('y', 300)) on conflict (id) do update set v = excluded.v || $2`, [id, String(i)]);
    }
  };
  const writers = [0, 1, 2, 3].map(writer);
  const sizes: number[] = [];
  try {
    for (let round = 0; round < 20; round++) {
      await new Promise((r) => setTimeout(r, 300));
      const res = await rep.runner.retention();
      sizes.push(res.outboxBytes);
    }
  } finally {
    stop = true;
    await Promise.all(writers);
  }
  await waitCaughtUp(src);
  await rep.stop();
  assert.equal(await assertSameRows(src, dst, 'public.t', 'public.t', ['id']), Number((await src.query('select count(*) from t')).rows[0].count));
  // Bounded: never more than about three generations of 256 kB plus what was in flight.
  const max = Math.max(...sizes.slice(5));
  assert.ok(max < 16 * 1024 * 1024, `outbox grew to ${max} bytes: ${sizes.join(', ')}`);
  assert.ok(sizes.some((b, i) => i > 0 && b < sizes[i - 1]), `retention never shrank the outbox: ${sizes.join(', ')}`);
});

test('retention skips a generation with unapplied events without asking for its lock, so the outbox readers never wait behind it', async () => {
  const { s, d, src, dst } = await databases();
  const config = makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t', PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_RETENTION_ROTATE_KB: '8' });
  const admin = new Runner(config, testLogger());
  await migrate(admin);
  await src.query(`insert into t select g, repeat('a', 100) from generate_series(1, 200) g`);
  assert.deepEqual((await admin.retention()).rotatedTo, 1, 'the first run moves writers on to generation 1');
  // Generation 0 holds 200 unapplied events, and a reader holds it as a window read does.
  const reader = await src.connect();
  const seen: string[] = [];
  try {
    await reader.query('begin');
    await reader.query('select count(*) from pg2crate.outbox_0');
    let running = true;
    const watch = (async () => {
      while (running) {
        const { rows } = await src.query(
          `select mode, granted from pg_locks where relation = 'pg2crate.outbox_0'::regclass and mode = 'AccessExclusiveLock'`,
        );
        for (const r of rows) seen.push(`${r.mode} granted=${r.granted}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const res = await admin.retention();
    running = false;
    await watch;
    assert.deepEqual(res.truncated, []);
  } finally {
    await reader.query('rollback');
    reader.release();
  }
  // Before, the run took the exclusive lock first and counted under it: the request queued behind
  // the reader, and every later reader of the outbox queued behind the request.
  assert.deepEqual(seen, [], 'retention asked for an exclusive lock on a generation it could not truncate');
  assert.equal(Number((await src.query('select count(*) from pg2crate.outbox_0')).rows[0].count), 200);
  await admin.close();
  // Once applied, the generation goes, on a later run at the latest: a run that does not get the
  // lock within its timeout, or does not yet see every event applied, leaves it for the next (which
  // of the two made the first run right after the catch-up truncate nothing once in CI is not known).
  const rep = await startReplicator(config);
  try {
    await waitCaughtUp(src);
    await waitFor('generation 0 truncated', async () => (await rep.runner.retention()).truncated.includes(0), 10_000, 100);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.t', 'public.t', ['id']), 200);
});

test('status and /metrics report the backlog of a known number of writes, and zero after the drain', async () => {
  const { s, d, src } = await databases();
  const config = makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t', PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_HTTP_PORT: '0' });
  const admin = new Runner(config, testLogger());
  await migrate(admin);
  await src.query(`insert into t select g, 'a' from generate_series(1, 1234) g`);
  await src.query(`update t set v = 'b' where id <= 10`);
  const before = await status(admin);
  await admin.close();
  // 1234 inserts + 10 updates + the initial-load chunk of the (then empty) table: backfill rows are
  // not counted here because the table was empty when it was added.
  assert.equal(before.backlogEvents, 1244);
  const rep = await startReplicator(config);
  try {
    await waitCaughtUp(src);
    const port = rep.runner.httpPort;
    assert.ok(port);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(metrics, /^pg2crate_backlog_events 0$/m);
    assert.match(metrics, /^pg2crate_events_applied_total \d+$/m);
    const applied = Number(/^pg2crate_events_applied_total (\d+)$/m.exec(metrics)![1]);
    assert.ok(applied >= 1244, `applied ${applied}`);
    const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(ready.status, 200, await ready.text());
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
    const after = await status(rep.runner);
    assert.equal(after.backlogEvents, 0);
    assert.equal(after.lagSeconds, 0);
  } finally {
    await rep.stop();
  }
});
