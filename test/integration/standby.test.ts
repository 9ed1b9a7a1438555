// Invariant 4: one active drainer per stream. A second instance waits as a standby while the first
// holds the stream's advisory lock, applies nothing meanwhile, and takes over when the first dies.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { spawnReplicator, waitForLog } from '../helpers/child-replicator.js';
import { assertSameRows, waitCaughtUp, waitFor } from '../helpers/replication.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;

before(async () => {
  ({ src, dst, env } = await bed.settled(`create table public.jobs (id integer primary key, batch integer not null, payload text)`, { PG2CRATE_TABLES: 'public.jobs' }));
});

async function batchInTarget(batch: number, rows: number): Promise<boolean> {
  const r = await dst.query(`select count(*)::int as n from public.jobs where batch = $1`, [batch]);
  return r.rows[0].n === rows;
}

async function writeBatch(batch: number): Promise<void> {
  await src.query(`insert into jobs select $1 * 1000 + g, $1, 'batch ' || $1 from generate_series(1, 100) g`, [batch]);
  await src.query(`update jobs set payload = payload || ' updated' where batch = $1 and id % 2 = 0`, [batch]);
}

test('a second instance waits while the first runs, applies nothing, and takes over when the first is killed', async () => {
  const first = spawnReplicator(env, ['start'], 'first');
  await waitForLog(first, 'holding the stream');
  const second = spawnReplicator(env, ['start'], 'second');
  await waitForLog(second, 'standby: another instance holds the stream');

  await writeBatch(1);
  await waitFor('batch 1 applied by the first instance', () => batchInTarget(1, 100));

  // Freeze the first: it still holds the lock (its connection stays open) but applies nothing. If
  // the standby were not waiting on the lock, it would now apply batch 2.
  first.kill('SIGSTOP');
  await writeBatch(2);
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(await batchInTarget(2, 0), true, 'the standby applied changes while the first instance held the stream');
  assert.ok(!second.log().includes('took over the stream'));

  // Kill the first; the server drops its session and lock, and the standby takes over.
  const killedAt = Date.now();
  await first.killHard();
  await writeBatch(3);
  await waitFor('batches 2 and 3 applied by the standby', async () => (await batchInTarget(2, 100)) && (await batchInTarget(3, 100)), 10_000);
  const tookMs = Date.now() - killedAt;
  assert.ok(second.log().includes('took over the stream'));

  await writeBatch(4);
  await waitCaughtUp(src);
  second.kill('SIGTERM');
  assert.equal(await second.exited, 0);
  assert.equal(await assertSameRows(src, dst, 'public.jobs', 'public.jobs', ['id']), 400);
  console.log(`standby took over and applied within ${tookMs} ms of the kill`);
});
