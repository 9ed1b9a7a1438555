// Invariants 1 and 2 under load: eight writers change three tables at random for twenty seconds —
// inserts, updates, deletes, key changes, multi-statement transactions, rollbacks, transactions
// held open while others commit — and the target ends equal to the source, row by row.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { writeAtRandom, type WriteTally } from '../helpers/random-writers.js';
import { assertSameRows, makeConfig, startReplicator, waitCaughtUp, type Running } from '../helpers/replication.js';

const WRITERS = 8;
const DURATION_MS = Number(process.env.PG2CRATE_TEST_WRITE_MS ?? 20_000);
const KEYS = 400;

const bed = clusterForFile();
let srcUrl: string;
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running | undefined;
bed.onClose(() => rep?.stop());

/** One random statement on one of the three tables. */
function statement(r: () => number, tally: WriteTally): [string, unknown[]] {
  const k = () => 1 + Math.floor(r() * KEYS);
  const tag = () => ['x', 'y', 'z', 'ü', "o'q"][Math.floor(r() * 5)];
  const p = r();
  const table = Math.floor(r() * 3);
  if (table === 0) {
    if (p < 0.3) return [`insert into items (id, qty, note) values ($1, $2, $3) on conflict (id) do update set qty = excluded.qty`, [k(), Math.floor(r() * 1000), `n${k()}`]];
    if (p < 0.6) return [`update items set qty = qty + $2, note = note || $3 where id = $1`, [k(), 1 + Math.floor(r() * 5), tag()]];
    if (p < 0.7) return [`update items set qty = qty - 1 where id between $1 and $1 + 10`, [k()]];
    if (p < 0.85) return [`delete from items where id = $1`, [k()]];
    tally.keyChanges++;
    return [`update items set id = $2 where id = $1`, [k(), k()]];
  }
  if (table === 1) {
    if (p < 0.35) return [`insert into pairs (a, b, val) values ($1, $2, $3) on conflict do nothing`, [k(), tag(), (r() * 1e6).toFixed(4)]];
    if (p < 0.6) return [`update pairs set val = val * 2 + 0.0001 where a = $1`, [k()]];
    if (p < 0.75) return [`delete from pairs where a = $1 and b = $2`, [k(), tag()]];
    tally.keyChanges++;
    // Moves a whole group of composite keys at once.
    if (p < 0.9) return [`update pairs set a = $2 where a = $1`, [k(), k()]];
    return [`update pairs set b = b || '+' where a = $1`, [k()]];
  }
  if (p < 0.35) return [`insert into docs (id, body, tags) values ($1, $2, $3) on conflict (id) do update set body = excluded.body`, [BigInt(k()) + 9_007_199_254_740_000n, JSON.stringify({ v: r(), nested: { t: tag() } }), [tag(), tag()]]];
  if (p < 0.65) return [`update docs set body = jsonb_set(coalesce(body, '{}'), '{n}', to_jsonb($2::int)), tags = array_append(tags, $3) where id = $1`, [BigInt(k()) + 9_007_199_254_740_000n, Math.floor(r() * 100), tag()]];
  if (p < 0.85) return [`delete from docs where id = $1`, [BigInt(k()) + 9_007_199_254_740_000n]];
  tally.keyChanges++;
  return [`update docs set id = $2 where id = $1`, [BigInt(k()) + 9_007_199_254_740_000n, BigInt(k()) + 9_007_199_254_740_000n]];
}

before(async () => {
  let dstUrl: string;
  ({ srcUrl, dstUrl, src, dst } = await bed.databases());
  await src.query(`
    create table public.items (id integer primary key, qty integer not null, note text);
    create table public.pairs (a integer, b text, val numeric(20,4), primary key (a, b));
    create table public.docs (id bigint primary key, body jsonb, tags text[]);
    insert into items select g, g, 'seed' from generate_series(1, ${KEYS}, 3) g;
    insert into pairs select g, 'x', g from generate_series(1, ${KEYS}, 2) g;
  `);
  rep = await startReplicator(makeConfig({
    DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.items, public.pairs, public.docs', PG2CRATE_PAGE_SIZE: '200',
  }));
});

test('eight writers changing three tables at random for twenty seconds end with the target equal to the source', async () => {
  const seeds = Array.from({ length: WRITERS }, (_, i) => 1000 + i);
  const tally = await writeAtRandom({ url: srcUrl, seeds, durationMs: DURATION_MS, statement });

  await waitCaughtUp(src, 'pg2crate', 120_000);
  await rep!.stop();
  const stats = rep!.runner.drainer?.stats;
  rep = undefined;

  // The run must have exercised what it claims to, or equality proves little.
  assert.ok(tally.commits > 500, `only ${tally.commits} commits`);
  assert.ok(tally.rollbacks > 10, `only ${tally.rollbacks} rollbacks`);
  assert.ok(tally.keyChanges > 100, `only ${tally.keyChanges} key changes`);
  assert.ok((stats?.windows ?? 0) > 5, `the drain ran in only ${stats?.windows} windows`);

  const rows = [
    await assertSameRows(src, dst, 'public.items', 'public.items', ['id']),
    await assertSameRows(src, dst, 'public.pairs', 'public.pairs', ['a', 'b']),
    await assertSameRows(src, dst, 'public.docs', 'public.docs', ['id']),
  ];
  assert.ok(rows.every((n) => n > 20), `tables too empty to compare meaningfully: ${rows.join(', ')}`);
  console.log(`concurrent writers: ${tally.commits} commits, ${tally.rollbacks} rollbacks, ${tally.conflicts} conflicts, ${tally.keyChanges} key changes, rows ${rows.join('/')}`);
});
