// Names as Postgres allows them: capitals, spaces, quotes, semicolons, dots, commas, unicode,
// reserved words, dollar-quote look-alikes and the full 63 bytes. Every generated statement must
// quote them; insert, update, key change and delete must all arrive in the Postgres target.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertSameRows, makeConfig, startReplicator, waitCaughtUp, type Running } from '../helpers/replication.js';
import { qualify, quoteIdent } from '../../src/core/identifiers.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running | undefined;

const SCHEMA = 'My "Schema"; --';
const LONG_ASCII = 'a_table_name_that_uses_all_sixty_three_bytes_postgres_allows_xy';
const LONG_UNICODE = 'ä'.repeat(31) + 'x'; // 31 × 2 bytes + 1 = 63 bytes
const LONG_COLUMN = 'k'.repeat(63);

interface Case {
  schema: string;
  table: string;
  /** column name → SQL type; the first `keys` columns form the primary key */
  columns: [string, string][];
  keys: number;
}

const CASES: Case[] = [
  {
    schema: SCHEMA,
    table: 'Order Items; DROP TABLE x',
    columns: [
      ['Id', 'integer'], ['select', 'text'], ['two words', 'text'], ['quote"d', 'text'], ['semi;colon', 'integer'],
      ["it's", 'text'], ['ünïcødé 😀', 'text'], ['$pg2crate0$', 'text'], ['n', 'integer'], ['o', 'text'], ['t', 'text'],
    ],
    keys: 2,
  },
  { schema: SCHEMA, table: 'dot.ted, and comma', columns: [['order', 'integer'], ['from', 'text'], ['NULL', 'text']], keys: 1 },
  { schema: 'public', table: LONG_ASCII, columns: [[LONG_COLUMN, 'bigint'], ['user', 'text']], keys: 1 },
  { schema: 'public', table: LONG_UNICODE, columns: [[LONG_UNICODE, 'text'], ['Value', 'numeric']], keys: 1 },
  { schema: 'public', table: 'user', columns: [['table', 'integer'], ['where', 'text'], ['group', 'integer']], keys: 1 },
];

/** `schema.table` as PG2CRATE_TABLES takes it: both parts quoted, quotes doubled. */
function listed(c: Case): string {
  return `${quoteIdent(c.schema)}.${quoteIdent(c.table)}`;
}

function keyNames(c: Case): string[] {
  return c.columns.slice(0, c.keys).map(([n]) => n);
}

before(async () => {
  let srcUrl: string, dstUrl: string;
  ({ srcUrl, dstUrl, src, dst } = await bed.databases());
  await src.query(`create schema ${quoteIdent(SCHEMA)}`);
  for (const c of CASES) {
    assert.ok(Buffer.byteLength(c.table) <= 63);
    const cols = c.columns.map(([n, t]) => `${quoteIdent(n)} ${t}`);
    await src.query(`create table ${qualify(c.schema, c.table)} (${cols.join(', ')}, primary key (${keyNames(c).map(quoteIdent).join(', ')}))`);
  }
  // The names as they are in the catalog: nothing was truncated.
  const tables = await src.query<{ relname: string }>(`select relname from pg_class where relkind = 'r' and relnamespace in (select oid from pg_namespace where nspname in ($1, 'public'))`, [SCHEMA]);
  for (const c of CASES) assert.ok(tables.rows.some((r) => r.relname === c.table), `table ${c.table} exists under its full name`);

  rep = await startReplicator(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: CASES.map(listed).join(', ') }));
});

bed.onClose(() => rep?.stop());

/** A value for a column of type `type` in row `i`. */
function value(type: string, i: number, round: number): unknown {
  if (type === 'integer' || type === 'bigint') return i * 10 + round;
  if (type === 'numeric') return `${i}.${round}5`;
  return `v${i}-${round} 'q' "dq" ; -- ü`;
}

test('tables and columns with any legal name replicate inserts, updates, key changes and deletes', async () => {
  for (const c of CASES) {
    const t = qualify(c.schema, c.table);
    const names = c.columns.map(([n]) => quoteIdent(n)).join(', ');
    for (let i = 1; i <= 6; i++) {
      const params = c.columns.map(([, type]) => value(type, i, 0));
      await src.query(`insert into ${t} (${names}) values (${params.map((_, j) => `$${j + 1}`).join(', ')})`, params);
    }
    const [firstKey, firstType] = c.columns[0];
    const k = quoteIdent(firstKey);
    const nonKey = c.columns[c.keys];
    // Update a non-key column, change a key, delete a row.
    await src.query(`update ${t} set ${quoteIdent(nonKey[0])} = $1 where ${k} = $2`, [value(nonKey[1], 99, 1), value(firstType, 2, 0)]);
    await src.query(`update ${t} set ${k} = $1 where ${k} = $2`, [value(firstType, 50, 0), value(firstType, 3, 0)]);
    await src.query(`delete from ${t} where ${k} = $1`, [value(firstType, 4, 0)]);
  }
  await waitCaughtUp(src);
  await rep!.stop();
  rep = undefined;

  for (const c of CASES) {
    const n = await assertSameRows(src, dst, qualify(c.schema, c.table), qualify(c.schema, c.table), keyNames(c));
    assert.equal(n, 5, `${c.schema}.${c.table}`);
  }
  // The target has the same column names, in full.
  const cols = await dst.query<{ attname: string }>(`select attname from pg_attribute where attrelid = $1::regclass and attnum > 0`, [qualify(CASES[0].schema, CASES[0].table)]);
  assert.deepEqual(cols.rows.map((r) => r.attname), CASES[0].columns.map(([n]) => n));
});
