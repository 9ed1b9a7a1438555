// Values a real CrateDB cannot take, amid good rows of the same page: each bad row is parked in
// the dead-letter table with the reason (whether CrateDB failed the whole request, answered -2 for
// the row, or the sink refused it before sending), every other row is applied, and no log line
// quotes a value. Long text: parked with a message naming crate.textColumn by default, kept whole
// with crate.textColumn = unindexed. The same values in an initial load whose rows the source builds
// (the last suite) are parked with their images.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { as, assertSameAsSource, crateClient, crateCount, endCrateSuite, refresh, skipWithoutCrate, testSchema } from '../helpers/cratedb.js';
import { initialLoadsDone, logLines, makeConfig, pool, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';
import { qualify } from '../../src/core/identifiers.js';

const LONG = `long-text-marker ${'ä'.repeat(20_000)}`; // 40 KB in UTF-8

/** id → the bad value and what its dead letter must say */
const BAD: Record<number, { set: string; reason: RegExp }> = {
  7: { set: `n = 'NaN'`, reason: /Cannot cast value `NaN` to type `numeric\(10,2\)`/ },
  13: { set: `ip = '192.168.0.5/24'`, reason: /Cannot cast value `192\.168\.0\.5\/24` to type `ip`/ },
  21: { set: `big = 9223372036854775807`, reason: /9223372036854775807 exceeds allowed range/ },
  34: { set: `ts = 'infinity'`, reason: /outside what a CrateDB timestamp holds/ },
  55: { set: `js = '{"x": 0.1000000000000000000000000001}'`, reason: /crate\.jsonColumn/ },
  60: { set: `pt = point(200, 1)`, reason: /geo_point/ },
  77: { set: `txt = '${LONG}'`, reason: /crate\.textColumn/ },
  88: { set: `ts = '0044-03-15 10:00 BC'`, reason: /no BC dates/ },
};

const TABLE = `create table public.vals (id integer primary key, n numeric(10,2), ts timestamptz, big bigint, ip inet, pt point, js jsonb, txt text)`;
const CHECKS = [
  { name: 'n', pg: 't.n::text', crate: 'n::TEXT', norm: as.number },
  { name: 'big', pg: 't.big::text', crate: 'big::TEXT', norm: as.text },
  { name: 'ip', pg: `to_jsonb(t.ip) #>> '{}'`, crate: 'ip', norm: as.text },
  { name: 'js', pg: 't.js', crate: 'js', norm: as.json, crateNorm: as.jsonObject },
  { name: 'txt', pg: 't.txt', crate: 'txt', norm: as.text },
];

describe('dead letters with a real CrateDB', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('dead');
  const schemaUnindexed = testSchema('dead_long');
  let cluster: Cluster;
  let src: pg.Pool;
  let src2: pg.Pool;
  let crate: CrateClient;
  let rep: Running;
  let rep2: Running;

  before(async () => {
    cluster = await startCluster();
    const [url, url2] = [await cluster.createDatabase('src'), await cluster.createDatabase('src_long')];
    src = pool(url);
    src2 = pool(url2);
    crate = crateClient();
    await src.query(TABLE);
    await src2.query(TABLE);
    const env = { CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TABLES: 'public.vals', PG2CRATE_REJECT_ATTEMPTS: '2' };
    rep = await startReplicator(makeConfig({ ...env, DATABASE_URL: url, PG2CRATE_TARGET_SCHEMA: schema }));
    rep2 = await startReplicator(makeConfig({ ...env, DATABASE_URL: url2, PG2CRATE_TARGET_SCHEMA: schemaUnindexed, PG2CRATE_CRATE_TEXT: 'unindexed' }));
    // the (empty) initial loads must be over, or they would copy the rows written below once more
    await waitFor('the initial loads', async () => (await initialLoadsDone(src)) && initialLoadsDone(src2));
  });

  after(async () => {
    await endCrateSuite({ replicators: [rep, rep2], pools: [src, src2], cluster, crate, schemas: [schema, schemaUnindexed] });
  });

  test('each value CrateDB rejects is parked with its reason, and every other row of the page is applied', async () => {
    // one transaction, so that the bad rows and the good ones meet in one page and one request
    const c = await src.connect();
    try {
      await c.query('begin');
      await c.query(`insert into vals select g, g * 1.25, '2024-01-01'::timestamptz + g * interval '1 minute', g, '10.0.0.1', point(g % 180, g % 90),
        jsonb_build_object('g', g), 'row ' || g from generate_series(1, 100) g`);
      for (const [id, bad] of Object.entries(BAD)) await c.query(`update vals set ${bad.set} where id = ${id}`);
      await c.query('commit');
    } finally {
      c.release();
    }
    await waitCaughtUp(src);
    const letters = await src.query<{ id: number; code: string | null; error: string; same: boolean }>(
      `select (d.data->>'id')::int as id, d.error_code as code, d.error, d.data::jsonb = to_jsonb(v.*) as same
         from pg2crate.dead_letters d left join vals v on v.id = (d.data->>'id')::int order by 1`,
    );
    assert.deepEqual(letters.rows.map((r) => r.id), Object.keys(BAD).map(Number));
    for (const r of letters.rows) assert.match(r.error, BAD[r.id].reason, `dead letter of row ${r.id}`);
    // each holds the row's image, whole
    for (const r of letters.rows) assert.equal(r.same, true, `the dead letter of row ${r.id} holds the row's image`);
    assert.equal(await crateCount(crate, schema, 'vals'), 100 - Object.keys(BAD).length);
    const good = Object.keys(BAD).join(', ');
    await src.query(`create view good_vals as select * from vals where id not in (${good})`);
    assert.equal(await assertSameAsSource(src, 'good_vals', crate, schema, 'vals', { pg: 't.id', crate: 'id' }, CHECKS), 92);
    // CrateDB quotes values in its messages: they go to the dead letters, never to the logs
    for (const needle of ['9223372036854775807', '192.168.0.5/24', 'long-text-marker', '0.1000000000000000000000000001']) {
      assert.ok(!logLines.some((l) => l.includes(needle)), `a log line quotes the value ${needle}`);
    }
  });

  test('a parked row does not block later changes of its key', async () => {
    await src.query(`update vals set n = 1, ip = '10.0.0.2', big = 2, ts = now(), js = '{}', pt = point(1, 1), txt = 'fixed' where id in (${Object.keys(BAD).join(', ')})`);
    await waitCaughtUp(src);
    assert.equal(await crateCount(crate, schema, 'vals'), 100);
    assert.equal(await assertSameAsSource(src, 'public.vals', crate, schema, 'vals', { pg: 't.id', crate: 'id' }, CHECKS), 100);
  });

  test('with crate.textColumn = unindexed a 40 KB text and a 4 MB text arrive whole', async () => {
    await src2.query(`insert into vals (id, txt) values (1, $1), (2, repeat('x', 4 * 1024 * 1024)), (3, 'short')`, [LONG]);
    await waitCaughtUp(src2);
    const letters = await src2.query('select count(*)::int as n from pg2crate.dead_letters');
    assert.equal(letters.rows[0].n, 0);
    await refresh(crate, schemaUnindexed, 'vals');
    const res = await crate.sql(`SELECT id, char_length(txt), txt = ? FROM ${qualify(schemaUnindexed, 'vals')} ORDER BY id`, [LONG]);
    assert.deepEqual(res.rows, [[1, LONG.length, true], [2, 4 * 1024 * 1024, false], [3, 5, false]]);
  });
});

// The same values in a table whose initial load has the source build its parameter rows
// (sink/cratedb/copy-row-sql.ts: no point column): a row the SQL refers to its image is refused by
// the sink with its reason, a built row CrateDB refuses is parked with its image read again.
describe('dead letters of an initial load whose rows the source builds, with a real CrateDB', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('dead_load');
  const bad = Object.fromEntries(Object.entries(BAD).filter(([, b]) => !b.set.startsWith('pt')));
  let cluster: Cluster;
  let src: pg.Pool;
  let crate: CrateClient;
  let rep: Running | undefined;

  before(async () => {
    cluster = await startCluster();
    const url = await cluster.createDatabase('src');
    src = pool(url);
    crate = crateClient();
    await src.query(TABLE.replace(', pt point', ''));
    await src.query(`insert into vals select g, g * 1.25, '2024-01-01'::timestamptz + g * interval '1 minute', g, '10.0.0.1', jsonb_build_object('g', g), 'row ' || g
      from generate_series(1, 200) g`);
    for (const [id, b] of Object.entries(bad)) await src.query(`update vals set ${b.set} where id = ${id}`);
    // chunks of 40 rows: the bad rows are in three of them
    rep = await startReplicator(makeConfig({
      DATABASE_URL: url, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_TABLES: 'public.vals',
      PG2CRATE_BACKFILL_CHUNK_ROWS: '40', PG2CRATE_INITIAL_LOAD: 'direct', PG2CRATE_REJECT_ATTEMPTS: '2',
    }));
  });

  after(async () => {
    await endCrateSuite({ replicators: [rep], pools: [src], cluster, crate, schemas: [schema] });
  });

  test('each refused row is parked with its image and reason, every other row arrives', async () => {
    await waitFor('the initial load', () => initialLoadsDone(src), 120_000, 100);
    await rep!.stop();
    rep = undefined;
    const letters = await src.query<{ id: number; error: string; same: boolean }>(
      `select (d.data->>'id')::int as id, d.error, d.data = to_jsonb(v.*) as same from pg2crate.dead_letters d left join vals v on v.id = (d.data->>'id')::int order by 1`,
    );
    assert.deepEqual(letters.rows.map((r) => r.id), Object.keys(bad).map(Number));
    for (const r of letters.rows) {
      assert.match(r.error, bad[r.id].reason, `dead letter of row ${r.id}`);
      assert.equal(r.same, true, `the dead letter of row ${r.id} holds the row's image`);
    }
    await src.query(`create view good_vals as select * from vals where id not in (${Object.keys(bad).join(', ')})`);
    assert.equal(await assertSameAsSource(src, 'good_vals', crate, schema, 'vals', { pg: 't.id', crate: 'id' }, CHECKS), 200 - Object.keys(bad).length);
  });
});
