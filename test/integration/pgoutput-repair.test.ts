// In pgoutput mode, the commands that write their events into the outbox reach the target through
// the slot (the outbox is published): `verify --repair` fixes a row changed in the target,
// `dead-letters retry` sends a parked key's current row, and `backfill` copies a table again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitFor } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';
import { backfill } from '../../src/commands/backfill.js';
import { deadLetters, retryDeadLetters } from '../../src/commands/dead-letters.js';
import { switchCapture } from '../../src/commands/switch-capture.js';
import { verify } from '../../src/commands/verify.js';
import { needsServer } from '../helpers/server-version.js';

/** The whole file is about pgoutput mode, which pg2crate refuses before PostgreSQL 14. */
const skip = needsServer(14, 'pgoutput mode');

const bed = clusterForFile();
let slots = 0;

/** Fresh databases with public.t loaded in trigger mode, then switched to pgoutput. */
async function setup(more: Record<string, string> = {}): Promise<{ src: pg.Pool; dst: pg.Pool; env: Record<string, string> }> {
  const { src, dst, env: base } = await bed.settled(
    `create table public.t (id int primary key, v text); insert into public.t select g, 'v' || g from generate_series(1, 300) g`,
    { PG2CRATE_TABLES: 'public.t', PG2CRATE_SLOT: `repair_${++slots}`, PG2CRATE_RETENTION_CRON: 'off', ...more },
  );
  const r = new Runner(makeConfig(base), testLogger());
  try {
    assert.equal(await switchCapture(r, 'pgoutput'), 'switched');
  } finally {
    await r.close();
  }
  return { src, dst, env: { ...base, PG2CRATE_CAPTURE: 'pgoutput' } };
}

test('pgoutput mode: verify --repair fixes rows changed in the target, through the slot', { skip }, async () => {
  const { src, dst, env } = await setup();
  const rep = await startReplicator(makeConfig(env));
  try {
    await src.query(`update t set v = 'new' where id = 1`);
    await waitSlotCaughtUp(src, env.PG2CRATE_SLOT);
    await dst.query(`update t set v = 'wrong' where id = 7; delete from t where id = 8; insert into t values (1000, 'extra')`);
    const res = await verify(rep.runner, { repair: true, json: false, out: () => {} });
    const r = res.reports.find((x) => x.table === 'public.t');
    assert.equal(r?.repair?.upserts, 2);
    assert.equal(r?.repair?.deletes, 1);
    assert.notEqual(r?.repair?.catchUp, 'timeout');
    assert.equal(r?.repair?.catchUp, 'caught-up');
    const again = await verify(rep.runner, { repair: false, json: false, out: () => {} });
    assert.equal(again.equal, true);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.t', 'public.t', ['id']), 300);
});

test('pgoutput mode: a dead letter retried arrives', { skip }, async () => {
  const { src, dst, env } = await setup({ PG2CRATE_REJECT_ATTEMPTS: '1' });
  await dst.query(`alter table t add constraint t_v_check check (v <> 'refused')`);
  const rep = await startReplicator(makeConfig(env));
  try {
    await src.query(`update t set v = 'refused' where id = 5`);
    await src.query(`update t set v = 'after' where id = 6`);
    await waitSlotCaughtUp(src, env.PG2CRATE_SLOT);
    assert.equal((await deadLetters(rep.runner)).length, 1);
    assert.equal((await dst.query(`select v from t where id = 6`)).rows[0].v, 'after');
    assert.equal((await dst.query(`select v from t where id = 5`)).rows[0].v, 'v5');
    await dst.query(`alter table t drop constraint t_v_check`);
    await src.query(`update t set v = 'fixed later' where id = 5`);
    await waitSlotCaughtUp(src, env.PG2CRATE_SLOT);
    // the target holds the newest row already: make it differ, so that only the retry can fix it
    await dst.query(`update t set v = 'stale' where id = 5`);
    assert.equal(await retryDeadLetters(rep.runner, 'all'), 1);
    await waitFor('the retried row', async () => (await dst.query(`select v from t where id = 5`)).rows[0].v === 'fixed later');
    assert.equal((await deadLetters(rep.runner)).length, 0);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.t', 'public.t', ['id']), 300);
});

test('pgoutput mode: backfill copies a table again through the slot, with writers running', { skip }, async () => {
  const { src, dst, env } = await setup({ PG2CRATE_BACKFILL_CHUNK_ROWS: '50' });
  await dst.query(`delete from t`);
  // The writers touch only ids 1-50 (and new ids): rows 51-300 can reach the target only by the copy.
  const stop = { now: false };
  const writer = (async () => {
    for (let i = 0; !stop.now; i++) {
      await src.query(`update t set v = 'w' || $1 where id = $2`, [i, 1 + (i % 50)]);
      await src.query(`insert into t values ($1, 'n') on conflict (id) do nothing`, [1000 + i]);
    }
  })();
  const runner = new Runner(makeConfig(env), testLogger());
  try {
    await backfill(runner, []);
  } finally {
    stop.now = true;
    await writer;
    await runner.close();
  }
  const rep = await startReplicator(makeConfig(env));
  try {
    await waitSlotCaughtUp(src, env.PG2CRATE_SLOT);
  } finally {
    await rep.stop();
  }
  const n = await assertSameRows(src, dst, 'public.t', 'public.t', ['id']);
  assert.ok(n >= 300, `${n} rows`);
});

test('pgoutput mode: retention truncates outbox events once the slot has applied them, and never before', { skip }, async () => {
  const { src, dst, env } = await setup({ PG2CRATE_RETENTION_ROTATE_KB: '8' });
  await dst.query(`delete from t`);
  const pending = async () => Number((await src.query(`select count(*) as n from pg2crate.outbox where op = 'B'`)).rows[0].n);
  // Events as an initial load writes them, while no replicator runs: the target gets its rows only from them.
  await src.query(
    `insert into pg2crate.outbox (gen, table_id, op, data)
     select s.gen, t.id, 'B', jsonb_build_object('id', g, 'v', 'v' || g) from pg2crate.state s, pg2crate.tables t, generate_series(1, 300) g`,
  );
  const admin = new Runner(makeConfig(env), testLogger());
  try {
    // The first run moves writers to the next generation, the second may truncate the old one: not yet.
    const first = await admin.retention();
    assert.notEqual(first.rotatedTo, null, 'the generation holding the events should have rotated');
    assert.deepEqual((await admin.retention()).truncated, []);
    assert.equal(await pending(), 300);
    const rep = await startReplicator(makeConfig(env));
    try {
      await waitFor('the events to reach the target', async () => Number((await dst.query(`select count(*) as n from t`)).rows[0].n) === 300, 30_000);
      await waitFor('retention to truncate the applied events', async () => {
        await admin.retention();
        return (await pending()) === 0;
      }, 30_000, 300);
    } finally {
      await rep.stop();
    }
  } finally {
    await admin.close();
  }
  await assertSameRows(src, dst, 'public.t', 'public.t', ['id']);
});
