// A table truncated and refilled while the switch to pgoutput builds its slot is still decoded
// from the slot afterwards, and the switch loses nothing and applies nothing twice.
//
// PostgreSQL builds a slot's catalog snapshot in three phases (snapbuild.c); commits are not
// decoded before the second, so a catalog change committed in the first one is missing from the
// historic snapshots built in the second whenever an older transaction is still open then. The
// exported snapshot is right, but every later decoding session rebuilds those wrong snapshots from
// the slot's start, and a transaction that writes the truncated table after the slot's consistent
// point fails ("could not map filenode … to relation OID") at every start, for ever. The soak found
// it; here the interleaving is driven step by step, each step waiting until the walsender that
// creates the slot waits for the transaction it must (pg_locks):
//   L   a long transaction, open before the slot is created: the slot waits for it (phase 1)
//   M   opens during phase 1 and stays open across phase 2, so phase 2's snapshots start below C
//   C   TRUNCATE scratch and refill it, committed in phase 1 (the soak's scratch transaction)
//   W   writes scratch during phase 2 and commits after the slot's consistent point
// The switch must still hand over exactly: C and W arrive once, from the outbox or the slot.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { assertNoLeaks, assertSameRows, makeConfig, pool, settle, startReplicator, testLogger, waitFor } from '../helpers/replication.js';
import { RecordingSink } from '../helpers/sinks.js';
import { switchCapture } from '../helpers/switch-writers.js';
import type { Sink } from '../../src/sink/sink.js';

const SLOT = 'catalog_change';
let cluster: Cluster;
let srcUrl: string;
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;
const open: pg.Client[] = [];

before(async () => {
  cluster = await startCluster();
  srcUrl = await cluster.createDatabase('src');
  const dstUrl = await cluster.createDatabase('dst');
  src = pool(srcUrl, 6);
  dst = pool(dstUrl);
  await src.query(`create table public.scratch (id integer primary key, v text not null); insert into scratch select g, 'seed' from generate_series(1, 50) g`);
  env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.scratch', PG2CRATE_SLOT: SLOT };
  await settle(makeConfig(env), src);
});

after(async () => {
  for (const c of open) await c.end().catch(() => {});
  await src?.end();
  await dst?.end();
  await cluster?.stop();
  await assertNoLeaks();
});

/** A connection with a transaction open and an xid taken; returns the xid. */
async function openWithXid(name: string): Promise<[pg.Client, string]> {
  const c = new pg.Client({ connectionString: srcUrl, application_name: name });
  c.on('error', () => {});
  await c.connect();
  open.push(c);
  await c.query('begin');
  return [c, (await c.query<{ x: string }>(`select pg_current_xact_id()::text as x`)).rows[0].x];
}

/** Waits until the walsender named `app` waits for transaction `xid` to end. */
async function waitsFor(app: string, xid: string, what: string): Promise<void> {
  await waitFor(`${app} to wait for ${what}`, async () => {
    const res = await src.query(
      `select 1 from pg_locks l join pg_stat_activity a using (pid)
        where a.application_name = $1 and l.locktype = 'transactionid' and not l.granted and l.transactionid::text = $2`,
      [app, xid],
    );
    return res.rows.length > 0;
  });
}

/**
 * Runs the interleaving of the header around a slot that `create` starts creating on a walsender
 * named `app`: L open before, M and C during the first phase, W (and a younger commit) during the
 * second, W committed once the walsender finished its command.
 */
async function createWhileScratchIsTruncated(app: string, create: () => Promise<unknown>): Promise<void> {
  const [long, lx] = await openWithXid('long');
  const creating = create();
  creating.catch(() => {});
  await waitsFor(app, lx, 'the long transaction');
  const [m, mx] = await openWithXid('older');
  await src.query(`begin; truncate scratch; insert into scratch select g, 'refilled' from generate_series(1, 150) g; commit`);
  await long.query('commit');
  await waitsFor(app, mx, 'the older transaction');
  const [w] = await openWithXid('writer');
  await w.query(`insert into scratch values (1000, 'written while the slot is built') on conflict (id) do update set v = excluded.v || ' again'`);
  // A younger transaction that commits now, as the soak's writers do all the time.
  await src.query(`insert into scratch values (1001, 'committed while the slot is built') on conflict (id) do update set v = excluded.v || ' again'`);
  await m.query('commit');
  // The slot is consistent once its walsender finished the command (W, younger than M, is not waited for).
  await waitFor(`${app} to finish`, async () => {
    const res = await src.query(`select 1 from pg_stat_activity where application_name = $1 and state = 'active'`, [app]);
    return res.rows.length === 0;
  });
  await w.query('commit');
  await creating;
}

/** How often each scratch row was applied, by id, across the switch and the replicator after it. */
const applied = new Map<number, number>();
function counting(sink: Sink): Sink {
  return new RecordingSink(sink, {
    after(_call, batches) {
      for (const b of batches) {
        if (b.table.sourceTable !== 'scratch') continue;
        for (const c of b.upserts) applied.set(Number(c.row?.id), (applied.get(Number(c.row?.id)) ?? 0) + 1);
      }
    },
  });
}

test('a table truncated while the switch builds its slot is decoded from the slot afterwards, and nothing is lost or applied twice', async () => {
  await createWhileScratchIsTruncated(`pg2crate ${SLOT} create`, () => switchCapture(makeConfig(env), testLogger(), 'pgoutput', { wrapSink: counting }));

  // After the switch: writes that only the slot carries.
  await src.query(`insert into scratch values (2000, 'after the switch'); update scratch set v = 'updated' where id = 5`);
  const written = (await src.query<{ lsn: string }>(`select pg_current_wal_insert_lsn()::text as lsn`)).rows[0].lsn;
  await waitFor('the WAL to be flushed', async () => (await src.query(`select pg_current_wal_flush_lsn() >= $1::pg_lsn as ok`, [written])).rows[0].ok);
  const slots = await src.query<{ slot_name: string }>(`select slot_name from pg_replication_slots order by 1`);
  assert.deepEqual(slots.rows.map((r) => r.slot_name), [SLOT], 'the switch leaves exactly its slot behind');

  // Decoding from the slot's start, as every new session does: on a copy, so the slot stays as it is.
  const probe = new pg.Client({ connectionString: srcUrl });
  await probe.connect();
  try {
    await probe.query(`select pg_copy_logical_replication_slot($1, 'probe', true)`, [SLOT]);
    const res = await probe.query<{ n: number }>(
      `select count(*)::int as n from pg_logical_slot_peek_binary_changes('probe', null, null, 'proto_version', '1', 'publication_names', '"pg2crate"')`,
    );
    assert.ok(res.rows[0].n > 0, 'the slot holds the writes made after the switch');
  } catch (err) {
    assert.fail(`the slot cannot be decoded: ${(err as Error).message}`);
  } finally {
    await probe.end();
  }

  const p = await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' }), testLogger(), { wrapSink: counting });
  try {
    await waitSlotCaughtUp(src, SLOT);
  } finally {
    await p.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.scratch', 'public.scratch', ['id']), 153);
  assert.equal(applied.get(1000), 1, 'the transaction that committed while the switch built its slot is applied once');
  assert.equal(applied.get(2000), 1, 'the write after the switch is applied once');
});

test('a slot created the way PostgreSQL cannot decode stops the replicator with the way out instead of failing at every start', async () => {
  // The slot as switch-capture made it before: created with an exported snapshot, used as it is.
  await src.query(`select pg_drop_replication_slot($1)`, [SLOT]);
  const repl = new pg.Client({ connectionString: srcUrl, replication: 'database', application_name: 'plain create' } as pg.ClientConfig);
  repl.on('error', () => {});
  await repl.connect();
  try {
    await createWhileScratchIsTruncated('plain create', () => repl.query(`CREATE_REPLICATION_SLOT ${SLOT} LOGICAL pgoutput`));
  } finally {
    await repl.end();
  }
  const p = await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' }), testLogger());
  try {
    const outcome = await Promise.race([p.done.then(() => null, (err: unknown) => err), new Promise((r) => setTimeout(() => r('still running'), 30_000))]);
    assert.ok(outcome instanceof Error, `the replicator should stop, got ${String(outcome)}`);
    assert.equal(outcome.name, 'HaltError');
    assert.match(outcome.message, /slot catalog_change cannot be decoded \(could not map file(node|number) .*\).*`pg2crate slot drop --force`, `pg2crate switch-capture trigger` and `pg2crate backfill`/);
  } finally {
    await p.stop();
  }
});
