// The race the direct initial load relies on its fix-up for (src/load/direct-load.ts), forced on a
// real CrateDB: a chunk read before a writer changed its rows lands after the drainer applied those
// changes. Into a table the load found empty the chunks keep rows they find (ON CONFLICT DO
// NOTHING); without the fix-up the chunk would bring back a deleted row and a re-keyed row's old key
// (and, written as upserts, put an updated row back at its older state). And the condition of that
// statement: into a table that already held a row, chunks must be upserts, or an older row stays.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { as, assertSameAsSource, skipWithoutCrate, sourceAndCrate } from '../helpers/cratedb.js';
import { caughtUp, initialLoadsDone, makeConfig, pool, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { recorder } from '../helpers/sinks.js';
import { qualify } from '../../src/core/identifiers.js';
import { isBuiltRow, type SinkTableBatch } from '../../src/sink/sink.js';
import type { Change } from '../../src/core/change.js';

const ROWS = 3000;
/** rows of the chunk that is held back: updated, deleted, re-keyed */
const [UPDATED, DELETED, REKEYED] = [1500, 1600, 1700];

describe('a row changed while its initial-load chunk is on its way into a real CrateDB', { skip: skipWithoutCrate }, () => {
  let rep: Running | undefined;
  const suite = sourceAndCrate('loadrace', () => [rep]);
  const { schema } = suite;

  test('ends at its last state: updated, deleted and re-keyed rows of a chunk held back until the drainer applied their changes', async () => {
    const { srcUrl, src, crate } = suite;
    await src.query(`create table public.items (id integer primary key, v text not null)`);
    await src.query(`insert into public.items select g, 'v' || g from generate_series(1, ${ROWS}) g`);
    // a copied row as its image, or as the parameter row the source built (id first)
    const idOf = (c: Change) => (c.raw !== null ? (JSON.parse(c.raw) as { id: number }).id : isBuiltRow(c) ? (JSON.parse(c.built.args) as number[])[0] : null);
    const holds = (b: SinkTableBatch[]) => b.some((t) => t.upserts.some((c) => c.op === 'B' && idOf(c) === UPDATED));
    let reached: () => void = () => {};
    const atChunk = new Promise<void>((resolve) => { reached = resolve; });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => { release = resolve; });
    let held = 0;
    let kept: boolean | undefined;
    const rec = recorder({
      async before(_call, batches) {
        if (!holds(batches)) return;
        held++;
        kept = batches[0].keepExisting;
        reached();
        await released;
      },
    });
    rep = await startReplicator(makeConfig({
      DATABASE_URL: srcUrl, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema,
      PG2CRATE_TABLES: 'public.items', PG2CRATE_BACKFILL_CHUNK_ROWS: '1000', PG2CRATE_INITIAL_LOAD: 'direct',
    }), testLogger(), { wrapSink: rec.wrapSink });
    try {
      await waitFor('the chunk that holds the rows to change', () => atChunk.then(() => true), 120_000);
      await src.query(`update items set v = 'updated while copied' where id = $1`, [UPDATED]);
      await src.query(`delete from items where id = $1`, [DELETED]);
      await src.query(`update items set id = $2 where id = $1`, [REKEYED, ROWS + REKEYED]);
      // The drainer applies the three changes while the chunk, read before them, is held back.
      await waitFor('the drainer to apply the changes', () => caughtUp(src), 60_000);
      const byKey = async (id: number) => (await crate.sql(`SELECT v FROM ${qualify(schema, 'items')} WHERE id = ?`, [id])).rows;
      assert.deepEqual(await byKey(UPDATED), [['updated while copied']], 'the drainer applied the update before the chunk');
      assert.deepEqual(await byKey(ROWS + REKEYED), [[`v${REKEYED}`]], 'the drainer applied the new key before the chunk');
    } finally {
      release();
    }
    await waitFor('the initial load', () => initialLoadsDone(src), 120_000, 100);
    await waitCaughtUp(src, 'pg2crate', 60_000);
    await rep.stop();
    rep = undefined;
    assert.equal(held, 1, 'the chunk was held back once (it was not written again)');
    assert.equal(kept, true, 'into a table the load found empty, chunks keep the rows they find');
    const rows = await assertSameAsSource(src, 'public.items', crate, schema, 'items', { pg: 't.id', crate: 'id' }, [
      { name: 'v', pg: 't.v', crate: 'v', norm: as.text },
    ]);
    assert.equal(rows, ROWS - 1);
    const letters = await src.query(`select count(*)::int as n from pg2crate.dead_letters`);
    assert.equal(letters.rows[0].n, 0);
  });

  test("a load into a table that already holds rows writes upserts, so a row CrateDB held at an older state ends at the source's", async () => {
    const { cluster, crate } = suite;
    const url = await cluster.createDatabase('stale');
    const db = pool(url, 2);
    try {
      await db.query(`create table public.kept (id integer primary key, v text not null)`);
      await db.query(`insert into public.kept select g, 'v' || g from generate_series(1, 2500) g`);
      // The target table exists with a row of an older state (a table copied before, say).
      await crate.sql(`CREATE TABLE ${qualify(schema, 'kept')} (id INTEGER PRIMARY KEY, v TEXT) WITH (number_of_replicas = '0')`);
      await crate.sql(`INSERT INTO ${qualify(schema, 'kept')} (id, v) VALUES (?, ?)`, [42, 'stale']);
      const modes = new Set<boolean | undefined>();
      const rec = recorder({ before(_call, batches) { for (const b of batches) if (b.upserts.some((c) => c.op === 'B')) modes.add(b.keepExisting); } });
      const stale = await startReplicator(makeConfig({
        DATABASE_URL: url, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_TABLES: 'public.kept',
        PG2CRATE_BACKFILL_CHUNK_ROWS: '1000', PG2CRATE_INITIAL_LOAD: 'direct',
      }), testLogger(), { wrapSink: rec.wrapSink });
      try {
        await waitCaughtUp(db, 'pg2crate', 120_000);
      } finally {
        await stale.stop();
      }
      const rows = await assertSameAsSource(db, 'public.kept', crate, schema, 'kept', { pg: 't.id', crate: 'id' }, [{ name: 'v', pg: 't.v', crate: 'v', norm: as.text }]);
      assert.equal(rows, 2500);
      assert.deepEqual([...modes], [false], 'every chunk into a table that held a row was an upsert');
    } finally {
      await db.end();
    }
  });
});
