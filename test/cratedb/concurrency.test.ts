// The drainer's invariants hold with CrateDB as the target: a transaction that commits out of id
// order is not lost, and eight writers changing three tables at random end with CrateDB equal to
// the source, row by row.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { as, assertSameAsSource, crateClient, endCrateSuite, skipWithoutCrate, testSchema, type ColumnCheck } from '../helpers/cratedb.js';
import { writeAtRandom, type WriteTally } from '../helpers/random-writers.js';
import { initialLoadsDone, makeConfig, pool, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';
import { qualify } from '../../src/core/identifiers.js';

const WRITERS = 8;
const DURATION_MS = Number(process.env.PG2CRATE_TEST_WRITE_MS ?? 15_000);
const KEYS = 300;
const BIG = 9_007_199_254_740_000n;

function statement(r: () => number, tally: WriteTally): [string, unknown[]] {
  const k = () => 1 + Math.floor(r() * KEYS);
  const tag = () => ['x', 'y', 'z', 'ü', "o'q"][Math.floor(r() * 5)];
  const p = r();
  const table = Math.floor(r() * 3);
  if (table === 0) {
    if (p < 0.35) return [`insert into items (id, qty, note) values ($1, $2, $3) on conflict (id) do update set qty = excluded.qty`, [k(), Math.floor(r() * 1000), `n${k()}`]];
    if (p < 0.65) return [`update items set qty = qty + $2, note = note || $3 where id = $1`, [k(), 1 + Math.floor(r() * 5), tag()]];
    if (p < 0.85) return [`delete from items where id = $1`, [k()]];
    tally.keyChanges++;
    return [`update items set id = $2 where id = $1`, [k(), k()]];
  }
  if (table === 1) {
    if (p < 0.4) return [`insert into pairs (a, b, val) values ($1, $2, $3) on conflict do nothing`, [k(), tag(), (r() * 1e6).toFixed(4)]];
    if (p < 0.6) return [`update pairs set val = val * 2 + 0.0001 where a = $1`, [k()]];
    if (p < 0.8) return [`delete from pairs where a = $1 and b = $2`, [k(), tag()]];
    tally.keyChanges++;
    return [`update pairs set a = $2 where a = $1`, [k(), k()]];
  }
  if (p < 0.4) return [`insert into docs (id, body, tags) values ($1, $2, $3) on conflict (id) do update set body = excluded.body`, [BigInt(k()) + BIG, JSON.stringify({ v: r(), nested: { t: tag() } }), [tag(), tag()]]];
  if (p < 0.65) return [`update docs set body = jsonb_set(coalesce(body, '{}'), '{n}', to_jsonb($2::int)), tags = array_append(tags, $3) where id = $1`, [BigInt(k()) + BIG, Math.floor(r() * 100), tag()]];
  if (p < 0.85) return [`delete from docs where id = $1`, [BigInt(k()) + BIG]];
  tally.keyChanges++;
  return [`update docs set id = $2 where id = $1`, [BigInt(k()) + BIG, BigInt(k()) + BIG]];
}

describe('drain invariants with a real CrateDB', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('conc');
  let cluster: Cluster;
  let srcUrl: string;
  let src: pg.Pool;
  let crate: CrateClient;
  let rep: Running | undefined;
  const clients: pg.Client[] = [];

  const same = {
    items: () => assertSameAsSource(src, 'public.items', crate, schema, 'items', { pg: 't.id', crate: 'id' },
      [{ name: 'qty', pg: 't.qty', crate: 'qty', norm: as.number }, { name: 'note', pg: 't.note', crate: 'note', norm: as.text }]),
    pairs: () => assertSameAsSource(src, 'public.pairs', crate, schema, 'pairs', { pg: `t.a::text || '/' || t.b`, crate: `a::TEXT || '/' || b` },
      [{ name: 'val', pg: 't.val::text', crate: 'val::TEXT', norm: as.number }]),
    docs: () => assertSameAsSource(src, 'public.docs', crate, schema, 'docs', { pg: 't.id', crate: 'id' }, [
      { name: 'body', pg: 't.body', crate: 'body', norm: as.json, crateNorm: as.jsonObject },
      { name: 'tags', pg: 'to_jsonb(t.tags)', crate: 'tags', norm: as.json },
    ] satisfies ColumnCheck[]),
  };

  async function client(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: srcUrl });
    await c.connect();
    clients.push(c);
    return c;
  }

  before(async () => {
    cluster = await startCluster();
    srcUrl = await cluster.createDatabase('src');
    src = pool(srcUrl);
    crate = crateClient();
    await src.query(`
      create table public.accounts (id integer primary key, v text not null);
      create table public.items (id integer primary key, qty integer not null, note text);
      create table public.pairs (a integer, b text, val numeric(20,4), primary key (a, b));
      create table public.docs (id bigint primary key, body jsonb, tags text[]);`);
    rep = await startReplicator(makeConfig({
      DATABASE_URL: srcUrl, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_PAGE_SIZE: '200',
      PG2CRATE_TABLES: 'public.accounts, public.items, public.pairs, public.docs',
    }));
    // the (empty) initial load must be over, or it would copy the rows the tests write once more
    await waitFor('the initial load', () => initialLoadsDone(src));
  });

  after(async () => {
    for (const c of clients) await c.end().catch(() => {});
    await endCrateSuite({ replicators: [rep], pools: [src], cluster, crate, schemas: [schema] });
  });

  test('a transaction that takes its outbox ids first but commits last is not lost', async () => {
    const a = await client();
    await a.query('begin');
    await a.query(`insert into accounts (id, v) select g, 'a' from generate_series(1, 20) g`);
    await a.query(`update accounts set v = 'a2' where id <= 10`);
    await src.query(`insert into accounts (id, v) values (100, 'b')`);
    const target = async (id: number) => (await crate.sql(`SELECT v FROM ${qualify(schema, 'accounts')} WHERE id = ?`, [id])).rows[0]?.[0];
    await waitFor('the later transaction in CrateDB', async () => (await target(100)) === 'b');
    await waitCaughtUp(src);
    assert.equal(await target(1), undefined, 'the open transaction must not be applied before it commits');
    await a.query('commit');
    await waitCaughtUp(src);
    await assertSameAsSource(src, 'public.accounts', crate, schema, 'accounts', { pg: 't.id', crate: 'id' }, [{ name: 'v', pg: 't.v', crate: 'v', norm: as.text }]);
    assert.equal(await target(1), 'a2');
    assert.equal(await target(11), 'a');
  });

  test(`eight writers changing three tables at random end with CrateDB equal to the source`, async () => {
    const seeds = Array.from({ length: WRITERS }, (_, i) => 2000 + i);
    const tally = await writeAtRandom({ url: srcUrl, seeds, durationMs: DURATION_MS, statement });
    await waitCaughtUp(src, 'pg2crate', 120_000);
    const stats = rep!.runner.drainer?.stats;
    await rep!.stop();
    rep = undefined;
    assert.ok(tally.commits > 300, `only ${tally.commits} commits`);
    assert.ok(tally.keyChanges > 50, `only ${tally.keyChanges} key changes`);
    assert.equal(stats?.deadLetters ?? 0, 0, 'nothing may be parked');
    const rows = [await same.items(), await same.pairs(), await same.docs()];
    assert.ok(rows.every((n) => n > 20), `tables too empty to compare meaningfully: ${rows.join(', ')}`);
    console.log(`cratedb concurrent writers: ${tally.commits} commits, ${tally.rollbacks} rollbacks, ${tally.keyChanges} key changes, rows ${rows.join('/')}`);
  });
});
