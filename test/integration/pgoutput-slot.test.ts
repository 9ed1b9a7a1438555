// The slot's safety: an idle publication on a busy database holds back no WAL (keepalives are
// acknowledged when nothing is pending), `status` shows the WAL a slot retains and warns past
// PG2CRATE_SLOT_WARN_MB, `slot drop` refuses while the stream reads the slot unless forced; and a
// transaction of a million rows streams through with bounded memory.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { memoryOf, runCli, spawnReplicator, waitForLog } from '../helpers/child-replicator.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { makeConfig, startReplicator, testLogger, waitFor } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';
import { switchCapture } from '../../src/commands/switch-capture.js';
import { needsServer } from '../helpers/server-version.js';

/** The whole file is about pgoutput mode, which pg2crate refuses before PostgreSQL 14. */
const skip = needsServer(14, 'pgoutput mode');

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;

before(async () => {
  if (skip) return;
  ({ src, dst, env } = await bed.settled(`
    create table public.quiet (id integer primary key, v text);
    create table public.busy (id bigserial primary key, payload text);
    create table public.wide_enough (id integer primary key, grp smallint not null, label text not null)`,
  { PG2CRATE_TABLES: 'public.quiet, public.wide_enough', PG2CRATE_SLOT: 'slot_test', PG2CRATE_PAGE_SIZE: '5000' }));
  const r = new Runner(makeConfig(env), testLogger());
  try {
    await switchCapture(r, 'pgoutput');
  } finally {
    await r.close();
  }
  env.PG2CRATE_CAPTURE = 'pgoutput';
});

async function retained(): Promise<number> {
  const res = await src.query<{ n: string }>(`select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8::text as n from pg_replication_slots where slot_name = 'slot_test'`);
  return Number(res.rows[0].n);
}

test('a publication whose tables are idle on a busy database does not hold back WAL', { skip }, async () => {
  const r = await startReplicator(makeConfig({ ...env, PG2CRATE_HTTP_PORT: '0' }), testLogger());
  try {
    await waitFor('the replicator to stream', async () => (await src.query(`select active from pg_replication_slots where slot_name = 'slot_test'`)).rows[0]?.active === true);
    const start = await src.query<{ lsn: string }>(`select pg_current_wal_lsn()::text as lsn`);
    // 16 MB and more of WAL from a table nobody publishes.
    for (let i = 0; i < 40; i++) await src.query(`insert into busy (payload) select repeat(md5(g::text), 8) from generate_series(1, 2000) g`);
    const written = Number((await src.query<{ n: string }>(`select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::int8::text as n`, [start.rows[0].lsn])).rows[0].n);
    assert.ok(written > 16 * 1024 * 1024, `only ${written} bytes of WAL written`);
    await waitFor('the slot to confirm the busy WAL', async () => (await retained()) < 1024 * 1024, 30_000);
    await waitFor('the HTTP server', () => r.runner.httpPort);
    const metrics = await (await fetch(`http://127.0.0.1:${r.runner.httpPort}/metrics`)).text();
    const gauge = /^pg2crate_slot_retained_wal_bytes (\d+)$/m.exec(metrics);
    assert.ok(gauge && Number(gauge[1]) < 16 * 1024 * 1024, `retained WAL gauge: ${gauge?.[0]}`);
    assert.match(metrics, /^pg2crate_slot_over_warn 0$/m);
  } finally {
    await r.stop();
  }
});

test('status shows the WAL the slot retains and warns past PG2CRATE_SLOT_WARN_MB; slot drop refuses while the stream reads it', { skip }, async () => {
  // Nobody drains now: the slot holds back what is written.
  for (let i = 0; i < 10; i++) await src.query(`insert into busy (payload) select repeat(md5(g::text), 8) from generate_series(1, 2000) g`);
  const st = await runCli({ ...env, PG2CRATE_SLOT_WARN_MB: '1' }, ['status', '--json']);
  assert.equal(st.code, 0, st.stderr);
  const json = JSON.parse(st.stdout) as { mode: string; slot: { name: string; retainedBytes: number; warn: boolean; active: boolean } };
  assert.equal(json.mode, 'pgoutput');
  assert.equal(json.slot.name, 'slot_test');
  assert.ok(json.slot.retainedBytes > 1024 * 1024, `retained ${json.slot.retainedBytes}`);
  assert.equal(json.slot.warn, true);
  const text = await runCli({ ...env, PG2CRATE_SLOT_WARN_MB: '1' }, ['status']);
  assert.match(text.stdout, /^slot +slot_test: inactive, retains [\d.]+ MB of WAL$/m);
  assert.match(text.stdout, /^WARNING: slot slot_test retains more WAL than PG2CRATE_SLOT_WARN_MB \(1\)/m);

  const refused = await runCli(env, ['slot', 'drop']);
  assert.equal(refused.code, 2);
  assert.match(refused.stderr.trim(), /^pg2crate: stream main is in pgoutput mode and reads slot slot_test: .* pass --force/);
  assert.equal((await src.query(`select count(*)::int as n from pg_replication_slots`)).rows[0].n, 1);
});

test('a transaction of a million rows streams through with memory bounded by the page size', { skip }, async () => {
  const child = spawnReplicator(env, ['start'], 'pgoutput-big');
  await waitForLog(child, 'holding the stream');
  await src.query(`insert into wide_enough select g, g % 100, 'label ' || g from generate_series(1, 1000000) g`);
  let peak = 0;
  const sample = setInterval(() => { const m = memoryOf(child.pid); if (m) peak = Math.max(peak, m.peak); }, 200);
  try {
    await waitSlotCaughtUp(src, 'slot_test', 300_000);
  } finally {
    clearInterval(sample);
  }
  const m = memoryOf(child.pid);
  if (m) peak = Math.max(peak, m.peak);
  child.kill('SIGTERM');
  assert.equal(await child.exited, 0, child.log().slice(-2000));
  const [a, b] = await Promise.all([src, dst].map((db) => db.query(`select count(*)::int as n, sum(grp)::int8::text as s from wide_enough`)));
  assert.deepEqual(b.rows[0], a.rows[0]);
  assert.equal(a.rows[0].n, 1_000_000);
  assert.ok(peak > 0 && peak < 400 * 1024 * 1024, `peak RSS ${Math.round(peak / 1048576)} MB`);
  console.log(`million-row transaction through pgoutput: peak RSS ${Math.round(peak / 1048576)} MB`);
});

test('slot drop --force drops it; a replicator then says the slot is gone and how to resync, and the switch back to triggers works', { skip }, async () => {
  const forced = await runCli(env, ['slot', 'drop', '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /dropped slot slot_test/);
  const res = await runCli(env, ['catch-up']);
  assert.equal(res.code, 2);
  assert.match(res.stderr.trim(), /replication slot slot_test does not exist .* switch-capture trigger/);
  const back = await runCli(env, ['switch-capture', 'trigger']);
  assert.equal(back.code, 0, back.stderr);
  const mode = await src.query(`select mode from pg2crate.capture`);
  assert.equal(mode.rows[0].mode, 'trigger');
});
