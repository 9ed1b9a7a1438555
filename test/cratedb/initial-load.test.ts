// The direct initial load into a real CrateDB: rows go straight through the sink while writers
// keep changing the table, and the re-send of what changed meanwhile leaves CrateDB equal to the
// source, row by row; and the values whose parameter rows the source builds (sink/cratedb/
// copy-row-sql.ts) arrive as the source holds them: floats and arrays as json prints them (1e+20,
// 5e-324, "NaN"), json objects with and without numbers an OBJECT may not keep.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { as, assertSameAsSource, crateClient, endCrateSuite, skipWithoutCrate, testSchema } from '../helpers/cratedb.js';
import { initialLoadsDone, makeConfig, pool, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';

const ROWS = 30_000;

/** An array's elements as texts (a float's own), and each element normalised: floats compare as doubles, whatever their notation. */
const elementTexts = (a: string) => `case when ${a} is not null then coalesce((select json_agg(x::text order by i) from unnest(${a}) with ordinality u(x, i)), '[]') end`;
const each = (norm: (v: unknown) => unknown) => (v: unknown) => (v === null || v === undefined ? null : JSON.stringify((v as unknown[]).map(norm)));

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
    // Rows that chunks of 1,000 put together: some built, some referred by the json test.
    await src.query(`create type mood as enum ('sad', 'ok', 'happy');
      create table public.vals (id bigint primary key, r4 real, f8 double precision, f8s float8[], r4s real[], ints integer[], flags boolean[],
        texts text[], ips inet[], moods mood[], js jsonb)`);
    await src.query(`insert into public.vals values
      (1, 3.25, 0.30000000000000004, '{1e20,0.1,-2.5}', '{1e-7,3.4028235e38}', '{1,NULL,3}', '{t,f}', '{"a,b","c\\"d",NULL,"😀",""}', '{::1,10.0.0.1}', '{sad,NULL}', '{"g": 1, "a": [1, "x"]}'),
      (2, 1e-7, 1e20, '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{"f": 1.5}'),
      (3, 'NaN', 5e-324, null, null, null, null, null, null, null, '{"_value": 1}'),
      (4, '-Infinity', 'Infinity', '{-1e-300}', '{-0.5}', '{-2147483648}', '{NULL}', '{"1e5"}', '{NULL}', '{happy}', '{"big": 1234567890123456}'),
      (5, 3.4028235e38, -1.7976931348623157e308, '{5e-324}', null, null, null, null, null, null, '{"n": 123456789012345, "s": "x"}')`);
    rep = await startReplicator(makeConfig({
      DATABASE_URL: srcUrl, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_TABLES: 'public.items,public.vals',
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

  test('floats, arrays and json objects copied by the load hold the source values', async () => {
    await waitFor('the initial load', () => initialLoadsDone(src), 180_000, 200);
    const rows = await assertSameAsSource(src, 'public.vals', crate, schema, 'vals', { pg: 't.id', crate: 'id' }, [
      { name: 'r4', pg: 't.r4::text', crate: 'r4', norm: as.real },
      { name: 'f8', pg: 't.f8::text', crate: 'f8', norm: as.float },
      { name: 'f8s', pg: elementTexts('t.f8s'), crate: 'f8s', norm: each(as.float) },
      { name: 'r4s', pg: elementTexts('t.r4s'), crate: 'r4s', norm: each(as.real) },
      { name: 'ints', pg: 'to_jsonb(t.ints)', crate: 'ints', norm: as.json },
      { name: 'flags', pg: 'to_jsonb(t.flags)', crate: 'flags', norm: as.json },
      { name: 'texts', pg: 'to_jsonb(t.texts)', crate: 'texts', norm: as.json },
      { name: 'ips', pg: 'to_jsonb(t.ips)', crate: 'ips', norm: as.json },
      { name: 'moods', pg: 'to_jsonb(t.moods)', crate: 'moods', norm: as.json },
      { name: 'js', pg: 't.js', crate: 'js', norm: as.json, crateNorm: as.jsonObject },
    ]);
    assert.equal(rows, 5);
  });
});
