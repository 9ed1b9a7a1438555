// The parameter rows that the source builds for a direct load into CrateDB (sink/cratedb/
// copy-row-sql.ts), checked on a real Postgres: every row the SQL builds is the JSON value that
// row-values.ts builds from the same row's image (numbers with the same digits), every row that
// row-values.ts refuses is referred to the image path, and the key read back from a built row finds
// its row again (the load's position, a late chunk's key objects).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { LosslessNumber, parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { pool } from '../helpers/replication.js';
import { describeColumns } from '../../src/capture/registry.js';
import { parseRow, type TableInfo } from '../../src/core/change.js';
import { querySettled } from '../../src/core/pg-session.js';
import { planTable, type PlanOptions, type TablePlan } from '../../src/sink/cratedb/column-types.js';
import { copyRowSql } from '../../src/sink/cratedb/copy-row-sql.js';
import { upsertArgs, ValueRejected } from '../../src/sink/cratedb/row-values.js';
import { CopiedRow, keyObjectText, keyTexts } from '../../src/load/copied-row.js';
import { directChunkSql } from '../../src/load/direct-load.js';

const KINDS = `
create type mood as enum ('sad', 'ok', 'happy');
create domain posint as integer check (value > 0);
create domain short_text as varchar(10);
create table public.kinds (
  id bigint primary key,
  i2 smallint, i4 integer, dom posint, flag boolean, u uuid, bits bit(4),
  big bigint, num numeric(38,10), num_free numeric, r4 real, f8 double precision,
  txt text, vc varchar(20), ch char(3), sdom short_text, "ch1" "char", nm name, t time, tz timetz, iv interval, net cidr, mac macaddr,
  cash money, b bytea, vb varbit, x xml, tsv tsvector, mood mood, rng int4range,
  ts timestamp, tstz timestamptz, d date, js jsonb, j json, ip inet,
  ints integer[], f8s float8[], ips inet[], flags boolean[], texts text[], moods mood[], vcs varchar(5)[], bs bytea[]
)`;

/** [id, values for some columns, whether the row must travel as its image] */
const ROWS: Array<[number, Record<string, string>, boolean]> = [
  [1, {
    i2: '1', i4: '2', dom: '3', flag: 'true', u: `'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'`, bits: `B'0101'`, big: '9007199254740993',
    num: '1234567890123456789012345678.0123456789', num_free: '0.1000000000000000000000000001', r4: '3.25', f8: '0.30000000000000004',
    txt: `E'quote '' "dq" \\\\ back\\nnewline\\ttab \\u0001 emoji 😀 ünïcødé'`, vc: `'varchar é'`, ch: `'a'`, sdom: `'short'`, ch1: `'x'`, nm: `'a name'`,
    t: `'12:34:56.789'`, tz: `'12:00+05:30'`, iv: `'1 year 2 mons 3 days 04:05:06.7'`, net: `'10.0.0.0/8'`, mac: `'08:00:2b:01:02:03'`, cash: `'-1.5'`,
    b: `'\\x00ff10'`, vb: `B'101'`, x: `'<a>é</a>'`, tsv: `'a b'`, mood: `'happy'`, rng: `'[1,5)'`,
    ts: `'2024-02-29 23:59:59.123456'`, tstz: `'2024-02-29 23:59:59.654321+05:30'`, d: `'2024-01-02'`,
    js: `'{"g": 1, "nested": {"a": [1, "x", null, {"b": false}]}, "": "empty key", "_id": 7, "k": 123456789012345}'`, j: `'{"b": 1, "a": 2, "b": 3}'`,
    ip: `'10.0.0.1'`, ints: `'{1,NULL,3}'`, f8s: `'{1e20,NaN,-Infinity,0.1}'`, ips: `'{::1,NULL}'`, flags: `'{t,f}'`, texts: `'{"a,b","c\\"d",NULL,"😀",""}'`,
    moods: `'{sad,NULL}'`, vcs: `'{ab,é}'`, bs: `'{"\\\\x00",NULL}'`,
  }, false],
  [2, {}, false],
  [3, {
    i2: '-32768', i4: '2147483647', big: '-9223372036854775808', num: '-0.0000000001', num_free: `'NaN'`, r4: `'NaN'`, f8: `'-Infinity'`,
    ts: `'0001-01-01'`, tstz: `'9999-12-31 23:59:59.999999+00'`, d: `'9999-12-31'`, txt: `''`, ch: `''`, texts: `'{}'`, ints: `'{{1,2},{3,4}}'`, js: `'{}'`,
  }, false],
  [4, { f8: '1e20', r4: '1e-7', num_free: '1.50', num: '0.00', big: '9223372036854775807', ip: `'192.168.0.5/24'` }, false],
  [5, { f8: '5e-324', r4: `'Infinity'`, num_free: `'-Infinity'`, txt: `repeat('a', 32766)`, texts: `array[repeat('€', 10000)]` }, false],
  [6, { txt: `repeat('€', 10922)`, vc: 'null' }, false],
  [7, { ts: `'infinity'` }, true],
  [8, { tstz: `'-infinity'` }, true],
  [9, { d: `'10000-01-01'` }, true],
  [10, { ts: `'0044-03-15 BC'` }, true],
  [11, { txt: `repeat('é', 16384)` }, true],
  [12, { js: `'[1, 2]'` }, true],
  [13, { js: `'{"a": 1.5}'` }, true],
  [14, { js: `'{"_value": 1}'` }, true],
  [15, { js: `'"a string"'` }, true],
  [16, { js: `'null'` }, true],
  [17, { j: `'{"a": 12345678901234567}'` }, true],
  [18, { texts: `'{{a,b},{c,d}}'` }, true],
  [19, { texts: `array[repeat('x', 40000)]` }, true],
  [20, { x: `xmlparse(content repeat('y', 40000))` }, true],
  // row-values.ts's json test reads the whole text: strings and keys that look like numbers count too
  [21, { js: `'{"s": "1e5"}'` }, true],
  [22, { js: `'{"s": "v1.2"}'` }, true],
  [23, { js: `'{"v1.0": true}'` }, true],
  [24, { js: `'{"a": [1, {"b": [{"c": -1234567890123456}]}]}'` }, true],
  [25, { js: `'{"card": "1234567890123456"}'` }, true],
  [26, { js: `'{"a": {"b": {"_value": 1}}}'` }, true],
  [27, { js: `'{"n": 1E-2}'` }, true],
  [28, { js: `'{"a": [[0.5]]}'` }, true],
  [29, { j: `'{"s": "3E"}'` }, true],
  [30, { js: `'{"n": 1e5, "m": 1.0e2, "k": -123456789012345, "s": "x1", "e.f": "E", "a": [1, {"d": "_valu"}]}'` }, false],
  [31, { js: `'{"n": 12}'`, j: `'{"s": "1.5"}'` }, true],
];

/**
 * The same JSON value with the same number texts (spacing and escapes aside). A float column's
 * numbers count by their double: row-values.ts itself sends a real's 1e-7 as 0.0000001 when it
 * passes the image's text and as 1e-7 when it parses the row, and CrateDB reads one double.
 */
function canonical(text: string, plan: TablePlan): string {
  const double = (v: unknown): unknown => (v instanceof LosslessNumber ? Number(v.value) : Array.isArray(v) ? v.map(double) : v);
  const row = losslessParse(text) as unknown[];
  return losslessStringify(row.map((v, i) => (plan.columns[i].kind === 'float' ? double(v) : v)))!;
}

interface Outcome {
  id: string;
  built: string | null;
  image: string;
}

/** Every row of `table` built by the source, beside its image, each row on its own; `id` names the row. */
async function buildAll(src: pg.Pool, info: TableInfo, opts: PlanOptions, table: string, id = 'c.id'): Promise<{ outcomes: Outcome[]; plan: ReturnType<typeof planTable> }> {
  const plan = planTable(info, opts, { uuid: true });
  const sql = copyRowSql(info, plan, 'c');
  for (const [i, c] of info.columns.entries()) assert.ok(copyRowSql({ ...info, columns: [c] }, { ...plan, columns: [plan.columns[i]] }, 'c'), `column ${c.name} (${c.type}) has an SQL form`);
  assert.ok(sql, `${table} has an SQL form for every column`);
  const referred = sql.matched ? `${sql.referred} or ${sql.matched.text} ~ ${sql.matched.pattern}` : sql.referred;
  const outcomes = await querySettled<Outcome>(src, `select ${id}::text as id, case when ${referred} then null else (${sql.row})::text end as built, to_jsonb(c.*)::text as image from ${table} c order by 1`);
  return { outcomes, plan };
}

async function tableInfo(src: pg.Pool, table: string, keyColumns: string[]): Promise<TableInfo> {
  const relid = Number((await src.query<{ r: string }>(`select $1::regclass::oid::int8 as r`, [table])).rows[0].r);
  const [schema, name] = table.split('.');
  return { id: 1, relid, sourceSchema: schema, sourceTable: name, targetSchema: 'doc', targetTable: name, keyColumns, columns: await describeColumns(src, relid) };
}

describe('parameter rows built by the source', () => {
  let cluster: Cluster;
  let src: pg.Pool;

  before(async () => {
    cluster = await startCluster();
    src = pool(await cluster.createDatabase('rows'));
    await src.query(KINDS);
    for (const [id, values] of ROWS) {
      const names = Object.keys(values);
      await src.query(`insert into public.kinds (id${names.map((n) => `, "${n}"`).join('')}) values (${id}${names.map((n) => `, ${values[n]}`).join('')})`);
    }
    // A column name with escapes in the image sends every row down row-values.ts's parsing path.
    await src.query(`create table public.kinds_odd (like public.kinds including all, "odd ""name\\" text)`);
    await src.query(`insert into public.kinds_odd select *, 'odd' from public.kinds`);
  });

  after(async () => {
    await src?.end();
    await cluster?.stop();
  });

  for (const table of ['public.kinds', 'public.kinds_odd']) for (const opts of [{ jsonColumn: 'object-ignored', textColumn: 'plain' }, { jsonColumn: 'object-dynamic', textColumn: 'unindexed' }] as PlanOptions[]) {
    test(`each built row of ${table} equals what row-values.ts builds from its image, and each refused row is referred (text ${opts.textColumn})`, async () => {
      const info = await tableInfo(src, table, ['id']);
      const { outcomes, plan } = await buildAll(src, info, opts, table);
      const referred: number[] = [];
      const seen = new Set<number>();
      for (const o of outcomes) {
        let expected: string | ValueRejected;
        try {
          expected = upsertArgs(plan, { id: 0, tableId: 1, op: 'B', key: '', row: parseRow(o.image), raw: o.image });
        } catch (err) {
          if (!(err instanceof ValueRejected)) throw err;
          expected = err;
        }
        if (o.built === null) {
          referred.push(Number(o.id));
          continue;
        }
        assert.ok(typeof expected === 'string', `row ${o.id} was built, but row-values.ts refuses it: ${(expected as Error).message}`);
        assert.equal(canonical(o.built, plan), canonical(expected, plan), `${table} row ${o.id}`);
        (JSON.parse(o.built) as unknown[]).forEach((v, i) => { if (v !== null) seen.add(i); });
      }
      // Unindexed text keeps long texts and arrays of them: no reason to refer those rows.
      const long = new Set(opts.textColumn === 'plain' ? [] : [11, 19, 20]);
      assert.deepEqual(referred.sort((a, b) => a - b), ROWS.filter(([id, , image]) => image && !long.has(id)).map(([id]) => id));
      for (let i = 0; i < plan.columns.length; i++) assert.ok(seen.has(i), `no built row has a value for ${plan.columns[i].source}`);
    });
  }

  test('a chunk of a direct load refers the same rows as each row on its own, whatever rows share its chunk', async () => {
    // The json test matches a whole chunk's texts first: a chunk with one such row, or none, must still refer exactly those rows.
    const info = await tableInfo(src, 'public.kinds', ['id']);
    const opts: PlanOptions = { jsonColumn: 'object-ignored', textColumn: 'plain' };
    const { outcomes } = await buildAll(src, info, opts, 'public.kinds');
    const built = copyRowSql(info, planTable(info, opts, { uuid: true }), 'c')!;
    assert.ok(built.matched, 'the json columns are matched apart');
    const sql = directChunkSql('pg2crate', { ...info, keyOrigin: 'primary key', shape: null }, ['bigint'], built);
    const expected = outcomes.sort((a, b) => Number(a.id) - Number(b.id)).map((o) => o.built ?? o.image);
    for (const size of [1, 2, 3, 5, ROWS.length]) {
      const got: string[] = [];
      let last: string | null = null;
      for (;;) {
        const rows: Array<{ r: string }> = await querySettled<{ r: string }>(src, sql, [last, size, null]);
        got.push(...rows.map((x) => x.r));
        if (rows.length < size) break;
        last = JSON.stringify(keyTexts(info, rows.at(-1)!.r));
      }
      assert.deepEqual(got, expected, `chunks of ${size}`);
    }
  });

  test('a chunk whose json values are large together is matched row by row: its texts are never joined', async () => {
    // 24 documents of about 1 MB that do not compress: 10,000 documents of 100 kB joined would pass a text's 1 GB limit.
    await src.query(`create table public.big_docs (id integer primary key, doc jsonb not null)`);
    await src.query(`insert into public.big_docs select g, jsonb_build_object('pad', (select string_agg(translate(md5(g::text || ':' || i), '0123456789', 'ghijklmnop'), '') from generate_series(1, 32000) i))
      || case when g = 7 then '{"n": 1.5}'::jsonb else '{}'::jsonb end from generate_series(1, 24) g`);
    const info = await tableInfo(src, 'public.big_docs', ['id']);
    const built = copyRowSql(info, planTable(info, { jsonColumn: 'object-ignored', textColumn: 'plain' }, { uuid: true }), 'c')!;
    const sql = directChunkSql('pg2crate', { ...info, keyOrigin: 'primary key', shape: null }, ['bigint'], built);
    const rows: Array<{ r: string }> = await querySettled<{ r: string }>(src, sql, [null, 100, null]);
    assert.deepEqual(rows.map((x, i) => (x.r.startsWith('[') ? 'built' : `image ${i + 1}`)).filter((x) => x !== 'built'), ['image 7'], 'only the row with the float goes as its image');
    const plan = (await src.query(`explain (analyze, verbose, costs off) ${sql.replaceAll('$1', 'null').replaceAll('$2', '100').replaceAll('$3', 'null')}`)).rows.map((r) => String(r['QUERY PLAN']));
    const joined = plan.findIndex((l) => l.includes('string_agg'));
    const node = plan.slice(0, joined).reverse().find((l) => l.includes('Aggregate'));
    assert.ok(node?.includes('never executed'), `the joined match did not run:\n${plan.join('\n')}`);
  });

  test('a built row gives back its key: the position reads its row again, and its key object finds it', async () => {
    await src.query(`create table public.keyed (ts timestamptz, n numeric(10,2), s char(4), u uuid, f boolean, i integer, big bigint, d date, tl timestamp, v text,
      primary key (ts, n, s, u, f, i, big, d, tl))`);
    await src.query(`insert into public.keyed values
      ('2024-01-01 10:00:00.123+02', 1.50, 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, -5, 9223372036854775807, '2024-02-29', '0001-01-01 00:00:00.999', 'a'),
      ('2024-01-01 10:00:00.000001+00', 2, 'cd', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', false, 0, 1, '2024-03-01', '2024-01-01', 'b')`);
    const info = await tableInfo(src, 'public.keyed', ['ts', 'n', 's', 'u', 'f', 'i', 'big', 'd', 'tl']);
    const { outcomes, plan } = await buildAll(src, info, { jsonColumn: 'object-ignored', textColumn: 'plain' }, 'public.keyed', 'c.v');
    // a key with microseconds would be two source keys in one CrateDB row: referred, refused by row-values.ts
    assert.deepEqual(outcomes.map((o) => o.built === null), [false, true]);
    assert.throws(() => upsertArgs(plan, { id: 0, tableId: 1, op: 'B', key: '', row: parseRow(outcomes[1].image), raw: outcomes[1].image }), ValueRejected);
    const types = ['timestamptz', 'numeric', 'char(4)', 'uuid', 'boolean', 'integer', 'bigint', 'date', 'timestamp'];
    const cols = info.keyColumns.map((k) => `t.${k}`).join(', ');
    for (const o of outcomes) {
      const text = o.built ?? o.image;
      const position = JSON.stringify(keyTexts(info, text));
      const at = await src.query(`select t.v from public.keyed t where (${cols}) = (${types.map((ty, i) => `($1::jsonb ->> ${i})::${ty}`).join(', ')})`, [position]);
      assert.equal(at.rows.length, 1, `the position ${position} finds its row`);
    }
    const row = new CopiedRow(1, info, outcomes[0].built!);
    const found = await src.query(`select t.v from public.keyed t where (${cols}) in (select ${cols.replace(/t\./g, 'k.')} from jsonb_populate_recordset(null::public.keyed, $1::jsonb) k)`, [`[${keyObjectText(info, row)}]`]);
    assert.deepEqual(found.rows, [{ v: 'a' }]);
  });

  test('a table with a column of a kind without an SQL form is left to the image path', async () => {
    const kinds = ['point', 'bigint[]', 'timestamptz[]', 'jsonb[]', 'numeric(10,2)[]', 'text[][]', 'pair'];
    await src.query(`create type pair as (f1 integer, f2 text)`);
    for (const [i, type] of kinds.entries()) {
      await src.query(`create table public.other_${i} (id integer primary key, v ${type})`);
      const info = await tableInfo(src, `public.other_${i}`, ['id']);
      assert.equal(copyRowSql(info, planTable(info, { jsonColumn: 'object-ignored', textColumn: 'plain' }, { uuid: true }), 'c'), null, type);
    }
    await src.query(`create table public.jtext (id integer primary key, v jsonb)`);
    const jtext = await tableInfo(src, 'public.jtext', ['id']);
    assert.equal(copyRowSql(jtext, planTable(jtext, { jsonColumn: 'text', textColumn: 'plain' }, { uuid: true }), 'c'), null, 'json kept as text');
    for (const [i, type] of ['numeric', 'double precision'].entries()) {
      await src.query(`create table public.key_${i} (k ${type} primary key, v text)`);
      const info = await tableInfo(src, `public.key_${i}`, ['k']);
      assert.equal(copyRowSql(info, planTable(info, { jsonColumn: 'object-ignored', textColumn: 'plain' }, { uuid: true }), 'c'), null, `a ${type} key`);
    }
  });
});
