// The late-chunk scenario of test/integration/standby-direct-load.test.ts against a real CrateDB,
// where the direct load's rows are parameter rows the source built (copy-row-sql.ts), not row
// images: the leader loses the stream while a chunk of them is held back in its sink, a standby
// takes over, finishes the load and applies every change, and only then does the old write land.
// CrateDB has no fence to refuse it, so the old copier must send the chunk's rows again through the
// stream by their keys (the keys come from the built rows, copied-row.ts), and CrateDB ends equal.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnReplicator, waitForLog } from '../helpers/child-replicator.js';
import { as, assertSameAsSource, skipWithoutCrate, sourceAndCrate } from '../helpers/cratedb.js';
import { bigTableWriter, LateChunkSink, releaseLateChunk } from '../helpers/late-chunk.js';
import { makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { isBuiltRow } from '../../src/sink/sink.js';

describe('a standby taking over during a direct initial load into a real CrateDB', { skip: skipWithoutCrate }, () => {
  let leader: Running | undefined;
  const suite = sourceAndCrate('standby', () => [leader]);
  const { schema } = suite;

  test("the old leader's late chunk of built rows is sent again by key after it, and CrateDB ends equal", async () => {
    const { srcUrl, src, crate } = suite;
    await src.query(`create table big (id integer primary key, v integer not null, note text); insert into big select g, g, 'seed' from generate_series(1, 20000) g`);
    const env = {
      DATABASE_URL: srcUrl, CRATEDB_URL: process.env.CRATEDB_URL!, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_TABLES: 'public.big',
      PG2CRATE_BACKFILL_CHUNK_ROWS: '1000', PG2CRATE_INITIAL_LOAD: 'direct',
    };
    let stopped = false;
    const writers = [bigTableWriter(srcUrl, () => stopped), bigTableWriter(srcUrl, () => stopped)];
    let late: LateChunkSink | null = null;
    leader = await startReplicator(makeConfig(env), testLogger('info'), { wrapSink: (s) => (late = new LateChunkSink(s, 3, false)) });
    let standby: ReturnType<typeof spawnReplicator> | undefined;
    try {
      await waitFor('the third chunk to be held back', () => late !== null && Promise.race([late.held.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 100))]), 60_000);
      const held = late!.heldBatches!.flatMap((b) => b.upserts);
      assert.ok(held.length > 0 && held.every(isBuiltRow), `the held chunk is made of parameter rows the source built: ${held.filter(isBuiltRow).length} of ${held.length}, e.g. ${JSON.stringify(held[0]).slice(0, 300)}`);
      standby = spawnReplicator(env, ['start'], 'standby-cratedb');
      await waitForLog(standby, 'standby: another instance holds the stream');
      // The leader loses the stream; its copier, inside the held write, does not know yet.
      await leader.runner.drainer!.stop();
      await waitForLog(standby, 'took over the stream');
      // The writers stop here (a drainer into CrateDB is never at the head of two busy writers for
      // long enough to be seen caught up); the rows of the held chunk changed while it waited.
      stopped = true;
      await Promise.all(writers);
      await waitCaughtUp(src, 'pg2crate', 120_000);
      // Only now does the old copier's write land, over rows the standby brought further.
      await releaseLateChunk(late!, 'applied', src, standby);
    } finally {
      stopped = true;
      await Promise.all(writers).catch(() => {});
      (late as LateChunkSink | null)?.release();
      standby?.kill('SIGKILL');
      await leader.stop();
      leader = undefined;
    }
    const rows = await assertSameAsSource(src, 'public.big', crate, schema, 'big', { pg: 't.id', crate: 'id' }, [
      { name: 'v', pg: 't.v', crate: 'v', norm: as.number },
      { name: 'note', pg: 't.note', crate: 'note', norm: as.text },
    ]);
    assert.ok(rows > 5000, `only ${rows} rows are left`);
    assert.equal((await src.query(`select count(*)::int as n from pg2crate.dead_letters`)).rows[0].n, 0);
  });
});
