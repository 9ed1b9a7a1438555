// A partitioned table without a primary key (common: a partitioned primary key must hold every
// partition column), captured by key columns named in the configuration file, two of them, one
// nullable (from 15 on; a Postgres target keeps NULL keys apart only there). Trigger mode: every write through the table, a partition or a sub-partition, rows
// moving between partitions by a key change, a partition created later and a partition's
// TRUNCATE. pgoutput mode: the switch refuses while a partition lacks the table's REPLICA IDENTITY
// FULL (Postgres checks the partition's own, and would refuse the application's updates), naming
// each partition and the fix; after the fix the slot sends the same writes, and a partition
// created later is given FULL by the partition watch, so the application can update it.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { Runner } from '../../src/runner.js';
import { switchCapture } from '../../src/commands/switch-capture.js';
import { TableError } from '../../src/core/errors.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { watchReachedAll } from '../helpers/partitions.js';
import { captureMode, waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { needsServer, serverVersion } from '../helpers/server-version.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;
const file = { tables: [{ name: 'public.ev', keyColumns: ['region', 'id'] }] };
const reps: Running[] = [];
/** A Postgres target keeps a nullable key with UNIQUE NULLS NOT DISTINCT, from 15 on (README: PostgreSQL versions). */
const nullKeys = serverVersion().major >= 15;
const KEY = ['region', 'id'];

const same = async (): Promise<number> => {
  await waitCaughtUp(src);
  return assertSameRows(src, dst, 'public.ev', 'public.ev', KEY);
};

before(async () => {
  let srcUrl: string, dstUrl: string;
  ({ srcUrl, dstUrl, src, dst } = await bed.databases(6));
  env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_PARTITION_WATCH_MS: '1000', PG2CRATE_SLOT: 'ckparts' };
  await src.query(`
    create table public.ev (region text not null, id integer${nullKeys ? '' : ' not null'}, v text) partition by list (region);
    create table public.ev_eu partition of public.ev for values in ('eu') partition by hash (id);
    create table public.ev_eu0 partition of public.ev_eu for values with (modulus 2, remainder 0);
    create table public.ev_eu1 partition of public.ev_eu for values with (modulus 2, remainder 1);
    create table public.ev_us partition of public.ev for values in ('us');
    insert into public.ev select case when g % 2 = 0 then 'eu' else 'us' end, g, 'seed ' || g from generate_series(1, 60) g;
    ${nullKeys ? `insert into public.ev values ('eu', null, 'seed, no id');` : ''}`);
  reps.push(await startReplicator(makeConfig(env, file)));
  assert.equal(await same(), nullKeys ? 61 : 60, 'the initial load copied the seeded rows');
});

/** Switches capture (with no replicator running) and starts one in the new mode. */
async function switchTo(to: 'trigger' | 'pgoutput'): Promise<void> {
  const runner = new Runner(makeConfig(env, file), testLogger());
  try {
    assert.equal(await switchCapture(runner, to), 'switched');
  } finally {
    await runner.close();
  }
  reps.push(await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: to }, file)));
}

bed.onClose(async () => {
  for (const r of reps) await r.stop();
});

test('trigger mode: writes through the table, a partition and a sub-partition are captured by the configured key, rows moving between partitions too', async () => {
  await src.query(`insert into public.ev values ('eu', 100, 'root'), ('us', 101, 'root')`);
  await src.query(`insert into public.ev_us values ('us', 102, 'partition')`);
  await src.query(`insert into public.ev_eu0 select 'eu', g, 'sub-partition' from generate_series(200, 260) g where satisfies_hash_partition('public.ev_eu'::regclass, 2, 0, g)`);
  await src.query(`update public.ev_eu set v = 'through ev_eu' where id < 20`);
  await src.query(`update public.ev set region = 'us' where region = 'eu' and id between 20 and 30`); // key change: rows move from ev_eu* into ev_us
  await src.query(`update public.ev_us set id = id + 1000 where id between 31 and 41`); // key change inside one partition
  await src.query(`delete from public.ev_eu1 where id % 3 = 0`);
  if (nullKeys) {
    await src.query(`update public.ev set v = 'null id, updated' where id is null`);
    await src.query(`insert into public.ev values ('us', null, 'null id in us')`);
  }
  assert.ok(await same() > 80);

  // A partition created later: written through its own name before the watch reached it, then truncated.
  await src.query(`create table public.ev_apac partition of public.ev for values in ('apac')`);
  await src.query(`insert into public.ev_apac select 'apac', g, 'new partition' from generate_series(1, 30) g`);
  await src.query(`update public.ev_apac set id = id + 500 where id < 5`);
  await src.query(`update public.ev set region = 'apac', id = id + 2000 where region = 'us' and id between 1 and 9`); // moves ev_us → ev_apac
  await watchReachedAll(src, 'public.ev');
  await same();
  await src.query(`truncate public.ev_us`);
  assert.equal((await src.query(`select count(*)::int as n from public.ev where region = 'us'`)).rows[0].n, 0);
  await same();
});

test('pgoutput: the switch names each partition without the table\'s REPLICA IDENTITY FULL and creates nothing; after the fix writes through every partition arrive, and a new partition is given FULL', { skip: needsServer(14, 'pgoutput mode') }, async () => {
  await src.query(`alter table public.ev replica identity full`);
  await reps.pop()!.stop();
  const runner = new Runner(makeConfig(env, file), testLogger());
  try {
    await assert.rejects(switchCapture(runner, 'pgoutput'), (err: unknown) => {
      assert.ok(err instanceof TableError, `expected a TableError, got ${String(err)}`);
      assert.match(err.message, /public\.ev\b/);
      for (const p of ['ev_eu0', 'ev_eu1', 'ev_us', 'ev_apac']) assert.match(err.message, new RegExp(`ALTER TABLE "public"\\."${p}" REPLICA IDENTITY FULL`), `the message names ${p} and its fix`);
      assert.match(err.message, /PG2CRATE_CAPTURE=trigger/);
      return true;
    });
  } finally {
    await runner.close();
  }
  assert.equal(await captureMode(src), 'trigger');
  assert.equal((await src.query(`select 1 from pg_replication_slots where slot_name = 'ckparts'`)).rows.length, 0, 'no slot was created');
  await src.query(`update public.ev set v = 'still writable' where id = 100`);

  await src.query(`alter table public.ev_eu0 replica identity full; alter table public.ev_eu1 replica identity full;
    alter table public.ev_us replica identity full; alter table public.ev_apac replica identity full`);
  await switchTo('pgoutput');
  const viaSlot = async () => {
    await waitSlotCaughtUp(src, 'ckparts');
    return assertSameRows(src, dst, 'public.ev', 'public.ev', KEY);
  };
  await src.query(`insert into public.ev_us values ('us', 300, 'pgoutput'), ('us', 301, 'pgoutput')`);
  await src.query(`update public.ev_eu set v = 'pgoutput through ev_eu' where id < 30`);
  await src.query(`update public.ev set region = 'eu' where region = 'us' and id = 300`); // moves ev_us → ev_eu*
  await src.query(`delete from public.ev_eu1 where id % 5 = 0`);
  if (nullKeys) await src.query(`update public.ev set v = 'null id, via the slot' where id is null`);
  await viaSlot();

  // A partition created in pgoutput mode has no replica identity: the watch gives it FULL.
  await src.query(`create table public.ev_latam partition of public.ev for values in ('latam')`);
  await src.query(`insert into public.ev_latam select 'latam', g, 'latam' from generate_series(1, 10) g`);
  await waitFor('the watch to give the new partition REPLICA IDENTITY FULL', async () =>
    (await src.query(`select relreplident::text as r from pg_class where oid = 'public.ev_latam'::regclass`)).rows[0].r === 'f', 30_000, 100);
  await src.query(`update public.ev_latam set v = 'updated' where id < 5; delete from public.ev_latam where id = 9; update public.ev set id = id + 50 where region = 'latam' and id = 10`);
  await viaSlot();

  await reps.pop()!.stop();
  await switchTo('trigger');
  await src.query(`update public.ev_latam set v = 'trigger mode again'; insert into public.ev values ('latam', 77, 'trigger mode again')`);
  assert.ok(await same() > 80);
});
