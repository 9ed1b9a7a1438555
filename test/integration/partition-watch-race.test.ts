// The partition watch's deletes (ops/partition-watch.ts): a key recorded through a partition's own
// name and gone by the time the watch reaches it gets a delete event, which locks no row. A writer
// that inserted the same key elsewhere, drew its outbox id before that delete and commits after it
// would be applied first in the same window, and the delete would win: the target would lose a row
// the source has. The watch sends such keys again once the writers open at its commit have ended
// (resend.ts recheckDeletes). The replicator is stopped while each race is set up, and the watch
// runs as the replicator's own timer runs it.
import { test } from 'node:test';
import pg from 'pg';
import { catchUp } from '../../src/commands/catch-up.js';
import { watchPartitions } from '../../src/ops/partition-watch.js';
import { Runner } from '../../src/runner.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertSameRows, makeConfig, settle, testLogger, waitFor } from '../helpers/replication.js';
import type { Config } from '../../src/core/config.js';

const bed = clusterForFile();
const writers: pg.Client[] = [];
bed.onClose(async () => {
  for (const w of writers) await w.end().catch(() => {});
});

/**
 * Opens a transaction on a connection of its own that runs `insert` (captured: it draws an outbox
 * id), runs a watch pass, commits the writer once the pass has written its delete, and applies
 * everything with a catch-up.
 */
async function race(srcUrl: string, src: pg.Pool, config: Config, insert: string): Promise<void> {
  const writer = new pg.Client({ connectionString: srcUrl });
  writers.push(writer);
  await writer.connect();
  await writer.query('begin');
  await writer.query(insert);
  const pass = watchPartitions(src, { schema: 'pg2crate', stream: 'main', logger: testLogger('fatal') });
  pass.catch(() => {}); // a failed pass is awaited below; not an unhandled rejection meanwhile
  await waitFor("the watch's delete", async () => (await src.query(`select 1 from pg2crate.outbox where op = 'D'`)).rows.length > 0, 30_000, 20);
  await writer.query('commit');
  await pass;
  const runner = new Runner(config, testLogger('fatal'));
  try {
    await catchUp(runner);
  } finally {
    await runner.close();
  }
}

test('a key recorded for a partition that left the tree and re-inserted through the root meanwhile is not lost to the watch\'s delete', async () => {
  const { srcUrl, dstUrl, src, dst } = await bed.databases(6);
  await src.query(`create table public.m (id int primary key, v text) partition by range (id);
    create table public.m_def partition of public.m default;
    insert into public.m values (1000, 'seed')`);
  const config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.m', PG2CRATE_PARTITION_WATCH_MS: '3600000', PG2CRATE_RETENTION_CRON: 'off' });
  await settle(config, src);
  // written through a partition created after capture (recorded, not captured), which is detached
  // before a watch pass reached it: key 5 is recorded for a relation no longer in the tree
  await src.query(`create table public.m1 partition of public.m for values from (0) to (100)`);
  await src.query(`insert into public.m1 values (5, 'in m1')`);
  await src.query(`alter table public.m detach partition public.m1`);
  await race(srcUrl, src, config, `insert into public.m values (5, 'new row')`);
  await assertSameRows(src, dst, 'public.m', 'public.m', ['id']);
});

test('a configured key written and deleted through a new partition, and inserted into another partition meanwhile, is not lost to the watch\'s delete', async () => {
  const { srcUrl, dstUrl, src, dst } = await bed.databases(6);
  await src.query(`create table public.ev (region text not null, id int not null, v text) partition by list (region);
    create table public.ev_a partition of public.ev for values in ('a');
    insert into public.ev values ('a', 1, 'seed')`);
  const config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_PARTITION_WATCH_MS: '3600000', PG2CRATE_RETENTION_CRON: 'off' },
    { tables: [{ name: 'public.ev', keyColumns: ['id'] }] });
  await settle(config, src);
  // the key (id) does not hold the partition key, so its row may live in any partition, and the
  // watch's lock on the new partition holds back no writer of ev_a
  await src.query(`create table public.ev_b partition of public.ev for values in ('b')`);
  await src.query(`insert into public.ev_b values ('b', 7, 'in ev_b')`);
  await src.query(`delete from public.ev_b where id = 7`);
  await race(srcUrl, src, config, `insert into public.ev values ('a', 7, 'moved to a')`);
  await assertSameRows(src, dst, 'public.ev', 'public.ev', ['id']);
});
