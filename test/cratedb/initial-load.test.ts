// The direct initial load into a real CrateDB: rows go straight through the sink while writers
// keep changing the table, and the re-send of what changed meanwhile leaves CrateDB equal to the
// source, row by row.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { as, assertSameAsSource, crateClient, endCrateSuite, skipWithoutCrate, testSchema } from '../helpers/cratedb.js';
import { initialLoadsDone, makeConfig, pool, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';

const ROWS = 30_000;

describe('the direct initial load into a real CrateDB', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('load');
  let cluster: Cluster;
  let src: pg.Pool;
  let crate: CrateClient;
  let rep: Running | undefined;

  before(async () => {
    cluster = await startCluster();
    const srcUrl = await cluster.createDatabase('src');
    src = pool(srcUrl, 6);
    crate = crateClient();
    await src.query(`create table public.items (id integer primary key, qty integer not null, note text, tags text[], body jsonb)`);
    await src.query(`insert into public.items select g, g % 100, 'note ' || g, array['a', g::text], jsonb_build_object('g', g) from generate_series(1, ${ROWS}) g`);
    rep = await startReplicator(makeConfig({
      DATABASE_URL: srcUrl, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_TABLES: 'public.items',
      PG2CRATE_BACKFILL_CHUNK_ROWS: '1000', PG2CRATE_INITIAL_LOAD: 'direct',
    }));
  });

  after(async () => {
    await endCrateSuite({ replicators: [rep], pools: [src], cluster, crate, schemas: [schema] });
  });

  test('rows updated, deleted, inserted and re-keyed while they are copied end equal to the source', async () => {
    let stop = false;
    let writes = 0;
    const writer = async (n: number) => {
      let x = n * 7919 + 1;
      while (!stop) {
        x = (x * 1103515245 + 12345) % 2147483648;
        const id = 1 + (x % (ROWS + 2000));
        const op = x % 10;
        try {
          if (op < 5) await src.query(`update items set qty = qty + 1, note = 'w${n}', body = jsonb_set(body, '{w}', to_jsonb($2::int)) where id = $1`, [id, writes]);
          else if (op < 7) await src.query(`delete from items where id = $1`, [id]);
          else if (op < 9) await src.query(`insert into items values ($1, 1, 'new', array['n'], '{"new": true}') on conflict (id) do update set note = 'upserted'`, [id]);
          else await src.query(`update items set id = $2 where id = $1`, [id, ROWS + 2000 + id]);
        } catch (err) {
          if ((err as { code?: string }).code !== '23505') throw err;
        }
        writes++;
      }
    };
    const writers = [1, 2, 3, 4].map(writer);
    try {
      await waitFor('the initial load', () => initialLoadsDone(src), 180_000, 200);
    } finally {
      stop = true;
      await Promise.all(writers);
    }
    await waitCaughtUp(src, 'pg2crate', 120_000);
    await rep!.stop();
    rep = undefined;
    assert.ok(writes > 100, `writers made too few changes (${writes}) during the copy`);
    const rows = await assertSameAsSource(src, 'public.items', crate, schema, 'items', { pg: 't.id', crate: 'id' }, [
      { name: 'qty', pg: 't.qty', crate: 'qty', norm: as.number },
      { name: 'note', pg: 't.note', crate: 'note', norm: as.text },
      { name: 'tags', pg: 'to_jsonb(t.tags)', crate: 'tags', norm: as.json },
      { name: 'body', pg: 't.body', crate: 'body', norm: as.json, crateNorm: as.jsonObject },
    ]);
    assert.ok(rows > ROWS / 2);
    const letters = await src.query(`select count(*)::int as n, string_agg(distinct op::text || ' ' || coalesce(error_code, '') || ' ' || left(error, 200), '; ') as what from pg2crate.dead_letters`);
    if (letters.rows[0].n > 0) console.log(letters.rows[0].what);
    assert.equal(letters.rows[0].n, 0);
    console.log(`cratedb initial load: ${rows} rows equal after ${writes} concurrent writes`);
  });
});
