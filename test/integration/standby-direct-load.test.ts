// A standby that takes over during a direct initial load is not overtaken by the old copier's last
// chunk, which arrives late: the leader loses the stream while that chunk's write is held back (a
// sink seam), the standby takes over, finishes the load and applies every change, and only then
// does the old write go on. A Postgres target refuses it (the fence); a target without a fence
// (as CrateDB) gets the chunk's rows sent again after it. Either way the target ends equal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForFile } from '../helpers/file-cluster.js';
import { spawnReplicator, waitForLog } from '../helpers/child-replicator.js';
import { assertSameRows, makeConfig, settle, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { FencedError } from '../../src/core/errors.js';
import { PgCopyLoader } from '../../src/sink/postgres/copy-load.js';
import { PostgresSink } from '../../src/sink/postgres/postgres-sink.js';
import type { Fence, SinkTableBatch } from '../../src/sink/sink.js';
import { bigTableWriter as writer, LateChunkSink, releaseLateChunk } from '../helpers/late-chunk.js';
import { listTables, RegistryCatalog } from '../../src/capture/registry.js';

const bed = clusterForFile();

async function lateChunkScenario(fenced: boolean): Promise<void> {
  const { srcUrl, dstUrl, src, dst } = await bed.databases();
  await src.query(`create table big (id integer primary key, v integer not null, note text); insert into big select g, g, 'seed' from generate_series(1, 20000) g`);
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.big', PG2CRATE_BACKFILL_CHUNK_ROWS: '1000' };
  let stopped = false;
  const writers = [writer(srcUrl, () => stopped), writer(srcUrl, () => stopped)];
  let late: LateChunkSink | null = null;
  const leader = await startReplicator(makeConfig(env), testLogger('info'), { wrapSink: (s) => (late = new LateChunkSink(s, 3, fenced)) });
  try {
    await waitFor('the third chunk to be held back', () => late !== null && Promise.race([late.held.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 100))]), 60_000);
    const standby = spawnReplicator(env, ['start'], fenced ? 'standby-fenced' : 'standby-unfenced');
    await waitForLog(standby, 'standby: another instance holds the stream');
    // The leader loses the stream; its copier, inside the held write, does not know yet.
    await leader.runner.drainer!.stop();
    await waitForLog(standby, 'took over the stream');
    await waitCaughtUp(src, 'pg2crate', 120_000);
    stopped = true;
    await Promise.all(writers);
    await waitCaughtUp(src, 'pg2crate', 60_000);
    // Only now does the old copier's write go on.
    await releaseLateChunk(late!, fenced ? 'refused' : 'applied', src, standby);
  } finally {
    stopped = true;
    await Promise.all(writers).catch(() => {});
    (late as LateChunkSink | null)?.release();
    await leader.stop();
  }
  const rows = await assertSameRows(src, dst, 'public.big', 'public.big', ['id']);
  assert.ok(rows > 5000, `only ${rows} rows are left`);
}

test('a Postgres target refuses the old leader\'s late initial-load chunk after a standby took over, and ends equal', async () => {
  await lateChunkScenario(true);
});

test('without a fence (as CrateDB) the old leader\'s late chunk is sent again after it, and the target ends equal', async () => {
  await lateChunkScenario(false);
});

test('a Postgres target\'s fence refuses both write paths of an older holder, and raising it waits for a chunk under way', async () => {
  const { srcUrl, dstUrl, src, dst } = await bed.databases();
  await src.query(`create table small (id integer primary key, v integer not null); insert into small select g, g from generate_series(1, 100) g`);
  await settle(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.small' }), src);
  const [t] = await listTables(src, 'pg2crate');
  const info = await new RegistryCatalog(src, 'pg2crate').describe(t.id);
  const sink = new PostgresSink(dstUrl, testLogger());
  const loader = new PgCopyLoader(dstUrl, testLogger());
  const source = await src.connect();
  // Tokens above any xid of this cluster (the load of settle() raised one already).
  const fence = (token: string): Fence => ({ schema: 'pg2crate', stream: 'main', token: `1000000${token}` });
  const chunk = (v: number): SinkTableBatch[] => [{ table: info, truncate: false, deletes: [], upserts: [{ id: 0, tableId: t.id, op: 'B', key: '[1]', row: { id: 1, v }, raw: `{"id": 1, "v": ${v}}` }] }];
  try {
    await dst.query(`truncate small`);
    await sink.raiseFence(fence('100'));
    // The older holder's binary chunk is under way (its target transaction open) when a newer one raises.
    const staged = await loader.stage(source, `copy (select id, v from small) to stdout (format binary)`, info, fence('100'));
    let raised = false;
    const raising = sink.raiseFence(fence('200')).then(() => { raised = true; });
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(raised, false, 'raising the fence must wait for the chunk under way');
    await staged.merge();
    await raising;
    assert.equal((await dst.query(`select count(*)::int as n from small`)).rows[0].n, 100, 'the chunk under way landed before the raise');
    // From now on the older holder is refused in both paths, and cannot raise again.
    await assert.rejects(sink.apply(chunk(-1), fence('100')), FencedError);
    await assert.rejects(loader.stage(source, `copy (select id, v from small) to stdout (format binary)`, info, fence('100')), FencedError);
    await assert.rejects(sink.raiseFence(fence('150')), FencedError);
    assert.deepEqual((await dst.query(`select v from small where id = 1`)).rows, [{ v: 1 }]);
    await sink.apply(chunk(7), fence('200'));
    assert.deepEqual((await dst.query(`select v from small where id = 1`)).rows, [{ v: 7 }]);
  } finally {
    source.release();
    await loader.close();
    await sink.stop();
  }
});
