// Invariants 1 and 5: one transaction of a million rows replicates completely, and the replicator's
// memory stays bounded by its page size, not by the size of the window.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { memoryOf, spawnReplicator, waitForLog } from '../helpers/child-replicator.js';
import { waitCaughtUp } from '../helpers/replication.js';

const ROWS = 1_000_000;
const PAGE_SIZE = 5000;
const PEAK_RSS_BOUND = 400 * 1024 * 1024;

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;

before(async () => {
  ({ src, dst, env } = await bed.settled(
    `create table public.wide_enough (id integer primary key, grp smallint not null, label text not null)`,
    { PG2CRATE_TABLES: 'public.wide_enough', PG2CRATE_PAGE_SIZE: String(PAGE_SIZE) },
  ));
});

/** Count, sum and an ordered digest of every row: equal digests mean equal tables. */
async function digest(db: pg.Pool): Promise<{ n: string; sum: string; md5: string }> {
  const r = await db.query(
    `select count(*)::text as n, sum(grp)::text as sum, md5(string_agg(id::text || ':' || grp::text || ':' || label, ',' order by id)) as md5 from public.wide_enough`,
  );
  return r.rows[0];
}

test(`one transaction of ${ROWS.toLocaleString('en')} rows replicates with memory bounded by the page size`, async () => {
  const child = spawnReplicator(env, ['start'], 'big');
  await waitForLog(child, 'holding the stream');
  const before = await src.query(`select applied_events::bigint as n from pg2crate.checkpoint where stream = 'main'`);
  const startRss = memoryOf(child.pid)!.rss;

  await src.query(`insert into wide_enough select g, (g % 7)::smallint, 'row ' || g from generate_series(1, ${ROWS}) g`);

  let peakRss = 0;
  const sampler = setInterval(() => {
    const m = memoryOf(child.pid);
    if (m) peakRss = Math.max(peakRss, m.rss);
  }, 50);
  const t0 = Date.now();
  try {
    await waitCaughtUp(src, 'pg2crate', 240_000);
  } finally {
    clearInterval(sampler);
  }
  const drainMs = Date.now() - t0;
  const hwm = memoryOf(child.pid)!.peak;
  child.kill('SIGTERM');
  assert.equal(await child.exited, 0, child.log().slice(-2000));

  const applied = await src.query(`select applied_events::bigint as n from pg2crate.checkpoint where stream = 'main'`);
  assert.ok(Number(applied.rows[0].n) - Number(before.rows[0].n) >= ROWS, 'every event of the transaction was applied');
  const [a, b] = await Promise.all([digest(src), digest(dst)]);
  assert.equal(a.n, String(ROWS));
  assert.deepEqual(b, a);

  const mb = (n: number) => `${(n / 1024 / 1024).toFixed(0)} MB`;
  console.log(`big transaction: ${ROWS} rows drained in ${(drainMs / 1000).toFixed(1)} s with page size ${PAGE_SIZE}; ` +
    `replicator RSS at start ${mb(startRss)}, peak sampled ${mb(peakRss)}, VmHWM ${mb(hwm)} (bound ${mb(PEAK_RSS_BOUND)})`);
  assert.ok(hwm < PEAK_RSS_BOUND, `peak RSS ${mb(hwm)} exceeds ${mb(PEAK_RSS_BOUND)}`);
});
