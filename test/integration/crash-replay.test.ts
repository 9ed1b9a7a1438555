// Invariant 3: at least once, idempotent. A crash after a page was applied but before its checkpoint
// was saved replays that page on the next start, and the target ends in the same state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { spawnReplicator, type ChildReplicator } from '../helpers/child-replicator.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { recorder, SimulatedCrash } from '../helpers/sinks.js';

const bed = clusterForFile();

async function setup(pageSize: number) {
  const { src, dst, env } = await bed.settled(
    `create table public.ledger (id integer primary key, amount bigint not null, memo text)`,
    { PG2CRATE_TABLES: 'public.ledger', PG2CRATE_PAGE_SIZE: String(pageSize) },
    8,
  );
  return { src, dst, env, config: makeConfig(env) };
}

/** The promise's value, or 'timeout' when it takes longer than `ms`. */
async function within<T>(ms: number, p: Promise<T>): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), ms); });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

async function checkpointAfter(src: pg.Pool): Promise<{ after: number; applied: number; windows: number }> {
  const r = await src.query(`select after_id::text as after, applied_events::text as applied, windows::text as windows from pg2crate.checkpoint where stream = 'main'`);
  return { after: Number(r.rows[0].after), applied: Number(r.rows[0].applied), windows: Number(r.rows[0].windows) };
}

/** Inserts, updates (every amount doubles: a replay that applied a delta twice would show), deletes and re-inserts. */
async function workload(src: pg.Pool): Promise<void> {
  await src.query(`insert into ledger select g, g, 'first' from generate_series(1, 300) g`);
  for (let i = 0; i < 20; i++) {
    await src.query(`update ledger set amount = amount * 2, memo = memo || '.' where id % 20 = $1`, [i]);
  }
  await src.query(`delete from ledger where id % 7 = 0`);
  await src.query(`insert into ledger select g, -g, 'again' from generate_series(1, 300, 7) g on conflict (id) do update set memo = 'upserted'`);
  await src.query(`update ledger set id = id + 1000 where id between 100 and 120`);
}

for (const crashAt of [3, 'last'] as const) {
  test(`a crash after applying ${crashAt === 3 ? 'a page inside a window' : "a window's last page"} and before saving the checkpoint replays that page to the same final state`, async () => {
    const { src, dst, config } = await setup(50);
    await workload(src);
    const total = Number((await src.query(`select count(*) as n from pg2crate.outbox`)).rows[0].n);
    const pages = Math.ceil(total / 50);
    const n = crashAt === 'last' ? pages : crashAt;
    const settled = await checkpointAfter(src);
    assert.ok(pages >= 4, `the workload must span several pages, got ${total} events`);

    // The first replicator applies pages 1 … n, and crashes (fatally) right after the sink confirmed page n.
    const crashing = recorder({
      after(call) {
        if (call.n === n) throw new SimulatedCrash(`crash after applying page ${n}`);
      },
    });
    const first = await startReplicator(config, testLogger(), { wrapSink: crashing.wrapSink });
    await assert.rejects(first.done, SimulatedCrash);
    await first.stop();
    assert.equal(crashing.sink.calls.length, n);
    const crashedPage = crashing.sink.calls[n - 1].ids;
    const cp = await checkpointAfter(src);
    assert.equal(cp.windows, settled.windows, 'the window must not have been completed');
    assert.ok(cp.after < crashedPage[0], `the checkpoint (after id ${cp.after}) must not cover the crashed page (ids from ${crashedPage[0]})`);

    // The second one starts where the checkpoint says: it applies the crashed page again, then the rest.
    const replaying = recorder();
    const second = await startReplicator(config, testLogger(), { wrapSink: replaying.wrapSink });
    await waitCaughtUp(src);
    await second.stop();
    assert.deepEqual(replaying.sink.calls[0].ids, crashedPage, 'the first page after the restart is the crashed page, applied again');
    assert.equal(crashing.sink.calls.length + replaying.sink.calls.length, pages + 1, 'every page once, the crashed one twice');

    const rows = await assertSameRows(src, dst, 'public.ledger', 'public.ledger', ['id']);
    assert.ok(rows > 200);
    const sum = await src.query(`select sum(amount)::text as s from ledger`);
    assert.equal((await dst.query(`select sum(amount)::text as s from ledger`)).rows[0].s, sum.rows[0].s);
  });
}

test('SIGKILL of the replicator process mid-stream, several times, ends with the target equal to the source', async () => {
  const { src, dst, env } = await setup(500);
  let stop = false;
  let writes = 0;
  const writer = async (seed: number) => {
    let x = seed;
    while (!stop) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const id = 1 + (x % 2000);
      const op = x % 10;
      try {
        await write(id, op);
        writes++;
      } catch (err) {
        // The writers themselves can deadlock (a range update walks the heap, an upsert the key
        // order). Postgres rolls one back, nothing of it is captured, and this one moves on.
        if ((err as { code?: string }).code !== '40P01') throw err;
      }
    }
  };
  const write = async (id: number, op: number) => {
    if (op < 4) await src.query(`insert into ledger values ($1, $2, 'w') on conflict (id) do update set amount = ledger.amount + 1`, [id, writes]);
    else if (op < 7) await src.query(`update ledger set amount = amount * 3 % 1000003, memo = $2 where id between $1 and $1 + 20`, [id, `m${writes}`]);
    else if (op < 9) await src.query(`delete from ledger where id = $1`, [id]);
    else await src.query(`insert into ledger select g, g, 'bulk' from generate_series($1::int, $1::int + 50) g on conflict (id) do update set memo = 'bulk again'`, [id]);
  };
  const writers = [11, 23, 37].map(writer);
  let child: ChildReplicator | null = null;
  let kills = 0;
  try {
    for (let round = 0; round < 4; round++) {
      child = spawnReplicator(env, ['start'], 'crash');
      // Kill only once this process has applied something and more is waiting.
      const before = (await checkpointAfter(src)).applied;
      await waitFor(`child ${round} to apply pages`, async () => (await checkpointAfter(src)).applied > before + 300, 60_000);
      const writesBefore = writes;
      await new Promise((r) => setTimeout(r, 300 + round * 170));
      await child.killHard();
      kills++;
      assert.ok(writes > writesBefore, 'the writers must still be writing when the replicator dies');
    }
    child = spawnReplicator(env, ['start'], 'crash-final');
    await new Promise((r) => setTimeout(r, 1000));
  } finally {
    stop = true;
    await Promise.all(writers);
  }
  await waitCaughtUp(src, 'pg2crate', 120_000);
  // A graceful stop of the last one, then compare.
  child!.kill('SIGTERM');
  assert.equal(await within(30_000, child!.exited), 0, `the replicator did not stop cleanly:\n${child!.log().slice(-2000)}`);
  assert.equal(kills, 4);
  assert.ok(writes > 1000, `only ${writes} writes`);
  const rows = await assertSameRows(src, dst, 'public.ledger', 'public.ledger', ['id']);
  assert.ok(rows > 100, `only ${rows} rows`);
});
