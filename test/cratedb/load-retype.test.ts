// A column retyped while a direct initial load copies the table into a real CrateDB. The source
// builds each copied row's parameter row in SQL made from the table's columns as the load found
// them (src/sink/cratedb/copy-row-sql.ts), so the chunks read after an ALTER COLUMN … TYPE meet a
// column of another type: a plain integer that became a bigint (which goes as a quoted text), a
// jsonb that became json (whose checks need a cast). The rows keep their values through both
// changes, so the load must end with the target equal to the source, whatever the chunks read
// after the change had to do (build their rows another way, or be read again).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { as, assertSameAsSource, skipWithoutCrate, sourceAndCrate } from '../helpers/cratedb.js';
import { initialLoadsDone, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { recorder } from '../helpers/sinks.js';
import type { SinkTableBatch } from '../../src/sink/sink.js';

const ROWS = 3000;

describe('a column retyped during a direct initial load into a real CrateDB', { skip: skipWithoutCrate }, () => {
  let rep: Running | undefined;
  const suite = sourceAndCrate('loadretype', () => [rep]);
  const { schema } = suite;

  test('the chunks read after ALTER COLUMN … TYPE still bring every row, with its values', async () => {
    const { srcUrl, src, crate } = suite;
    await src.query(`create table public.items (id integer primary key, n integer not null, doc jsonb not null, v text not null)`);
    await src.query(`insert into public.items select g, g * 7, jsonb_build_object('g', g, 'tag', 't' || g), 'v' || g from generate_series(1, ${ROWS}) g`);
    const copied = (b: SinkTableBatch[]) => b.some((t) => t.upserts.some((c) => c.op === 'B'));
    let reached: () => void = () => {};
    const atChunk = new Promise<void>((resolve) => { reached = resolve; });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => { release = resolve; });
    let holding = true;
    const rec = recorder({
      async before(_call, batches) {
        if (!holding || !copied(batches)) return;
        holding = false;
        reached();
        await released;
      },
    });
    rep = await startReplicator(makeConfig({
      DATABASE_URL: srcUrl, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema,
      PG2CRATE_TABLES: 'public.items', PG2CRATE_BACKFILL_CHUNK_ROWS: '500', PG2CRATE_INITIAL_LOAD: 'direct',
    }), testLogger(), { wrapSink: rec.wrapSink });
    try {
      await waitFor('the first copied chunk', () => atChunk.then(() => true), 120_000);
      // The chunk read ahead of the held one holds the table's lock until it is read; the ALTER
      // waits for it and then runs before the chunks after it.
      const altered = src.query(`alter table public.items alter column n type bigint, alter column doc type json`);
      await waitFor('the ALTER to wait for its lock or finish', async () =>
        (await src.query(`select count(*)::int as n from pg_stat_activity where query like 'alter table public.items%' and state = 'active'`)).rows[0].n > 0
        || (await src.query(`select format_type(atttypid, null) as t from pg_attribute where attrelid = 'public.items'::regclass and attname = 'n'`)).rows[0].t === 'bigint', 30_000);
      release();
      await altered;
    } finally {
      release();
    }
    await src.query(`insert into public.items values (${ROWS + 1}, 5000000000, '{"after": true}', 'after the change')`);
    await waitFor('the initial load', () => initialLoadsDone(src), 120_000, 100);
    await waitCaughtUp(src, 'pg2crate', 60_000);
    const letters = (await src.query<{ reason: string }>(`select error as reason from pg2crate.dead_letters`)).rows;
    await rep.stop();
    rep = undefined;
    // 5,000,000,000 does not fit the target's INTEGER (its type stays, README Schema changes): parked,
    // as its change and maybe as a copied row too (README Limits: rows written during a load).
    assert.ok(letters.length >= 1 && letters.every((l) => l.reason.includes('5000000000')), `only the bigint that does not fit is parked: ${JSON.stringify(letters)}`);
    await src.query(`delete from public.items where id = ${ROWS + 1}`);
    const rows = await assertSameAsSource(src, 'public.items', crate, schema, 'items', { pg: 't.id', crate: 'id' }, [
      { name: 'n', pg: 't.n', crate: 'n', norm: as.number },
      { name: 'doc', pg: 't.doc', crate: 'doc', norm: as.jsonObject },
      { name: 'v', pg: 't.v', crate: 'v', norm: as.text },
    ]);
    assert.equal(rows, ROWS);
  });
});
