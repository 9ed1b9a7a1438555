// A partitioned table without a primary key, keyed by configured columns and identified in the WAL
// by a unique index over them (REPLICA IDENTITY USING INDEX, which the switch to pgoutput accepts,
// and asks of each partition). A partition created later in pgoutput mode gets the table's index
// but no replica identity (DEFAULT without a primary key), and Postgres would refuse the
// application's updates and deletes in it: the partition watch gives it USING INDEX on its share
// of the table's index, as it gives FULL where the table has FULL; the switch names the statement
// for a partition that lacks it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Runner } from '../../src/runner.js';
import { switchCapture } from '../../src/commands/switch-capture.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { needsServer } from '../helpers/server-version.js';

const bed = clusterForFile();
const file = { tables: [{ name: 'public.ev', keyColumns: ['region', 'id'] }] };
const KEY = ['region', 'id'];

test('pgoutput: a partition created later of a table identified by a unique index is identified by its share of that index, so the application can update it', { skip: needsServer(14, 'pgoutput mode') }, async () => {
  const { srcUrl, dstUrl, src, dst } = await bed.databases(6);
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_PARTITION_WATCH_MS: '300', PG2CRATE_SLOT: 'idxparts' };
  await src.query(`
    create table public.ev (region text not null, id integer not null, v text) partition by list (region);
    create unique index ev_key on public.ev (region, id);
    alter table public.ev replica identity using index ev_key;
    create table public.ev_eu partition of public.ev for values in ('eu');
    insert into public.ev select 'eu', g, 'seed ' || g from generate_series(1, 20) g`);
  const first = await startReplicator(makeConfig(env, file));
  try {
    await waitCaughtUp(src);
  } finally {
    await first.stop();
  }
  const runner = new Runner(makeConfig(env, file), testLogger());
  try {
    // The partition has the table's index but not its identity: the switch names the statement that gives it.
    await assert.rejects(switchCapture(runner, 'pgoutput'), /ALTER TABLE "public"\."ev_eu" REPLICA IDENTITY USING INDEX "ev_eu_region_id_idx";/);
    await src.query(`alter table public.ev_eu replica identity using index ev_eu_region_id_idx`);
    assert.equal(await switchCapture(runner, 'pgoutput'), 'switched');
  } finally {
    await runner.close();
  }
  const rep = await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' }, file));
  try {
    await src.query(`update public.ev set v = 'via the slot' where id < 5`);
    await src.query(`create table public.ev_us partition of public.ev for values in ('us')`);
    await src.query(`insert into public.ev select 'us', g, 'us' from generate_series(1, 10) g`);
    await waitFor('the watch to give the new partition a replica identity', async () =>
      (await src.query(`select relreplident::text as r from pg_class where oid = 'public.ev_us'::regclass`)).rows[0].r === 'i', 20_000, 100);
    await src.query(`update public.ev_us set v = 'updated' where id < 5; delete from public.ev_us where id = 9`);
    await waitSlotCaughtUp(src, 'idxparts');
    assert.equal(await assertSameRows(src, dst, 'public.ev', 'public.ev', KEY), 29);
    assert.equal((await dst.query(`select count(*)::int as n from public.ev where v = 'updated'`)).rows[0].n, 4);
  } finally {
    await rep.stop();
  }
});
