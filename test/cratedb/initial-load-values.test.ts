// Values a real CrateDB cannot take, in a table whose initial load has the source build its
// parameter rows (sink/cratedb/copy-row-sql.ts): a row the SQL refers to its image is refused by
// the sink with its reason, a built row CrateDB refuses is parked with the image read again, and
// every other row arrives. Each dead letter holds the row's image, as a copied row's always did.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { as, assertSameAsSource, crateClient, endCrateSuite, skipWithoutCrate, testSchema } from '../helpers/cratedb.js';
import { initialLoadsDone, makeConfig, pool, startReplicator, waitFor, type Running } from '../helpers/replication.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';

const ROWS = 3000;
const LONG = `long-text-marker ${'ä'.repeat(20_000)}`; // 40 KB in UTF-8

/** id → the bad value and what its dead letter must say; built rows (CrateDB refuses) and referred ones (the sink refuses) */
const BAD: Record<number, { set: string; reason: RegExp }> = {
  7: { set: `n = 'NaN'`, reason: /Cannot cast value `NaN` to type `numeric\(10,2\)`/ },
  1013: { set: `ip = '192.168.0.5/24'`, reason: /Cannot cast value `192\.168\.0\.5\/24` to type `ip`/ },
  1021: { set: `big = 9223372036854775807`, reason: /9223372036854775807 exceeds allowed range/ },
  1034: { set: `ts = 'infinity'`, reason: /outside what a CrateDB timestamp holds/ },
  2055: { set: `js = '{"x": 0.1000000000000000000000000001}'`, reason: /crate\.jsonColumn/ },
  2077: { set: `txt = '${LONG}'`, reason: /crate\.textColumn/ },
  2999: { set: `ts = '0044-03-15 10:00 BC'`, reason: /no BC dates/ },
};

describe('values CrateDB cannot take, in an initial load built by the source', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('load_vals');
  let cluster: Cluster;
  let src: pg.Pool;
  let crate: CrateClient;
  let rep: Running | undefined;

  before(async () => {
    cluster = await startCluster();
    const url = await cluster.createDatabase('src');
    src = pool(url);
    crate = crateClient();
    await src.query(`create table public.vals (id integer primary key, n numeric(10,2), ts timestamptz, big bigint, ip inet, js jsonb, txt text)`);
    await src.query(`insert into public.vals select g, g * 1.25, '2024-01-01'::timestamptz + g * interval '1 minute', g, '10.0.0.1', jsonb_build_object('g', g), 'row ' || g
      from generate_series(1, ${ROWS}) g`);
    for (const [id, bad] of Object.entries(BAD)) await src.query(`update public.vals set ${bad.set} where id = ${id}`);
    rep = await startReplicator(makeConfig({
      DATABASE_URL: url, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_TABLES: 'public.vals',
      PG2CRATE_BACKFILL_CHUNK_ROWS: '1000', PG2CRATE_INITIAL_LOAD: 'direct', PG2CRATE_REJECT_ATTEMPTS: '2',
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
      `select (d.data->>'id')::int as id, d.error, d.data = to_jsonb(v.*) as same
         from pg2crate.dead_letters d left join public.vals v on v.id = (d.data->>'id')::int order by 1`,
    );
    assert.deepEqual(letters.rows.map((r) => r.id), Object.keys(BAD).map(Number));
    for (const r of letters.rows) {
      assert.match(r.error, BAD[r.id].reason, `dead letter of row ${r.id}`);
      assert.equal(r.same, true, `the dead letter of row ${r.id} holds the row's image`);
    }
    await src.query(`create view good_vals as select * from vals where id not in (${Object.keys(BAD).join(', ')})`);
    const rows = await assertSameAsSource(src, 'good_vals', crate, schema, 'vals', { pg: 't.id', crate: 'id' }, [
      { name: 'n', pg: 't.n::text', crate: 'n::TEXT', norm: as.number },
      { name: 'big', pg: 't.big::text', crate: 'big::TEXT', norm: as.text },
      { name: 'ip', pg: `to_jsonb(t.ip) #>> '{}'`, crate: 'ip', norm: as.text },
      { name: 'js', pg: 't.js', crate: 'js', norm: as.json, crateNorm: as.jsonObject },
      { name: 'txt', pg: 't.txt', crate: 'txt', norm: as.text },
    ]);
    assert.equal(rows, ROWS - Object.keys(BAD).length);
  });
});
