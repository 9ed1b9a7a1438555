// verify against a real CrateDB: a copy made by the replicator verifies equal over many ranges,
// whatever CrateDB cannot hold exactly (microseconds, numeric notation, wrapped json, quantised
// points, v4-mapped addresses); a row changed, deleted or added in CrateDB behind the replicator's
// back is found by key, and only those keys, in single, composite (timestamp) and UUID keys;
// --repair fixes them through the outbox; rows the sink parks are reported, not hidden.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { Config } from '../../src/core/config.js';
import { qualify } from '../../src/core/identifiers.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';
import type { TableReport } from '../../src/verify/report.js';
import { createVerifyTarget, runVerify, type VerifyResult } from '../../src/verify/run-verify.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { crateClient, endCrateSuite, refresh, skipWithoutCrate, testSchema } from '../helpers/cratedb.js';
import { initialLoadsDone, makeConfig, pool, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';

const BASE = 9007199254740993n; // 2^53 + 1: a double cannot hold it
const id = (g: number) => String(BASE + BigInt(g));
const TABLES = ['public.mixed', 'public.pairs', 'public.tokens'];

describe('verify against a real CrateDB', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('verify');
  let cluster: Cluster;
  let src: pg.Pool;
  let crate: CrateClient;
  let config: Config;
  let rep: Running;
  const q = (table: string) => qualify(schema, table);

  before(async () => {
    cluster = await startCluster();
    const url = await cluster.createDatabase('src');
    src = pool(url);
    crate = crateClient();
    await src.query(`
      create type mood as enum ('sad', 'ok', 'happy');
      create type pair as (x numeric, y text);
      create table mixed (
        id bigint primary key, ts timestamptz, num numeric(38,10), big bigint, js jsonb, arr jsonb, tags text[], b bytea, u uuid, d date,
        flag boolean, r4 real, f8 double precision, nf numeric, ip inet, pt point, mood mood, cmp pair, tss timestamptz[], ch char(4));
      create table pairs (region text, at timestamptz, note text, qty int, primary key (region, at));
      create table tokens (u uuid primary key, v text);
      create table parked (id int primary key, ts timestamptz);
      create table tkeys (at timestamp primary key, v int);
      insert into mixed select ${BASE} + g,
        '2024-02-29 23:59:59.123456+05:30'::timestamptz + g * interval '1 day 1 microsecond',
        1234567890123456789012345678.0123456789 / g, 9223372036854775807 - g,
        jsonb_build_object('n', g, 'big', 9007199254740993 + g, 'half', g + 0.5, 'list', jsonb_build_array(g, 'x', null), 'nested', jsonb_build_object('a', g % 2 = 0)),
        jsonb_build_array(g, 'two', jsonb_build_object('three', 3)), array['a' || g, null, '"q" ' || g, '😀'],
        decode(lpad(to_hex(g), 4, '0') || '00ff', 'hex'), md5(g::text)::uuid, date '2024-01-01' + g,
        g % 2 = 0, case when g = 1 then 'NaN' else 1.0 / g end, case when g = 2 then 'Infinity' else 1.0 / (g + 1) end,
        case g % 3 when 0 then 1.50 when 1 then 0.00000015 else g end,
        case g % 3 when 0 then '::ffff:10.0.0.' || g when 1 then '2001:db8::' || g else '10.1.0.' || g end::inet,
        point(13.405 + g / 1000.0, 52.52 - g / 1000.0), (array['sad', 'ok', 'happy']::mood[])[1 + g % 3], row(g + 0.50, 'y' || g)::pair,
        array['2024-01-01 00:00:00.000999+00'::timestamptz + g * interval '1 hour', null], 'ab'
        from generate_series(1, 60) g;
      insert into pairs select r, '2024-01-01 00:00:00+00'::timestamptz + n * interval '1.005 seconds', r || '/' || n, n
        from unnest(array['a', 'b', 'c']) r, generate_series(1, 15) n;
      insert into tokens select md5('token' || g)::uuid, 'v' || g from generate_series(1, 40) g;
      insert into parked values (1, '2024-01-01 00:00:00+00'), (2, 'infinity'), (3, '2024-01-01 00:00:00.123456+00');
      insert into tkeys values ('2024-01-01 00:00:00.123', 1), ('2024-01-01 00:00:00.123456', 2), ('2024-01-01 00:00:00.124', 3);`);
    config = makeConfig({
      DATABASE_URL: url, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema,
      PG2CRATE_TABLES: [...TABLES, 'public.parked', 'public.tkeys'].join(','),
    });
    rep = await startReplicator(config, testLogger());
    await waitFor('the initial loads', () => initialLoadsDone(src));
    await waitCaughtUp(src);
  });

  after(async () => {
    await endCrateSuite({ replicators: [rep], pools: [src], cluster, crate, schemas: [schema] });
  });

  async function verify(opts: { repair?: boolean; tables?: string[]; rangeRows?: number } = {}): Promise<VerifyResult & { lines: string[] }> {
    const target = createVerifyTarget(config, testLogger());
    const lines: string[] = [];
    try {
      const tables = (opts.tables ?? TABLES).map((t) => ({ schema: 'public', table: t.replace(/^public\./, '') }));
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

  const keysOf = (r: TableReport, kind: 'missing' | 'extra' | 'different') => [...r.differences[kind].keys].sort();
  const kinds = (r: TableReport) => ({ different: keysOf(r, 'different'), missing: keysOf(r, 'missing'), extra: keysOf(r, 'extra') });

  test('a copy made by the replicator verifies equal over many ranges, whatever CrateDB holds its own way', async () => {
    const res = await verify();
    assert.equal(res.equal, true, res.lines.join('\n'));
    const mixed = report(res, 'public.mixed');
    assert.deepEqual([mixed.sourceRows, mixed.targetRows, mixed.ranges, mixed.differingRanges], [60, 60, 9, 0]);
    assert.equal(report(res, 'public.pairs').ranges, 7);
    assert.equal(report(res, 'public.tokens').differingRanges, 0, 'UUID keys are ranged in the same order on both sides');
    assert.match(res.lines.join('\n'), new RegExp(`^public\\.mixed +${schema}\\.mixed +equal +60 +60 +0 +0 +0 +\\d+\\.\\d s$`, 'm'));
    // A change CrateDB cannot see (microseconds) is no difference.
    await src.query(`update mixed set ts = date_trunc('milliseconds', ts) + interval '999 microseconds' where id = ${id(4)}`);
    await waitCaughtUp(src);
    assert.equal((await verify({ tables: ['mixed'] })).equal, true);
  });

  test('a row changed, deleted or added in CrateDB is found by its key, and only those keys', async () => {
    await crate.sql(`UPDATE ${q('mixed')} SET num = ? WHERE id = ?`, ['1.0000000001', id(10)]);
    await crate.sql(`UPDATE ${q('mixed')} SET js = ? WHERE id = ?`, [{ n: 11, big: 9007199254741004, half: 11.5, list: [11, 'x', null], nested: { a: true } }, id(11)]);
    await crate.sql(`UPDATE ${q('mixed')} SET ts = ? WHERE id = ?`, [Date.UTC(2000, 0, 1), id(12)]);
    await crate.sql(`DELETE FROM ${q('mixed')} WHERE id = ?`, [id(20)]);
    await crate.sql(`INSERT INTO ${q('mixed')} (id, big) VALUES (?, ?)`, [id(1000), '1']);
    await crate.sql(`UPDATE ${q('pairs')} SET note = 'tampered' WHERE region = ? AND at = ?`, ['b', Date.parse('2024-01-01T00:00:03.015Z')]);
    await crate.sql(`DELETE FROM ${q('pairs')} WHERE region = ? AND at = ?`, ['a', Date.parse('2024-01-01T00:00:01.005Z')]);
    await crate.sql(`INSERT INTO ${q('pairs')} (region, at, note) VALUES (?, ?, ?)`, ['zz', '2024-03-01T00:00:00.5Z', 'stray']);
    const tokens = (await src.query<{ u: string }>(`select u::text from tokens order by u limit 3`)).rows.map((r) => r.u);
    await crate.sql(`UPDATE ${q('tokens')} SET v = 'tampered' WHERE u = ?`, [tokens[0]]);
    await crate.sql(`DELETE FROM ${q('tokens')} WHERE u = ?`, [tokens[1]]);
    await crate.sql(`INSERT INTO ${q('tokens')} (u, v) VALUES (?, ?)`, ['ffffffff-0000-4000-8000-000000000001', 'stray']);

    const res = await verify();
    assert.equal(res.equal, false);
    const mixed = report(res, 'public.mixed');
    assert.deepEqual(kinds(mixed), {
      different: [`{"id": ${id(10)}}`, `{"id": ${id(11)}}`, `{"id": ${id(12)}}`], missing: [`{"id": ${id(20)}}`], extra: [`{"id": ${id(1000)}}`],
    });
    assert.equal(mixed.catchUp, 'caught-up');
    assert.deepEqual(kinds(report(res, 'public.pairs')), {
      different: ['{"at": "2024-01-01T00:00:03.015+00:00", "region": "b"}'],
      missing: ['{"at": "2024-01-01T00:00:01.005+00:00", "region": "a"}'],
      extra: ['{"at": "2024-03-01T00:00:00.500Z", "region": "zz"}'],
    });
    assert.deepEqual(kinds(report(res, 'public.tokens')), {
      different: [`{"u": "${tokens[0]}"}`], missing: [`{"u": "${tokens[1]}"}`], extra: ['{"u": "ffffffff-0000-4000-8000-000000000001"}'],
    });
    assert.doesNotMatch(res.lines.join('\n'), /tampered|stray/);
  });

  test('--repair re-copies and deletes exactly those rows through the outbox, and verify is equal again', async () => {
    const res = await verify({ repair: true });
    assert.equal(res.equal, true, res.lines.join('\n'));
    const mixed = report(res, 'public.mixed');
    assert.deepEqual([mixed.repair?.upserts, mixed.repair?.deletes, mixed.repair?.rounds], [4, 1, 1]);
    for (const t of ['public.pairs', 'public.tokens']) {
      const r = report(res, t);
      assert.deepEqual([r.repair?.upserts, r.repair?.deletes], [2, 1], t);
    }
    for (const r of res.reports) assert.deepEqual(Object.values(r.repair!.remaining).map((l) => l.count), [0, 0, 0], r.table);

    const again = await verify({ rangeRows: 5 });
    assert.equal(again.equal, true, again.lines.join('\n'));
    await refresh(crate, schema, 'mixed');
    const stray = await crate.sql(`SELECT count(*) FROM ${q('mixed')} WHERE id = ?`, [id(1000)]);
    assert.equal(Number(stray.rows[0][0]), 0);
    const num = await crate.sql(`SELECT num::TEXT FROM ${q('mixed')} WHERE id = ?`, [id(10)]);
    assert.notEqual(num.rows[0][0], '1.0000000001');
  });

  test('rows the sink parks are reported missing, never matched to a neighbour, and stay so after a repair', async () => {
    const res = await verify({ tables: ['parked', 'tkeys'], repair: true });
    assert.equal(res.equal, false);
    const parked = report(res, 'public.parked');
    assert.deepEqual(kinds(parked), { different: [], missing: ['{"id": 2}'], extra: [] }, 'infinity cannot be a CrateDB timestamp');
    // .123456 cannot be a CrateDB key (it would fold into .123): missing, and .123 is not a difference
    const tkeys = report(res, 'public.tkeys');
    assert.deepEqual(kinds(tkeys), { different: [], missing: ['{"at": "2024-01-01T00:00:00.123456"}'], extra: [] });
    assert.equal(tkeys.repair?.remaining.missing.count, 1);
    assert.equal(parked.repair?.remaining.missing.count, 1);
  });
});
