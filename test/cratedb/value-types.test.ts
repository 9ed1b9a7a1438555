// Every Postgres type the sink maps arrives in a real CrateDB with its value, through insert,
// update, key change and delete; compared row by row after REFRESH, normalising only what CrateDB
// documents it cannot hold exactly (timestamps in milliseconds, geo points to a centimetre).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { as, assertSameAsSource, crateClient, endCrateSuite, skipWithoutCrate, testSchema, type ColumnCheck } from '../helpers/cratedb.js';
import { initialLoadsDone, makeConfig, pool, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import type { JsonValue } from '../../src/core/change.js';
import { crateColumnName, decodeJsonColumn } from '../../src/sink/cratedb/cratedb-sink.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';

const TABLE = `
create type mood as enum ('sad', 'ok', 'happy');
create type pair as (f1 integer, f2 text);
create table public.all_types (
  id bigint primary key,
  big bigint, num numeric(38,10), num_free numeric, i2 smallint, i4 integer, r4 real, f8 double precision,
  ts timestamp, tstz timestamptz, d date, t time, iv interval,
  txt text, vc varchar(20), ch char(3), flag boolean,
  ints integer[], texts text[], matrix integer[][], js jsonb, j json, u uuid, b bytea,
  ip inet, net cidr, pt point, bits bit(4), mood mood, cmp pair, rng int4range, "_id" text, "a.b" integer,
  pts point[], docs jsonb[], tss timestamptz[], nums numeric(10,2)[], bigs bigint[]
)`;

/** A point as "(x,y)" (Postgres) or [x, y] (CrateDB), rounded to CrateDB's precision. */
const points = (v: unknown) => as.json((v as unknown[] | null)?.map((p) => (typeof p === 'string' ? JSON.parse(p.replace('(', '[').replace(')', ']')) : p)).map((p) => (p === null ? null : as.point(p))));
const docs = (v: unknown) => as.json((v as JsonValue[] | null)?.map((d) => decodeJsonColumn(d)));

const q = (name: string) => `"${crateColumnName(name).replace(/"/g, '""')}"`;
const ms = (col: string) => `floor(extract(epoch from t.${col}) * 1000)::bigint::text`;

const CHECKS: ColumnCheck[] = [
  { name: 'big', pg: 't.big::text', crate: 'big::TEXT', norm: as.text },
  { name: 'num', pg: 't.num::text', crate: 'num::TEXT', norm: as.number },
  { name: 'num_free', pg: 't.num_free::text', crate: 'num_free', norm: as.text },
  { name: 'i2', pg: 't.i2', crate: 'i2', norm: as.number },
  { name: 'i4', pg: 't.i4', crate: 'i4', norm: as.number },
  { name: 'r4', pg: 't.r4::text', crate: 'r4', norm: as.real },
  { name: 'f8', pg: 't.f8::text', crate: 'f8', norm: as.float },
  { name: 'ts', pg: ms('ts'), crate: 'ts', norm: as.number },
  { name: 'tstz', pg: ms('tstz'), crate: 'tstz', norm: as.number },
  { name: 'd', pg: ms('d::timestamp'), crate: 'd', norm: as.number },
  { name: 't', pg: 't.t::text', crate: 't', norm: as.text },
  { name: 'iv', pg: 't.iv::text', crate: 'iv', norm: as.text },
  { name: 'txt', pg: 't.txt', crate: 'txt', norm: as.text },
  { name: 'vc', pg: 't.vc', crate: 'vc', norm: as.text },
  { name: 'ch', pg: `to_jsonb(t.ch) #>> '{}'`, crate: 'ch', norm: as.text },
  { name: 'flag', pg: 't.flag', crate: 'flag', norm: as.json },
  { name: 'ints', pg: 'to_jsonb(t.ints)', crate: 'ints', norm: as.json },
  { name: 'texts', pg: 'to_jsonb(t.texts)', crate: 'texts', norm: as.json },
  { name: 'matrix', pg: 'to_jsonb(t.matrix)', crate: 'matrix', norm: as.json },
  { name: 'js', pg: 't.js', crate: 'js', norm: as.json, crateNorm: as.jsonObject },
  { name: 'j', pg: 't.j::jsonb', crate: 'j', norm: as.json, crateNorm: as.jsonObject },
  { name: 'u', pg: 't.u::text', crate: 'u', norm: as.text },
  { name: 'b', pg: `to_jsonb(t.b) #>> '{}'`, crate: 'b', norm: as.text },
  { name: 'ip', pg: `to_jsonb(t.ip) #>> '{}'`, crate: 'ip', norm: as.text },
  { name: 'net', pg: 't.net::text', crate: 'net', norm: as.text },
  { name: 'pt', pg: 'case when t.pt is not null then json_build_array(t.pt[0], t.pt[1]) end', crate: 'pt', norm: as.point },
  { name: 'bits', pg: 't.bits::text', crate: 'bits', norm: as.bits },
  { name: 'mood', pg: 't.mood::text', crate: 'mood', norm: as.text },
  { name: 'cmp', pg: 'to_jsonb(t.cmp)', crate: 'cmp', norm: as.json, crateNorm: as.jsonText },
  { name: 'rng', pg: 't.rng::text', crate: 'rng', norm: as.text },
  { name: '_id', pg: 't."_id"', crate: q('_id'), norm: as.text },
  { name: 'a.b', pg: 't."a.b"', crate: q('a.b'), norm: as.number },
  { name: 'pts', pg: 'to_jsonb(t.pts)', crate: 'pts', norm: points },
  { name: 'docs', pg: 'to_jsonb(t.docs)', crate: 'docs', norm: as.json, crateNorm: docs },
  { name: 'tss', pg: `case when t.tss is not null then coalesce((select json_agg(floor(extract(epoch from x) * 1000)::bigint order by i) from unnest(t.tss) with ordinality u(x, i)), '[]') end`, crate: 'tss', norm: as.json },
  { name: 'nums', pg: 'to_jsonb(t.nums)', crate: 'nums', norm: as.json },
  { name: 'bigs', pg: 'to_jsonb(t.bigs)', crate: 'bigs', norm: as.json },
];

describe('value types in a real CrateDB', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('types');
  let cluster: Cluster;
  let src: pg.Pool;
  let crate: CrateClient;
  let rep: Running;
  const same = () => assertSameAsSource(src, 'public.all_types', crate, schema, 'all_types', { pg: 't.id', crate: 'id' }, CHECKS);

  before(async () => {
    cluster = await startCluster();
    const url = await cluster.createDatabase('src');
    src = pool(url);
    crate = crateClient();
    await src.query(TABLE);
    rep = await startReplicator(makeConfig({ DATABASE_URL: url, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TABLES: 'public.all_types', PG2CRATE_TARGET_SCHEMA: schema }));
    // the (empty) initial load must be over, or it would copy the rows the tests write once more
    await waitFor('the initial load', () => initialLoadsDone(src));
  });

  after(async () => {
    await endCrateSuite({ replicators: [rep], pools: [src], cluster, crate, schemas: [schema] });
  });

  test('every type arrives with its value through insert, update, key change and delete', async () => {
    await src.query(`insert into all_types values
      (1, 9007199254740993, 1234567890123456789012345678.0123456789, 0.1000000000000000000000000001, -32768, 2147483647, 3.25, 0.30000000000000004,
       '2024-02-29 23:59:59.123456', '2024-02-29 23:59:59.654321+05:30', '0001-01-01', '12:34:56.789', '1 year 2 mons 3 days 04:05:06.7',
       E'quote '' "dq" \\\\ back\\nnewline\\ttab emoji 😀 ünïcødé', 'varchar', 'ab', true,
       '{1,NULL,3}', '{"a,b","c\\"d",NULL,"😀",""}', '{{1,2},{3,4}}',
       '{"big": 9223372036854775807, "nested": {"a": [1, "x", null, {"b": false}]}, "": "empty key", "_id": 7, "dot.key": 1.50}',
       '{"b": 1, "a": 2, "a": 3}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10',
       '10.0.0.1', '10.0.0.0/8', point(13.4050, 52.5200), B'0101', 'happy', row(1, 'a'), '[1,5)', 'not a system column', 42,
       array[point(1, 2), null], array['{"a": 1}', '[1]', '"s"', null]::jsonb[], array['2024-01-01 00:00:00.123456+00', null]::timestamptz[], '{1.5,NULL,2}', '{9007199254740993,NULL,-9223372036854775807}'),
      (2, -9223372036854775807, -0.0000000001, 'NaN', 32767, -2147483648, 'NaN', '-Infinity',
       '1970-01-01 00:00:00.000999', '1969-12-31 23:59:59.999+00', '9999-12-31', '00:00', '-1 days',
       '', '', '', false, '{}', '{}', '{}', '[1, 2, 3]', 'null', null, '',
       '::1', '::/0', point(-180, -90), B'0000', 'sad', row(null, null), 'empty', '', 0, '{}', '{}', '{}', '{}', '{}'),
      (3, null, null, null, null, null, 'Infinity', 1e300, null, null, null, null, null,
       null, null, null, null, null, '{NULL}', null, '"just a string"', '42', null, null, null, null, null, null, null, null, null, null, null,
       null, null, null, null, null),
      (4, 0, 0, 0.00, 0, 0, -0.5, 5e-324, null, null, null, null, null,
       'x', 'x', 'x', null, null, null, null, '{"_value": 5}', '[{"a": 1}, [2]]', null, null, null, null, null, null, null, null, null, null, null,
       array[null]::point[], array['{"_value": 1}']::jsonb[], array[null]::timestamptz[], array[null]::numeric[], array[null]::bigint[])`);
    await waitCaughtUp(src);
    assert.equal(await same(), 4);

    await src.query(`update all_types set big = 1, txt = 'changed', js = '{"x": 1}', pt = point(0, 0), ints = '{7}' where id = 1`);
    await src.query(`update all_types set id = 20 where id = 2`);
    await src.query(`delete from all_types where id = 3`);
    await waitCaughtUp(src);
    assert.equal(await same(), 3);
    const ids = (await crate.sql(`SELECT id::TEXT FROM "${schema}"."all_types" ORDER BY id`)).rows.map((r) => r[0]);
    assert.deepEqual(ids, ['1', '4', '20']);
  });

  test('a bigint and a numeric past 2^53 are exact when read back as text', async () => {
    await src.query(`insert into all_types (id, big, num) values (9007199254740993, 9007199254740993, 99999999999999999999999999.9999999999)`);
    await waitCaughtUp(src);
    const row = await crate.sql(`SELECT id::TEXT, big::TEXT, num::TEXT FROM "${schema}"."all_types" WHERE id = ?`, ['9007199254740993']);
    assert.deepEqual(row.rows, [['9007199254740993', '9007199254740993', '99999999999999999999999999.9999999999']]);
  });
});
