// Changes of every kind reach a real CrateDB: key changes (single and composite), deletes, a row
// deleted within a second of its insert (a by-key delete sees an unrefreshed row; a search would
// not), truncate, a column added in the source, and names CrateDB cannot hold.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { as, assertSameAsSource, crateClient, crateCount, endCrateSuite, skipWithoutCrate, testSchema, type ColumnCheck } from '../helpers/cratedb.js';
import { initialLoadsDone, makeConfig, pool, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { crateColumnName, crateTargetName } from '../../src/sink/cratedb/cratedb-sink.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';
import { qualify } from '../../src/core/identifiers.js';

const qc = (name: string) => `"${crateColumnName(name).replace(/"/g, '""')}"`;

describe('changes in a real CrateDB', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('changes');
  const weird = crateTargetName(schema, 'Order Items');
  let cluster: Cluster;
  let src: pg.Pool;
  let crate: CrateClient;
  let rep: Running;

  const ITEMS: ColumnCheck[] = [{ name: 'v', pg: 't.v', crate: 'v', norm: as.text }, { name: 'n', pg: 't.n', crate: 'n', norm: as.number }];
  const PAIRS: ColumnCheck[] = [{ name: 'val', pg: 't.val::text', crate: 'val::TEXT', norm: as.number }];
  const sameItems = () => assertSameAsSource(src, 'public.items', crate, schema, 'items', { pg: 't.id', crate: 'id' }, ITEMS);
  const samePairs = () => assertSameAsSource(src, 'public.pairs', crate, schema, 'pairs', { pg: `t.a::text || '/' || t.b`, crate: `a::TEXT || '/' || b` }, PAIRS);

  before(async () => {
    cluster = await startCluster();
    const url = await cluster.createDatabase('src');
    src = pool(url);
    crate = crateClient();
    await src.query(`
      create table public.items (id bigint primary key, v text, n integer);
      create table public.pairs (a integer, b text, val numeric(20,4), primary key (a, b));
      create table public."Order Items" ("_id" text, "line.no" integer, "Qty" integer, primary key ("_id", "line.no"));
      insert into items select g, 'seed ' || g, g from generate_series(1, 50) g;`);
    rep = await startReplicator(makeConfig({
      DATABASE_URL: url, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_PAGE_SIZE: '100',
      PG2CRATE_TABLES: 'public.items, public.pairs, public."Order Items"',
    }));
  });

  after(async () => {
    await endCrateSuite({ replicators: [rep], pools: [src], cluster, crate, schemas: [schema] });
  });

  test('rows present before the start, inserts, updates, key changes and deletes end equal to the source', async () => {
    await src.query(`insert into items select g, 'new ' || g, g from generate_series(51, 300) g`);
    await src.query(`update items set v = v || ' changed', n = n * 2 where id % 3 = 0`);
    await src.query(`update items set id = id + 1000 where id between 10 and 20`);
    // two keys swapped in one transaction
    await src.query(`begin; update items set id = -id where id in (1, 2); update items set id = case id when -1 then 2 else 1 end where id < 0; commit;`);
    await src.query(`delete from items where id % 7 = 0`);
    await src.query(`insert into pairs select g, s, g * 1.5 from generate_series(1, 40) g, unnest(array['x', 'y']) s`);
    await src.query(`update pairs set a = a + 100 where a <= 10`);
    await src.query(`update pairs set b = b || '2', val = val + 0.0001 where a between 20 and 25`);
    await src.query(`delete from pairs where a between 30 and 35 and b = 'x'`);
    await waitFor('the initial load of the rows present before the start', () => initialLoadsDone(src));
    await waitCaughtUp(src);
    assert.ok((await sameItems()) > 200);
    assert.ok((await samePairs()) > 60);
  });

  test('a row deleted within a second of its insert is deleted in CrateDB, page after page', async () => {
    // Insert and delete land in different pages and windows: each delete finds an unrefreshed row.
    for (let i = 0; i < 20; i++) {
      await src.query(`insert into items (id, v) select g, 'short-lived' from generate_series(${5000 + i * 10}, ${5009 + i * 10}) g`);
      await new Promise((r) => setTimeout(r, 50));
      await src.query(`delete from items where id between ${5000 + i * 10} and ${5009 + i * 10}`);
    }
    await waitCaughtUp(src);
    const left = await crate.sql(`SELECT count(*) FROM ${qualify(schema, 'items')} WHERE v = 'short-lived'`);
    await crateCount(crate, schema, 'items');
    const afterRefresh = await crate.sql(`SELECT count(*) FROM ${qualify(schema, 'items')} WHERE v = 'short-lived'`);
    assert.equal(Number(afterRefresh.rows[0][0]), 0, `rows left behind (before refresh the search saw ${left.rows[0][0]})`);
    await sameItems();
  });

  test('truncate empties the CrateDB table, and rows written after it in the same page arrive', async () => {
    await src.query(`begin; truncate pairs; insert into pairs values (1, 'after', 1.2345); commit;`);
    await waitCaughtUp(src);
    assert.equal(await samePairs(), 1);
  });

  test('a column added in the source is added in CrateDB before rows carrying it are applied', async () => {
    // (without a default: Postgres fills a default into existing rows without firing triggers)
    await src.query(`alter table items add column added_later numeric(12,3), add column "_version" text`);
    await src.query(`insert into items (id, v, added_later, "_version") values (9001, 'drift', 12345.678, 'v1')`);
    await src.query(`update items set "_version" = 'v2' where id = 50`);
    await waitCaughtUp(src);
    const cols = await crate.sql('SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position', [schema, 'items']);
    assert.deepEqual(cols.rows.map((r) => r[0]), ['id', 'v', 'n', 'added_later', crateColumnName('_version')]);
    assert.equal(cols.rows[3][1], 'numeric');
    await assertSameAsSource(src, 'public.items', crate, schema, 'items', { pg: 't.id', crate: 'id' }, [
      ...ITEMS,
      { name: 'added_later', pg: 't.added_later::text', crate: 'added_later::TEXT', norm: as.number },
      { name: '_version', pg: 't."_version"', crate: qc('_version'), norm: as.text },
    ]);
  });

  test('a table and columns with names CrateDB cannot hold arrive under their mapped names', async () => {
    assert.match(weird.table, /^Order_Items_[0-9a-f]{8}$/);
    await src.query(`insert into "Order Items" select 'k' || g, g, g * 10 from generate_series(1, 25) g`);
    await src.query(`update "Order Items" set "line.no" = "line.no" + 100 where "Qty" > 200`);
    await src.query(`delete from "Order Items" where "_id" = 'k1'`);
    await waitCaughtUp(src);
    const n = await assertSameAsSource(src, 'public."Order Items"', crate, weird.schema, weird.table,
      { pg: `t."_id" || '/' || t."line.no"`, crate: `${qc('_id')} || '/' || ${qc('line.no')}` },
      [{ name: 'Qty', pg: 't."Qty"', crate: '"Qty"', norm: as.number }]);
    assert.equal(n, 24);
  });
});
