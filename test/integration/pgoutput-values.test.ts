// pgoutput sends values as text; the capture trigger stores to_json(row), whose values to_jsonb
// gives too. For a table with every type the two modes must hand the drainer the same values: the
// trigger's outbox row read back as jsonb and the conversion of the same row's pgoutput message
// (read with
// pg_logical_slot_peek_binary_changes under the walsender's session settings) are compared byte
// for byte, in a database whose own settings (time zone, date style, float digits …) are all different.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { PgoutputPlugin, type Pgoutput } from 'pg-logical-replication';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { assertNoLeaks, makeConfig, testLogger } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';
import { RelationMap } from '../../src/source/pgoutput/relations.js';
import { rowJson } from '../../src/source/pgoutput/text-values.js';
import { WALSENDER_OPTIONS } from '../../src/source/pgoutput/wal-stream.js';
import { migrate } from '../../src/commands/migrate.js';
import { needsServer } from '../helpers/server-version.js';

/** The whole file is about pgoutput mode, which pg2crate refuses before PostgreSQL 14. */
const skip = needsServer(14, 'pgoutput mode');

let cluster: Cluster;
let url: string;
let db: pg.Client;

const TABLE = `
create type mood as enum ('sad', 'ok', 'happy ''quoted''');
create domain price as numeric(12,2);
create table public.all_types (
  id bigint primary key,
  big bigint, num numeric(38,10), num_free numeric, i2 smallint, i4 integer, r4 real, f8 double precision,
  ts timestamp, tstz timestamptz, d date, t time, ttz timetz, iv interval,
  txt text, vc varchar(20), ch char(3), flag boolean,
  ints integer[], texts text[], matrix integer[][], js jsonb, j json, u uuid, b bytea,
  ip inet, m mood, moods mood[], p price, prices price[], tsarr timestamptz[], tsa timestamp[], jarr json[], jbarr jsonb[], flags boolean[], nums numeric[],
  r int4range, tr tstzrange, pt point, bx box, boxes box[], o oid, bits varbit, "Mixed Case" text, "n" int, "a much longer column name" text
)`;

const ROWS = `insert into all_types values
 (1, 9007199254740993, 1234567890123456789012345678.0123456789, 0.1000000000000000000000000001, -32768, 2147483647, 3.25, 0.30000000000000004,
  '2024-02-29 23:59:59.123456', '2024-02-29 23:59:59.654321+05:30', '0001-01-01', '12:34:56.789', '12:34:56.5-03:30', '1 year 2 mons 3 days 04:05:06.7',
  E'quote '' "dq" \\\\ back\\nnewline\\ttab emoji 😀 ünïcødé \\x01 ctl', 'varchar', 'ab', true,
  '{1,NULL,3}', '{"a,b","c\\"d",NULL,"NULL","😀","",x}', '{{1,2},{3,4}}', '{"big": 123456789012345678901234567890, "nested": {"a": [1, "x", null, {"b": false}]}, "": "empty key", "e": 1.5e-7}',
  '{"b": 1, "a": 2, "a": 3, "exp": 1E+2, "neg": -0, "frac": 1.50, "esc": "\\u0041\\/\\n\\u00fc", "arr": [1e-3, {"z": 1, "y": []}]}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10', '192.168.0.1/24', 'happy ''quoted''', '{sad,"happy ''quoted''"}', 12.5, '{1.10,NULL}',
  '{"2024-01-01 00:00:00+00","infinity"}', '{"2024-01-01 12:00:00.5"}', '{"{\\"b\\": 1, \\"a\\": [1, 2]}",null}', '{"{\\"x\\": 1}"}', '{t,f,NULL}', '{1.5,NaN,-0.000}',
  '[1,10)', '["2024-01-01 00:00:00+00","2024-01-02 00:00:00+00")', '(1.5,-2)', '((2,2),(0,0))', '{(1,1),(0,0);(3,3),(2,2)}', 4294967295, B'1011', 'mixed', 7, 'long'),
 (2, -9223372036854775808, -0.0000000001, 'NaN', null, null, 'NaN', '-Infinity',
  'infinity', '-infinity', 'infinity', '24:00:00', null, '-1 days +02:03:00',
  null, null, null, false, '{}', '{}', '[0:1]={7,8}', '[1, 2, 3]', 'null', null, '',
  null, null, '{}', null, null, null, null, null, null, '{}', '{Infinity,-Infinity}',
  'empty', null, null, null, null, 0, B'', null, null, null),
 (3, null, null, 'Infinity', null, null, 3.4028235e38, 1e100,
  '0044-03-15 12:00:00 BC', '0044-03-15 12:00:00+00 BC', '0044-03-15 BC', null, '00:00:00+00', '0 seconds',
  '', '', '', null, null, '{"",""}', '{{NULL,NULL}}', '"just a string"', '"\\u00e9"', null, null,
  '::1', 'sad', null, -0.5, null, null, '{"1999-12-31 23:59:59.999999"}', null, '{"[]"}', null, null,
  null, '(,)', null, null, null, null, null, null, null, null),
 (4, 1, 1.5e-7, 1e-20, 1, 1, 1.5e-7, 1.5e-7, '2024-01-01', '2024-01-01 00:00:00.000001+00', '2024-01-01', '00:00:00.000001', null, '1 mon',
  repeat('toast me ', 20000), null, null, null, '{-1,-2}', '{"back\\\\slash","quote\\"d"}', null, '{"a": {"b": {"c": 12345678901234567890.5}}}', '[{"k": "v"}, 1.0, true]', null, '\\xdeadbeef',
  null, null, null, null, '{}', null, null, null, null, null, null,
  null, null, null, null, null, null, null, null, null, null)`;

before(async () => {
  if (skip) return;
  cluster = await startCluster();
  url = await cluster.createDatabase('values');
  db = new pg.Client({ connectionString: url });
  await db.connect();
  // Settings a walsender session would pick up from the database if it did not override them.
  const name = new URL(url).pathname.slice(1);
  await db.query(`alter database "${name}" set timezone = 'America/New_York'`);
  await db.query(`alter database "${name}" set datestyle = 'SQL, DMY'`);
  await db.query(`alter database "${name}" set intervalstyle = 'iso_8601'`);
  await db.query(`alter database "${name}" set extra_float_digits = -3`);
  await db.query(`alter database "${name}" set bytea_output = 'escape'`);
  await db.query(TABLE);
});

after(async () => {
  await db?.end();
  await cluster?.stop();
  await assertNoLeaks();
});

test('pgoutput text converted to JSON equals the trigger\'s image as jsonb prints it, for every type, byte for byte', { skip }, async () => {
  const runner = new Runner(makeConfig({ DATABASE_URL: url, TARGET_DATABASE_URL: url, PG2CRATE_TABLES: 'public.all_types' }), testLogger());
  await migrate(runner);
  await runner.close();
  await db.query(`create publication values_pub for table all_types`);
  await db.query(`select pg_create_logical_replication_slot('values_slot', 'pgoutput')`);
  await db.query(ROWS);
  await db.query(`update all_types set i4 = 42 where id = 4`);
  // Decoding reads flushed WAL only, and the test cluster commits with synchronous_commit off.
  await db.query('checkpoint');

  // The trigger writes to_json's text (migrations/000012): the same values, in its own spelling;
  // read back through jsonb it is to_jsonb's text, which the conversion gives.
  const outbox = (await db.query<{ op: string; data: string }>(`select op, data::jsonb::text as data from pg2crate.outbox where op <> 'B' order by id`)).rows;
  assert.equal(outbox.length, 5);

  // The walsender's session: the same settings it gets from WALSENDER_OPTIONS.
  const peek = new pg.Client({ connectionString: url, options: WALSENDER_OPTIONS });
  await peek.connect();
  const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: ['values_pub'] });
  const relations = new RelationMap(peek, 'pg2crate');
  const converted: string[] = [];
  let unchanged: string[] = [];
  try {
    const changes = await peek.query<{ data: Buffer }>(`select data from pg_logical_slot_peek_binary_changes('values_slot', null, null, 'proto_version', '1', 'publication_names', 'values_pub')`);
    for (const { data } of changes.rows) {
      const msg = plugin.parse(data) as Pgoutput.Message;
      if (msg.tag === 'relation') {
        for (const c of msg.columns) c.parser = (raw: unknown) => raw;
        await relations.plan(msg);
      } else if (msg.tag === 'insert' || msg.tag === 'update') {
        const plan = relations.get(msg.relation.relationOid)!;
        converted.push(rowJson(plan.names, plan.kinds, plan.order, plan.names.map((n) => msg.new[n])));
        if (msg.tag === 'update') unchanged = plan.names.filter((n) => msg.new[n] === undefined);
      }
    }
  } finally {
    await peek.end();
  }
  assert.equal(converted.length, 4 + 1);
  for (let i = 0; i < 4; i++) assert.equal(converted[i], outbox[i].data, `row ${i + 1} differs`);
  // The update left the 180 kB text unchanged: pgoutput sends it as "unchanged", so it is absent.
  assert.deepEqual(unchanged, ['txt']);
  const partial = JSON.parse(converted[4]) as Record<string, unknown>;
  const full = JSON.parse(outbox[4].data) as Record<string, unknown>;
  delete full.txt;
  assert.deepEqual(partial, full);
});
