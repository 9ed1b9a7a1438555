// verify against a Postgres target: equal copies are equal; a row changed, deleted or added behind
// the replicator's back is found by key (and only those keys), through ranges, narrowing and the
// re-check; --repair fixes them through the outbox; changes in flight settle instead of being
// reported; without a replicator verify says so.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { Config } from '../../src/core/config.js';
import type { Sink, SinkTableBatch, ApplyResult } from '../../src/sink/sink.js';
import type { TableInfo } from '../../src/core/change.js';
import { postgresVerifyTarget } from '../../src/verify/postgres-target.js';
import { runVerify, type VerifyResult } from '../../src/verify/run-verify.js';
import type { TableReport } from '../../src/verify/report.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let dstUrl: string;
let config: Config;
let rep: Running;
/** applies wait for this while a test holds it closed */
let gate: Promise<void> = Promise.resolve();

/** A sink whose applies can be held back, to keep changes in flight on purpose. */
class GatedSink implements Sink {
  constructor(readonly inner: Sink) {}
  get name() { return this.inner.name; }
  start() { return this.inner.start(); }
  prepare(t: TableInfo) { return this.inner.prepare(t); }
  async apply(b: SinkTableBatch[]): Promise<ApplyResult> { await gate; return this.inner.apply(b); }
  stop() { return this.inner.stop(); }
}

const TABLES = ['public.items', 'public.pairs', 'public.typed', 'public.udt', 'public.bulk', 'public.words'];

before(async () => {
  let s: string, d: string;
  ({ srcUrl: s, dstUrl: d, src, dst } = await bed.databases());
  dstUrl = d;
  // Output defaults unlike the source's: verify must not depend on either server's settings.
  const dstName = new URL(d).pathname.slice(1);
  for (const set of [`timezone to 'Pacific/Chatham'`, 'extra_float_digits to 0', `intervalstyle to 'iso_8601'`, `bytea_output to 'escape'`]) {
    await src.query(`alter database "${dstName}" set ${set}`);
  }
  await src.query(`
    create type color as enum ('red', 'green', 'blue');
    create type pair as (x int, y text);
    create table items (id bigint primary key, name text, qty int);
    create table pairs (region text, n int, note text, t text, primary key (region, n)); -- a column named like verify's alias
    create table typed (id int primary key, ts timestamptz, num numeric(38,10), js jsonb, b bytea, f8 double precision, iv interval, colour color);
    create table udt (id int primary key, hue color, p pair, cs color[], ps pair[]);
    create table bulk (id int primary key, v text);
    create table words (w text primary key, v int);`);
  // The target orders these keys another way (ICU: a < B; the source's C collation: B < a).
  await dst.query(`create table public.words (w text collate "und-x-icu", v int, primary key (w))`);
  await src.query(`
    insert into items select g, 'item ' || g, g * 3 from generate_series(1, 50) g;
    insert into pairs select r, n, r || '/' || n, 't' || n from unnest(array['a', 'b', 'c']) r, generate_series(1, 10) n;
    insert into typed select g, '2024-02-29 23:59:59.123456+05:30'::timestamptz + g * interval '1 day 1 microsecond',
      1234567890123456789012345678.0123456789 / g, jsonb_build_object('n', g, 'big', 123456789012345678901234567890, 'list', jsonb_build_array(g, 'x', null)),
      decode(lpad(to_hex(g), 4, '0') || '00ff', 'hex'), 1.0 / g, g * interval '1 day 2 hours 0.5 seconds', (array['red', 'green', 'blue']::color[])[1 + g % 3]
      from generate_series(1, 20) g;
    insert into udt values (1, 'red', '(1,"a b")', '{red,blue}', array['(1,x)'::pair, null, '(2,)'::pair]), (2, null, null, '{}', '{}'), (3, 'blue', '(3,)', null, null);
    insert into bulk select g, 'v' || g from generate_series(1, 40, 2) g;
    insert into words select chr(c), c from generate_series(65, 90) c union all select chr(c), c from generate_series(97, 122) c;`);
  config = makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: TABLES.join(',') });
  rep = await startReplicator(config, testLogger(), { wrapSink: (sink) => new GatedSink(sink) });
  // The rows arrive through the initial load; the tests start once it is applied.
  await waitFor('the initial loads', async () => (await src.query(`select bool_and(status = 'done') as ok from pg2crate.backfills`)).rows[0].ok);
  await waitCaughtUp(src);
});

bed.onClose(async () => {
  gate = Promise.resolve();
  await rep?.stop();
});

async function verify(opts: { repair?: boolean; form?: 'postgres-md5' | 'client'; tables?: string[]; rangeRows?: number } = {}): Promise<VerifyResult & { lines: string[] }> {
  const target = postgresVerifyTarget(dstUrl, { form: opts.form });
  const lines: string[] = [];
  try {
    const tables = opts.tables?.map((t) => ({ schema: 'public', table: t.replace(/^public\./, '') }));
    const res = await runVerify({
      config, pool: src, target, tables, repair: opts.repair ?? false, logger: testLogger(), out: (l) => lines.push(l),
      rangeRows: opts.rangeRows ?? 7, catchUpTimeoutMs: 30_000,
    });
    return { ...res, lines };
  } finally {
    await target.close();
  }
}

function report(res: VerifyResult, table: string): TableReport {
  const r = res.reports.find((x) => x.table === table);
  assert.ok(r, `no report for ${table}`);
  return r;
}

function keysOf(r: TableReport, kind: 'missing' | 'extra' | 'different'): string[] {
  return [...r.differences[kind].keys].sort();
}

test('a faithful copy verifies equal, over many ranges, for every table', async () => {
  const res = await verify();
  assert.equal(res.equal, true, res.lines.join('\n'));
  assert.deepEqual(res.reports.map((r) => r.table).sort(), TABLES.slice().sort());
  const items = report(res, 'public.items');
  assert.equal(items.sourceRows, 50);
  assert.equal(items.targetRows, 50);
  assert.equal(items.ranges, 8);
  assert.equal(items.differingRanges, 0);
  assert.equal(items.catchUp, 'not-needed');
  assert.match(res.lines[0], /^table +result +source rows +target rows +missing +extra +different +time$/);
  assert.match(res.lines.join('\n'), /^public\.items +equal +50 +50 +0 +0 +0 +\d+\.\d s$/m);
});

test('keys the two sides order differently are re-checked by key, not reported', async () => {
  const res = await verify({ tables: ['words'] });
  const words = report(res, 'public.words');
  const seen = words.firstPass.missing + words.firstPass.extra + words.firstPass.different;
  assert.ok(seen > 0, 'the ranges hold different rows on each side');
  assert.equal(words.equal, true, res.lines.join('\n'));
});

test('a row changed, deleted or added in the target is found by its key, and only those keys', async () => {
  await dst.query(`
    update items set name = 'tampered' where id = 10; delete from items where id = 20; insert into items values (1000, 'stray', 0);
    update pairs set note = 'tampered' where region = 'b' and n = 3; delete from pairs where region = 'a' and n = 1; insert into pairs values ('zz', 99, 'stray', null);
    update typed set ts = ts + interval '1 microsecond' where id = 5; delete from typed where id = 7; insert into typed (id) values (999);
    update typed set js = '{"list": [6, "x", null], "big": 123456789012345678901234567890, "n": 6}' where id = 6;
    update udt set ps = array['(1,x)'::text, null, '{"x": 2, "y": "changed"}'] where id = 1;
    insert into bulk select g, 'stray' from generate_series(2, 50, 2) g;`);
  const res = await verify();
  assert.equal(res.equal, false);
  const items = report(res, 'public.items');
  assert.deepEqual(keysOf(items, 'different'), ['{"id": 10}']);
  assert.deepEqual(keysOf(items, 'missing'), ['{"id": 20}']);
  assert.deepEqual(keysOf(items, 'extra'), ['{"id": 1000}']);
  assert.equal(items.equal, false);
  assert.equal(items.catchUp, 'caught-up', 'a replicator runs, so verify waits for it before the re-check');
  const pairs = report(res, 'public.pairs');
  assert.deepEqual(keysOf(pairs, 'different'), ['{"n": 3, "region": "b"}']);
  assert.deepEqual(keysOf(pairs, 'missing'), ['{"n": 1, "region": "a"}']);
  assert.deepEqual(keysOf(pairs, 'extra'), ['{"n": 99, "region": "zz"}']);
  const typed = report(res, 'public.typed');
  // One microsecond is a difference; the same jsonb written in another key order is not.
  assert.deepEqual(keysOf(typed, 'different'), ['{"id": 5}']);
  assert.deepEqual(keysOf(typed, 'missing'), ['{"id": 7}']);
  assert.deepEqual(keysOf(typed, 'extra'), ['{"id": 999}']);
  assert.deepEqual(keysOf(report(res, 'public.udt'), 'different'), ['{"id": 1}']);
  const bulk = report(res, 'public.bulk');
  assert.equal(bulk.differences.extra.count, 25, 'target ranges holding more rows than a range are split, not truncated');
  assert.equal(bulk.differences.missing.count + bulk.differences.different.count, 0);
  assert.equal(bulk.targetRows, 45);
  // The text names the keys and never other values.
  const text = res.lines.join('\n');
  assert.match(text, /different: \{"id": 10\}/);
  assert.doesNotMatch(text, /tampered|stray/);
});

test('the client-side digest form finds the same keys', async () => {
  const res = await verify({ form: 'client', tables: ['items', 'pairs', 'typed'], rangeRows: 5 });
  for (const [table, diff, miss, extra] of [
    ['public.items', '{"id": 10}', '{"id": 20}', '{"id": 1000}'],
    ['public.pairs', '{"n": 3, "region": "b"}', '{"n": 1, "region": "a"}', '{"n": 99, "region": "zz"}'],
    ['public.typed', '{"id": 5}', '{"id": 7}', '{"id": 999}'],
  ]) {
    const r = report(res, table);
    assert.deepEqual([keysOf(r, 'different'), keysOf(r, 'missing'), keysOf(r, 'extra')], [[diff], [miss], [extra]], table);
  }
});

test('repair re-copies exactly the differing rows through the outbox, and verify is equal afterwards', async () => {
  const res = await verify({ repair: true });
  assert.equal(res.equal, true, res.lines.join('\n'));
  const items = report(res, 'public.items');
  assert.deepEqual(keysOf(items, 'extra'), ['{"id": 1000}'], 'the report still lists what was found');
  assert.equal(items.repair?.upserts, 2);
  assert.equal(items.repair?.deletes, 1);
  assert.equal(items.repair?.rounds, 1);
  assert.equal(report(res, 'public.bulk').repair?.deletes, 25);
  for (const r of res.reports) assert.deepEqual(Object.values(r.repair?.remaining ?? {}).map((l) => l.count), r.repair ? [0, 0, 0] : [], r.table);

  const again = await verify();
  assert.equal(again.equal, true, again.lines.join('\n'));
  await assertSameRows(src, dst, 'public.items', 'public.items', ['id']);
  await assertSameRows(src, dst, 'public.pairs', 'public.pairs', ['region', 'n']);
  // (the target's own output defaults differ for floats, intervals and bytea; verify compared those above)
  await assertSameRows(src, dst, 'public.typed', 'public.typed', ['id'], ['id', 'ts', 'num', 'js', 'colour']);
  await assertSameRows(src, dst, 'public.bulk', 'public.bulk', ['id']);
});

test('a change still in flight is waited for and not reported', async () => {
  let open!: () => void;
  gate = new Promise<void>((r) => { open = r; });
  await src.query(`update items set qty = -1 where id = 33; insert into items values (51, 'new', 1); delete from items where id = 1`);
  const timer = setTimeout(() => open(), 1500);
  try {
    const res = await verify({ tables: ['items'] });
    const items = report(res, 'public.items');
    assert.deepEqual(items.firstPass, { missing: 1, extra: 1, different: 1 }, 'the walk saw the changes not yet applied');
    assert.equal(items.catchUp, 'caught-up');
    assert.equal(items.equal, true, res.lines.join('\n'));
    assert.match(res.lines.join('\n'), /3 difference\(s\) of the first pass did not hold up on re-check/);
  } finally {
    clearTimeout(timer);
    open();
    gate = Promise.resolve();
  }
});

// runVerify without a catch-up to call: the repair waits in the outbox. The CLI (and verify() in
// src/commands/verify.ts) gives it one, and applies the repair itself: cli-output.test.ts.
test('without a running replicator verify re-checks at once and says so; repair without a catch-up leaves its events for later', async () => {
  await rep.stop();
  await src.query(`update items set name = 'unapplied' where id = 2`);
  const res = await verify({ tables: ['items'] });
  const items = report(res, 'public.items');
  assert.equal(items.catchUp, 'no-replicator');
  assert.deepEqual(keysOf(items, 'different'), ['{"id": 2}']);
  assert.match(res.lines.join('\n'), /no replicator is running/);

  await dst.query(`delete from items where id = 3`);
  const repaired = await verify({ tables: ['items'], repair: true });
  const r = report(repaired, 'public.items');
  assert.equal(r.equal, false);
  assert.equal(r.repair?.catchUp, 'no-replicator');
  assert.equal(r.repair?.upserts, 2);
  const outbox = await src.query(
    `select 1 from pg2crate.outbox o join pg2crate.tables t on t.id = o.table_id where t.source_table = 'items' and o.op = 'U' and o.data->>'id' = '3'`,
  );
  assert.equal(outbox.rows.length, 1, 'the repair event for the deleted row is in the outbox');

  // A catch-up run applies them; then the copy is equal again.
  rep = await startReplicator(config, testLogger());
  await waitCaughtUp(src);
  assert.equal((await verify({ tables: ['items'] })).equal, true);
});
