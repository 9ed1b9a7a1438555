import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sqlparse } from '@cratedb/cratedb-sqlparse';
import type { ColumnInfo, TableInfo } from '../../src/core/change.js';
import { TableError } from '../../src/core/errors.js';
import { planTable, type PlanOptions } from '../../src/sink/cratedb/column-types.js';
import { crateColumnName, crateNameMappings, crateTargetName } from '../../src/sink/cratedb/names.js';
import { addColumnSql, createTableSql, deleteByKeySql, insertKeepingSql, truncateSql, updateColumnsSql, upsertSql } from '../../src/sink/cratedb/sql.js';

/** Parses under CrateDB's grammar and throws on a syntax error (the second argument). */
function parses(sql: string): void {
  const statements = sqlparse(sql, true);
  assert.equal(statements.length, 1, `expected one statement in ${sql}`);
}

function col(name: string, baseType: string, more: Partial<ColumnInfo> = {}): ColumnInfo {
  return { name, type: more.baseFormatted ?? baseType, baseType, baseFormatted: more.baseFormatted ?? baseType, dims: 0, typtype: 'b', notNull: false, ...more };
}

function table(columns: ColumnInfo[], keyColumns: string[], target = { schema: 'doc', table: 't' }): TableInfo {
  return { id: 1, relid: 1, sourceSchema: 'public', sourceTable: target.table, targetSchema: target.schema, targetTable: target.table, keyColumns, columns };
}

const OPTS: PlanOptions = { jsonColumn: 'object-ignored', textColumn: 'plain' };
const FEATURES = { uuid: true };
const plan = (t: TableInfo, opts = OPTS) => planTable(t, opts, FEATURES);

describe('statement checks', () => {
  test('a statement with a syntax error throws, so these checks can fail', () => {
    assert.throws(() => sqlparse('SELEC 1', true));
    assert.throws(() => sqlparse('INSERT INTO "t" ("a") VALUES (?) ON CONFLICT ("a") DO UPDATE SET', true));
    assert.throws(() => sqlparse('CREATE TABLE "t" ("a" TEXT INDEX OFF STORAGE WITH (columnstore = ))', true));
  });
});

describe('upserts', () => {
  test('key columns are left out of SET', () => {
    const p = plan(table([col('id', 'int8'), col('name', 'text'), col('n', 'int4')], ['id']));
    const { sql, doNothing } = upsertSql(p);
    assert.equal(sql, 'INSERT INTO "doc"."t" ("id", "name", "n") VALUES (?, ?, ?) ON CONFLICT ("id") DO UPDATE SET "name" = excluded."name", "n" = excluded."n"');
    assert.equal(doNothing, false);
    parses(sql);
  });

  test('a composite key names every key column in ON CONFLICT and none in SET', () => {
    const p = plan(table([col('b', 'text'), col('v', 'float8'), col('a', 'int4')], ['a', 'b']));
    const { sql } = upsertSql(p);
    assert.equal(sql, 'INSERT INTO "doc"."t" ("b", "v", "a") VALUES (?, ?, ?) ON CONFLICT ("a", "b") DO UPDATE SET "v" = excluded."v"');
    parses(sql);
  });

  test('a table of key columns only does nothing on conflict', () => {
    const p = plan(table([col('a', 'int4'), col('b', 'text')], ['a', 'b']));
    const { sql, doNothing } = upsertSql(p);
    assert.equal(sql, 'INSERT INTO "doc"."t" ("a", "b") VALUES (?, ?) ON CONFLICT ("a", "b") DO NOTHING');
    assert.equal(doNothing, true);
    parses(sql);
  });

  test('a created table gets the configured refresh_interval, and CrateDB\'s default without one', () => {
    const p = plan(table([col('id', 'int8'), col('v', 'text')], ['id']));
    const sql = createTableSql(p, { replicas: '0-2', refreshIntervalMs: 500 });
    assert.match(sql, /WITH \(number_of_replicas = '0-2', refresh_interval = 500, column_policy = 'strict'\)$/);
    parses(sql);
    assert.doesNotMatch(createTableSql(p, { replicas: '0-2' }), /refresh_interval/);
  });

  test("an initial load's insert into a table it found empty keeps a row already there", () => {
    const p = plan(table([col('b', 'text'), col('v', 'float8'), col('a', 'int4')], ['a', 'b']));
    const sql = insertKeepingSql(p);
    assert.equal(sql, 'INSERT INTO "doc"."t" ("b", "v", "a") VALUES (?, ?, ?) ON CONFLICT ("a", "b") DO NOTHING');
    parses(sql);
  });

  test('routing and partition columns of an existing table are left out of SET', () => {
    const p = plan(table([col('id', 'int8'), col('tenant', 'text'), col('day', 'date'), col('v', 'text')], ['id']));
    const { sql } = upsertSql(p, new Set(['tenant', 'day']));
    assert.equal(sql, 'INSERT INTO "doc"."t" ("id", "tenant", "day", "v") VALUES (?, ?, ?, ?) ON CONFLICT ("id") DO UPDATE SET "v" = excluded."v"');
    parses(sql);
  });
});

describe('deletes', () => {
  test('a delete goes by key with one parameter per key column, never ANY or IN', () => {
    const one = deleteByKeySql(plan(table([col('id', 'int8'), col('v', 'text')], ['id'])));
    assert.equal(one, 'DELETE FROM "doc"."t" WHERE "id" = ?');
    const two = deleteByKeySql(plan(table([col('a', 'int4'), col('b', 'text'), col('v', 'text')], ['a', 'b'])));
    assert.equal(two, 'DELETE FROM "doc"."t" WHERE "a" = ? AND "b" = ?');
    for (const s of [one, two]) {
      parses(s);
      assert.doesNotMatch(s, /\bANY\b|\bIN\b/i);
    }
  });

  test('a partial image updates the columns it carries, by key', () => {
    const p = plan(table([col('a', 'int4'), col('b', 'text'), col('big', 'text'), col('v', 'int4')], ['a', 'b']));
    const sql = updateColumnsSql(p, [p.columns[2], p.columns[3]]);
    assert.equal(sql, 'UPDATE "doc"."t" SET "big" = ?, "v" = ? WHERE "a" = ? AND "b" = ?');
    parses(sql);
    assert.doesNotMatch(sql, /\bANY\b|\bIN\b/i);
  });

  test('a truncate refreshes, then deletes without WHERE', () => {
    const [refresh, del] = truncateSql({ schema: 'my schema', table: 'x"y' });
    assert.equal(refresh, 'REFRESH TABLE "my schema"."x""y"');
    assert.equal(del, 'DELETE FROM "my schema"."x""y"');
    parses(refresh);
    parses(del);
  });
});

describe('hostile names', () => {
  const columns = [
    col('we"ird', 'int8'), col('with space', 'text'), col('ünïcødé 😀', 'text'), col('select', 'int4'), col('order', 'text'),
    col('_id', 'text'), col('a.b', 'text'), col('x[1]', 'int4'), col('tab\there', 'text'), col('_private', 'bool'),
  ];
  const target = crateTargetName('Sales Data', 'Order Items');
  const p = plan(table(columns, ['we"ird', 'select'], target));

  test('every statement with them parses and quotes each name', () => {
    const create = createTableSql(p, { replicas: '0-1' });
    const upsert = upsertSql(p).sql;
    const del = deleteByKeySql(p);
    const add = addColumnSql(p, p.columns[1]);
    for (const s of [create, upsert, del, add, ...truncateSql(p)]) parses(s);
    assert.match(create, new RegExp(`^CREATE TABLE IF NOT EXISTS "${target.schema}"\\."${target.table}" \\(`));
    assert.match(upsert, /\("we""ird", "with space", "ünïcødé 😀", "select", "order", "pg_id_[0-9a-f]{8}", "a_b_[0-9a-f]{8}", "x_1__[0-9a-f]{8}", "tab_here_[0-9a-f]{8}", "_private"\)/);
    assert.match(upsert, /ON CONFLICT \("we""ird", "select"\) DO UPDATE SET "with space" = excluded."with space", /);
    assert.doesNotMatch(upsert, /SET .*"select" = /);
    assert.equal(del, `DELETE FROM "${target.schema}"."${target.table}" WHERE "we""ird" = ? AND "select" = ?`);
  });

  test('ADD COLUMN names the mapped column with its type', () => {
    assert.equal(addColumnSql(p, p.columns[1]), `ALTER TABLE "${target.schema}"."${target.table}" ADD COLUMN "with space" TEXT`);
    const a = addColumnSql(p, p.columns[6]);
    assert.match(a, /ADD COLUMN "a_b_[0-9a-f]{8}" TEXT$/);
    parses(a);
  });
});

describe('CREATE TABLE', () => {
  const every: ColumnInfo[] = [
    col('id', 'int8', { notNull: true }), col('i2', 'int2'), col('i4', 'int4'),
    col('num', 'numeric', { baseFormatted: 'numeric(38,10)' }), col('num_free', 'numeric'), col('num_wide', 'numeric', { baseFormatted: 'numeric(60,2)' }),
    col('r4', 'float4'), col('f8', 'float8'), col('flag', 'bool'),
    col('txt', 'text'), col('vc', 'varchar', { baseFormatted: 'character varying(20)' }), col('vc_free', 'varchar', { baseFormatted: 'character varying' }),
    col('ch', 'bpchar', { baseFormatted: 'character(3)' }), col('c1', 'char', { baseFormatted: '"char"' }),
    col('ts', 'timestamp', { baseFormatted: 'timestamp without time zone' }), col('tstz', 'timestamptz', { baseFormatted: 'timestamp with time zone' }),
    col('d', 'date'), col('t', 'time', { baseFormatted: 'time without time zone' }), col('iv', 'interval'),
    col('u', 'uuid'), col('js', 'jsonb'), col('j', 'json'), col('b', 'bytea'), col('ip', 'inet'), col('net', 'cidr'), col('mac', 'macaddr'),
    col('pt', 'point'), col('bits', 'bit', { baseFormatted: 'bit(4)' }), col('vbits', 'varbit', { baseFormatted: 'bit varying(8)' }),
    col('mood', 'mood', { typtype: 'e', baseType: 'other' }), col('rng', 'int4range', { typtype: 'r' }), col('cmp', 'other', { typtype: 'c' }),
    col('money', 'money'), col('tsv', 'tsvector'),
    col('ints', 'int4', { dims: 1 }), col('matrix', 'int4', { dims: 2 }), col('texts', 'text', { dims: 1 }), col('docs', 'jsonb', { dims: 1 }), col('pts', 'point', { dims: 1 }),
  ];
  const t = table(every, ['id'], { schema: 'replica', table: 'all_types' });

  test('every mapped type has its CrateDB type, and the statement parses', () => {
    const sql = createTableSql(plan(t), { replicas: '0-1', shards: 4 });
    assert.equal(sql, `CREATE TABLE IF NOT EXISTS "replica"."all_types" (
  "id" BIGINT,
  "i2" SMALLINT,
  "i4" INTEGER,
  "num" NUMERIC(38, 10),
  "num_free" TEXT,
  "num_wide" TEXT,
  "r4" REAL,
  "f8" DOUBLE PRECISION,
  "flag" BOOLEAN,
  "txt" TEXT,
  "vc" VARCHAR(20),
  "vc_free" TEXT,
  "ch" CHARACTER(3),
  "c1" TEXT,
  "ts" TIMESTAMP WITHOUT TIME ZONE,
  "tstz" TIMESTAMP WITH TIME ZONE,
  "d" TIMESTAMP WITHOUT TIME ZONE,
  "t" TEXT,
  "iv" TEXT,
  "u" UUID,
  "js" OBJECT(IGNORED),
  "j" OBJECT(IGNORED),
  "b" TEXT INDEX OFF STORAGE WITH (columnstore = false),
  "ip" IP,
  "net" TEXT,
  "mac" TEXT,
  "pt" GEO_POINT,
  "bits" BIT(4),
  "vbits" TEXT,
  "mood" TEXT,
  "rng" TEXT,
  "cmp" TEXT,
  "money" TEXT,
  "tsv" TEXT,
  "ints" ARRAY(INTEGER),
  "matrix" ARRAY(ARRAY(INTEGER)),
  "texts" ARRAY(TEXT),
  "docs" ARRAY(OBJECT(IGNORED)),
  "pts" ARRAY(GEO_POINT),
  PRIMARY KEY ("id")
) CLUSTERED INTO 4 SHARDS WITH (number_of_replicas = '0-1', column_policy = 'strict')`);
    parses(sql);
  });

  test('the text and json settings change the storage of text and json columns, but not of key columns', () => {
    const t2 = table([col('k', 'text'), col('txt', 'text'), col('texts', 'text', { dims: 1 }), col('js', 'jsonb')], ['k']);
    const unindexed = createTableSql(plan(t2, { jsonColumn: 'text', textColumn: 'unindexed' }), { replicas: '1' });
    assert.equal(unindexed, `CREATE TABLE IF NOT EXISTS "doc"."t" (
  "k" TEXT,
  "txt" TEXT INDEX OFF STORAGE WITH (columnstore = false),
  "texts" ARRAY(TEXT) INDEX OFF STORAGE WITH (columnstore = false),
  "js" TEXT INDEX OFF STORAGE WITH (columnstore = false),
  PRIMARY KEY ("k")
) WITH (number_of_replicas = '1', column_policy = 'strict')`);
    parses(unindexed);
    const fulltext = createTableSql(plan(t2, { jsonColumn: 'object-dynamic', textColumn: 'fulltext' }), { replicas: '0-all' });
    assert.match(fulltext, /"txt" TEXT INDEX USING FULLTEXT,\n {2}"texts" ARRAY\(TEXT\) INDEX USING FULLTEXT,\n {2}"js" OBJECT\(DYNAMIC\),/);
    assert.match(fulltext, /^ {2}"k" TEXT,$/m);
    parses(fulltext);
  });

  test('before CrateDB 6.2 a uuid column is TEXT', () => {
    const p = planTable(table([col('u', 'uuid')], ['u']), OPTS, { uuid: false });
    assert.equal(p.columns[0].ddl, 'TEXT');
  });

  test('a key CrateDB cannot hold, or two columns with one target name, stop the table with a clear message', () => {
    assert.throws(() => plan(table([col('tags', 'text', { dims: 1 })], ['tags'])), (e: unknown) => e instanceof TableError && /primary key cannot be/.test(e.message));
    assert.throws(() => plan(table([col('doc', 'jsonb')], ['doc'])), TableError);
    assert.throws(() => plan(table([col('p', 'point')], ['p'])), TableError);
    // crateColumnName('a.b') is 'a_b_<hash>', so a source column with that very name collides
    const clash = crateColumnName('a.b');
    assert.throws(() => plan(table([col('id', 'int4'), col('a.b', 'text'), col(clash, 'text')], ['id'])), (e: unknown) => e instanceof TableError && /would both be/.test(e.message));
  });
});

describe('names', () => {
  test('a name CrateDB can hold is kept, case and unicode included', () => {
    assert.deepEqual(crateTargetName('Public', 'MixedCase_ünï😀'), { schema: 'Public', table: 'MixedCase_ünï😀' });
    assert.deepEqual(crateTargetName('s', 'x'.repeat(63)), { schema: 's', table: 'x'.repeat(63) });
    assert.equal(crateColumnName('_private'), '_private');
    assert.equal(crateColumnName('With Space;'), 'With Space;');
  });

  test('an illegal table name is mapped the same way every time, and different names never meet', () => {
    const a = crateTargetName('public', 'Order Items');
    assert.match(a.table, /^Order_Items_[0-9a-f]{8}$/);
    assert.deepEqual(crateTargetName('public', 'Order Items'), a);
    const names = ['a b', 'a.b', 'a/b', 'a\tb', 'a,b', 'a#b', 'a"b', 'a*b', 'a?b', 'a<b', 'a>b', 'a|b', 'a\\b', 'a:b', 'a\u00a0b'];
    const mapped = names.map((n) => crateTargetName('s', n).table);
    assert.equal(new Set([...mapped, 'a_b']).size, names.length + 1);
    for (const m of mapped) assert.match(m, /^a_b_[0-9a-f]{8}$/);
  });

  test('reserved schemas, _all and a leading - or + are mapped', () => {
    assert.match(crateTargetName('sys', 't').schema, /^sys_[0-9a-f]{8}$/);
    assert.match(crateTargetName('information_schema', 't').schema, /^information_schema_[0-9a-f]{8}$/);
    assert.match(crateTargetName('blob', 't').schema, /^blob_[0-9a-f]{8}$/);
    assert.match(crateTargetName('s', '_all').table, /^_all_[0-9a-f]{8}$/);
    assert.match(crateTargetName('-s', '+t').schema, /^_s_[0-9a-f]{8}$/);
    assert.match(crateTargetName('-s', '+t').table, /^_t_[0-9a-f]{8}$/);
    assert.ok(Buffer.byteLength(crateTargetName('s', 'é'.repeat(100)).table) <= 120);
  });

  test('system column names and names with . [ ] tab or newline are mapped', () => {
    for (const sys of ['_id', '_version', '_score', '_uid', '_doc', '_raw', '_seq_no', '_primary_term', '_docid', '_fetchid', '_tombstone']) {
      assert.match(crateColumnName(sys), new RegExp(`^pg${sys}_[0-9a-f]{8}$`));
    }
    assert.match(crateColumnName('a.b'), /^a_b_[0-9a-f]{8}$/);
    assert.match(crateColumnName('m[0]'), /^m_0__[0-9a-f]{8}$/);
    assert.match(crateColumnName('line\nbreak'), /^line_break_[0-9a-f]{8}$/);
    assert.notEqual(crateColumnName('a.b'), crateColumnName('a[b'));
  });

  test('the mappings to report name each renamed schema, table and column with the reason', () => {
    const m = crateNameMappings({ schema: 'sales', table: 'Order Items' }, ['id', '_id', 'a.b']);
    assert.deepEqual(m.map((x) => [x.kind, x.from]), [['table', 'Order Items'], ['column', '_id'], ['column', 'a.b']]);
    assert.equal(m[0].to, crateTargetName('sales', 'Order Items').table);
    assert.match(m[1].reason, /system column/);
    assert.deepEqual(crateNameMappings({ schema: 'public', table: 'orders' }, ['id', 'total']), []);
  });
});
