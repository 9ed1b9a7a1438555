// A CrateDB cluster, not one node (issue 20): with CRATEDB_URL listing the three nodes of a real
// cluster, four writers change three tables while the node listed first is killed (SIGKILL) and
// started again 20 s later, then another node (the elected master, when that is not the first) the
// same way. In the end CrateDB holds the source's rows, compared row by row by reading both
// databases, and nothing is parked. The created tables carry the default replicas, 0-2. How soon a
// change made while a node is down reaches CrateDB is printed with the timeline.
//
// Runs when CRATEDB_CLUSTER_URLS, CRATEDB_CLUSTER_PID_FILE and CRATEDB_CLUSTER_START describe the
// cluster (test/helpers/crate-cluster.ts); leaves every node running, as it found them.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { qualify } from '../../src/core/identifiers.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';
import {
  CRATEDB_CLUSTER_URLS, clusterClient, clusterNodeUrls, killNode, masterNode, nodePid, skipWithoutCrateCluster, startNode, waitNodeJoined,
} from '../helpers/crate-cluster.js';
import { as, assertSameAsSource, dropSchema, testSchema, type ColumnCheck } from '../helpers/cratedb.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { writeAtRandom, type WriteTally } from '../helpers/random-writers.js';
import { initialLoadsDone, makeConfig, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';

const WRITERS = 4;
const KEYS = 1500;
const BIG = 9_007_199_254_740_000n;
/** how long a killed node stays down */
const DOWN_MS = 20_000;
const SETTLE_MS = Number(process.env.PG2CRATE_TEST_WRITE_MS ?? 10_000);

function statement(r: () => number, tally: WriteTally): [string, unknown[]] {
  const k = () => 1 + Math.floor(r() * KEYS);
  const p = r();
  const table = r();
  if (table < 0.5) {
    if (p < 0.4) return ['insert into items (id, qty, note) values ($1, $2, $3) on conflict (id) do update set qty = excluded.qty, note = excluded.note', [k(), Math.floor(r() * 1000), `n${k()}`]];
    if (p < 0.65) return ['update items set qty = qty + $2, note = note || $3 where id = $1', [k(), 1 + Math.floor(r() * 5), ['x', 'ü', "o'q"][Math.floor(r() * 3)]]];
    if (p < 0.9) return ['delete from items where id = $1', [k()]];
    tally.keyChanges++;
    return ['update items set id = $2 where id = $1', [k(), k()]];
  }
  if (table < 0.8) {
    if (p < 0.45) return ['insert into pairs (a, b, val) values ($1, $2, $3) on conflict (a, b) do update set val = excluded.val', [k(), ['x', 'y', 'z'][Math.floor(r() * 3)], (r() * 1e6).toFixed(4)]];
    if (p < 0.65) return ['update pairs set val = val * 2 + 0.0001 where a = $1', [k()]];
    return ['delete from pairs where a = $1', [k()]];
  }
  if (p < 0.5) return ['insert into docs (id, body, tags) values ($1, $2, $3) on conflict (id) do update set body = excluded.body, tags = excluded.tags', [BigInt(k()) + BIG, JSON.stringify({ v: Math.floor(r() * 1e6), t: 'ü' }), ['a', 'b']]];
  if (p < 0.7) return ['update docs set tags = array_append(tags, $2) where id = $1', [BigInt(k()) + BIG, 'c']];
  return ['delete from docs where id = $1', [BigInt(k()) + BIG]];
}

const bed = skipWithoutCrateCluster ? null : clusterForFile();

describe('a CrateDB cluster of three nodes as the target', { skip: skipWithoutCrateCluster }, () => {
  test('nodes killed and restarted one after the other under four writers cost nothing: CrateDB ends equal to the source, nothing parked', async () => {
    const urls = clusterNodeUrls();
    assert.equal(urls.length, 3, 'CRATEDB_CLUSTER_URLS must list the three nodes');
    const schema = testSchema('cluster');
    const crate: CrateClient = clusterClient();
    let rep: Running | undefined;
    let replicatorFailed: unknown;
    const killed = new Set<number>();
    bed!.onClose(async () => {
      await rep?.stop();
      // leave the cluster as it was found: every node running and joined
      for (const n of killed) if (nodePid(n) === null) await startNode(n);
      for (const n of killed) await waitNodeJoined(n, urls.length);
      await dropSchema(crate, schema);
      crate.close();
    });
    for (let n = 1; n <= urls.length; n++) assert.ok(nodePid(n) !== null, `node ${n} must run before the test (CRATEDB_CLUSTER_PID_FILE)`);
    assert.equal(Number((await crate.sql('SELECT count(*) FROM sys.nodes')).rows[0][0]), urls.length, 'every listed node must be in the cluster');

    const { srcUrl, src } = await bed!.databases();
    await src.query(`
      create table public.items (id integer primary key, qty integer not null, note text);
      create table public.pairs (a integer, b text, val numeric(20,4), primary key (a, b));
      create table public.docs (id bigint primary key, body jsonb, tags text[]);
      create table public.beacon (id integer primary key, note text not null default 'b');`);
    rep = await startReplicator(makeConfig({
      DATABASE_URL: srcUrl, CRATEDB_URL: CRATEDB_CLUSTER_URLS, PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_PAGE_SIZE: '500',
      PG2CRATE_TABLES: 'public.items, public.pairs, public.docs, public.beacon',
    }));
    rep.done.catch((err: unknown) => { replicatorFailed = err; });
    await waitFor('the initial loads', () => initialLoadsDone(src), 120_000);

    // the replicas pg2crate gives created tables: a copy on every node of three
    const replicas = await crate.sql('SELECT table_name, number_of_replicas FROM information_schema.tables WHERE table_schema = ? ORDER BY 1', [schema]);
    assert.deepEqual(replicas.rows, [['beacon', '0-2'], ['docs', '0-2'], ['items', '0-2'], ['pairs', '0-2']]);

    const started = Date.now();
    const at = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
    const timeline: string[] = [];
    let scheduleDone = false;
    const tally: WriteTally = { commits: 0, rollbacks: 0, conflicts: 0, keyChanges: 0, statements: 0 };
    const writers = (async () => {
      // rounds of 5 s until the kills are over, then SETTLE_MS more
      let round = 0;
      let until = Infinity;
      while (Date.now() < until) {
        const t = await writeAtRandom({ url: srcUrl, seeds: Array.from({ length: WRITERS }, (_, i) => 9000 + round * 10 + i), durationMs: 5_000, statement });
        for (const key of Object.keys(tally) as (keyof WriteTally)[]) tally[key] += t[key];
        round++;
        if (scheduleDone && until === Infinity) until = Date.now() + SETTLE_MS;
      }
    })();
    writers.catch(() => {}); // awaited below; a writer's failure must not count as unhandled meanwhile

    /**
     * Kills node n, restarts it DOWN_MS later, and waits until it is back in the cluster; notes when
     * a change made right after the kill reached CrateDB.
     */
    const outage = async (n: number, beacon: number) => {
      const pid = await killNode(n);
      killed.add(n);
      const down = Date.now();
      timeline.push(`${at()}: node ${n} (pid ${pid}) killed`);
      await src.query('insert into beacon (id) values ($1)', [beacon]);
      let arrived: number | null = null;
      let watching = true;
      const watch = (async () => {
        while (watching && arrived === null) {
          const found = await crate.sql(`SELECT id FROM ${qualify(schema, 'beacon')} WHERE id = ?`, [beacon]).then((r) => r.rows.length === 1, () => false);
          if (found) arrived = Date.now();
          else await new Promise((r) => setTimeout(r, 200));
        }
      })();
      try {
        await new Promise((r) => setTimeout(r, Math.max(0, DOWN_MS - (Date.now() - down))));
        timeline.push(`${at()}: node ${n} starting`);
        await startNode(n);
        await waitNodeJoined(n, urls.length);
      } finally {
        watching = false;
        await watch;
      }
      timeline.push(`${at()}: node ${n} back in the cluster`);
      // Measured, not asserted: a write CrateDB holds when a node dies may wait for its own timeout
      // or pg2crate's (PG2CRATE_CRATE_TIMEOUT_MS) before the page is replayed.
      const seen = arrived as number | null;
      timeline.push(seen === null
        ? `(a change made after node ${n} was killed reached CrateDB only after the node was back)`
        : `(a change made after node ${n} was killed was in CrateDB ${((seen - down) / 1000).toFixed(1)} s after the kill)`);
    };
    try {
      await new Promise((r) => setTimeout(r, 5_000));
      // how far behind the writers the replicator runs with every node up, for comparison
      const t0 = Date.now();
      await src.query('insert into beacon (id) values (0)');
      await waitFor('beacon 0 in CrateDB', async () => (await crate.sql(`SELECT id FROM ${qualify(schema, 'beacon')} WHERE id = 0`)).rows.length === 1, 120_000, 200);
      timeline.push(`${at()}: with every node up a change is in CrateDB ${((Date.now() - t0) / 1000).toFixed(1)} s after its commit`);
      await new Promise((r) => setTimeout(r, 5_000));
      await outage(1, 1);
      const master = await masterNode(crate);
      const second = master !== null && master !== 1 ? master : 2;
      timeline.push(`node ${master ?? '?'} is master`);
      await outage(second, 2);
    } finally {
      scheduleDone = true;
    }
    await writers;
    timeline.push(`${at()}: writers stopped (${tally.commits} commits, ${tally.statements} statements, ${tally.keyChanges} key changes)`);
    await waitCaughtUp(src, 'pg2crate', 300_000);
    timeline.push(`${at()}: caught up`);
    assert.equal(replicatorFailed, undefined, `the replicator stopped: ${String(replicatorFailed)}`);
    const stats = rep.runner.drainer?.stats;
    await rep.stop();
    rep = undefined;

    const parked = await src.query<{ n: string }>('select count(*)::text as n from pg2crate.dead_letters');
    assert.equal(parked.rows[0].n, '0', 'no change may be parked because a node was down');
    const rows = [
      await assertSameAsSource(src, 'public.items', crate, schema, 'items', { pg: 't.id', crate: 'id' },
        [{ name: 'qty', pg: 't.qty', crate: 'qty', norm: as.number }, { name: 'note', pg: 't.note', crate: 'note', norm: as.text }]),
      await assertSameAsSource(src, 'public.pairs', crate, schema, 'pairs', { pg: `t.a::text || '/' || t.b`, crate: `a::TEXT || '/' || b` },
        [{ name: 'val', pg: 't.val::text', crate: 'val::TEXT', norm: as.number }]),
      await assertSameAsSource(src, 'public.docs', crate, schema, 'docs', { pg: 't.id', crate: 'id' }, [
        { name: 'body', pg: 't.body', crate: 'body', norm: as.json, crateNorm: as.jsonObject },
        { name: 'tags', pg: 'to_jsonb(t.tags)', crate: 'tags', norm: as.json },
      ] satisfies ColumnCheck[]),
      await assertSameAsSource(src, 'public.beacon', crate, schema, 'beacon', { pg: 't.id', crate: 'id' }, [{ name: 'note', pg: 't.note', crate: 'note', norm: as.text }]),
    ];
    assert.ok(tally.commits > 500, `only ${tally.commits} commits`);
    assert.ok(rows.slice(0, 3).every((n) => n > 100), `tables too empty to compare meaningfully: ${rows.join(', ')}`);
    console.log(`cratedb cluster: ${timeline.join('; ')}; rows ${rows.join('/')}; retried pages ${stats?.errors.retryable ?? 0}; dead letters 0`);
  });
});
