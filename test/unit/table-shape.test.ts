// Shaped targets (issue 12) without a database: the per-table options of the config file are
// validated with messages that name the setting (and never show the salt), the predicate cannot
// reach outside its parentheses, and the SQL builders: the capture function, the initial load's
// chunk, and every CrateDB statement (checked against CrateDB's grammar).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { sqlparse } from '@cratedb/cratedb-sqlparse';
import type { Change, ColumnInfo, TableInfo } from '../../src/core/change.js';
import { loadConfig } from '../../src/core/config.js';
import { ConfigError } from '../../src/core/errors.js';
import { checkPredicateText, resolveShape, type TableShape } from '../../src/core/table-shape.js';
import { captureFunctionSql } from '../../src/capture/triggers.js';
import { chunkSql } from '../../src/load/backfill.js';
import { planTable } from '../../src/sink/cratedb/column-types.js';
import {
  createHistorySql, historyArgs, historyDay, historyInsertSql, historyPlan, shapedUpsertArgs, shapedUpsertSql, softDeleteArgs, softDeleteSql, softTruncate, withExtraColumns,
} from '../../src/sink/cratedb/shape-sql.js';
import { createTableSql } from '../../src/sink/cratedb/sql.js';
import { stateRowJson, withFields } from '../../src/sink/postgres/shape-sql.js';
import { publishedTable } from '../../src/source/pgoutput/publication-shape.js';

const BASE = { DATABASE_URL: 'postgres://app@db.example/shop', TARGET_DATABASE_URL: 'postgres://copy@target.example/copy' };
const SALT = 's3cret-salt';

function load(table: Record<string, unknown>, env: Record<string, string> = {}) {
  return loadConfig({ ...BASE, ...env }, { tables: [{ name: 'public.t', ...table }] });
}

function rejects(table: Record<string, unknown>, setting: string, more?: RegExp, env: Record<string, string> = {}): void {
  assert.throws(() => load(table, env), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(err.message.includes(setting), `the message must name ${setting}: ${err.message}`);
    if (more) assert.match(err.message, more);
    assert.ok(!err.message.includes(SALT), 'the salt never appears in a message');
    return true;
  });
}

describe('config', () => {
  test('no shape options: the table is a plain copy, and PG2CRATE_TABLES stays plain names', () => {
    const c = load({});
    assert.equal(resolveShape(c.tables[0], null), null);
    assert.equal(resolveShape(load({ deletes: 'hard', history: false }).tables[0], null), null);
    const env = loadConfig({ ...BASE, PG2CRATE_TABLES: 'public.a,public.b' });
    assert.deepEqual(env.tables, [{ schema: 'public', table: 'a' }, { schema: 'public', table: 'b' }]);
  });

  test('PG2CRATE_TABLES picks the tables; a table\'s shape from the file is kept, never dropped', () => {
    const c = loadConfig({ ...BASE, PG2CRATE_TABLES: 'public.a,b' }, { tables: [{ name: 'public.b', excludeColumns: ['secret'] }, { name: 'public.c', deletes: 'soft' }] });
    assert.deepEqual(c.tables, [{ schema: 'public', table: 'a' }, { schema: 'public', table: 'b', excludeColumns: ['secret'] }]);
  });

  test('every option is read, defaults filled in', () => {
    const c = load({
      deletes: 'soft', metadata: { sourceTime: 'src_at', appliedTime: 'applied_at', operation: 'op' }, history: true, historyTable: 't_log',
      excludeColumns: ['secret'], hashColumns: ['email'], hashSalt: SALT, where: 'tenant_id = 42',
    });
    const t = c.tables[0];
    assert.equal(t.hashSalt, SALT);
    const shape = resolveShape(t, { schema: 'public', table: 't_log' })!;
    assert.deepEqual(shape, {
      hashColumns: ['email'], deletes: 'soft', deletedAtColumn: '_deleted_at', metadata: { sourceTime: 'src_at', appliedTime: 'applied_at', operation: 'op' },
      history: { schema: 'public', table: 't_log', eventIdColumn: '_event_id', operationColumn: 'op', sourceTimeColumn: 'src_at' },
      excludeColumns: ['secret'], where: 'tenant_id = 42',
    });
    assert.ok(!JSON.stringify(shape).includes(SALT), 'the registered shape holds no salt');
    assert.ok(Object.isFrozen(t.excludeColumns));
  });

  test('unknown and malformed settings are refused with the setting named', () => {
    rejects({ delete: 'soft' }, 'tables[0].delete', /unknown setting/);
    rejects({ metadata: { sourcetime: 'x' } }, 'tables[0].metadata.sourcetime', /unknown setting/);
    rejects({ metadata: ['x'] }, 'tables[0].metadata');
    rejects({ metadata: { operation: '' } }, 'tables[0].metadata.operation');
    rejects({ deletes: 'logical' }, 'tables[0].deletes', /"hard" or "soft"/);
    rejects({ deletedAtColumn: 'gone_at' }, 'tables[0].deletedAtColumn', /only with "deletes": "soft"/);
    rejects({ history: 'yes' }, 'tables[0].history');
    rejects({ historyTable: 'log' }, 'tables[0].historyTable', /only with "history": true/);
    rejects({ includeColumns: [] }, 'tables[0].includeColumns');
    rejects({ excludeColumns: ['a', 'a'] }, 'tables[0].excludeColumns', /twice/);
    rejects({ includeColumns: ['id'], excludeColumns: ['a'] }, 'tables[0].excludeColumns', /not both/);
    rejects({ where: 42 }, 'tables[0].where');
    rejects({ where: '  ' }, 'tables[0].where');
  });

  test('added columns may not share a name', () => {
    rejects({ deletes: 'soft', metadata: { sourceTime: '_deleted_at' } }, 'tables[0]', /"_deleted_at" is used twice/);
    rejects({ metadata: { sourceTime: 'x', appliedTime: 'x' } }, 'tables[0]', /"x" is used twice/);
    rejects({ history: true, metadata: { operation: '_event_id' } }, 'tables[0]', /"_event_id" is used twice/);
  });

  test('hashed columns need a salt (per table or PG2CRATE_HASH_SALT), and are neither excluded nor left out of an include list', () => {
    rejects({ hashColumns: ['email'] }, 'tables[0].hashColumns', /salt/);
    assert.equal(load({ hashColumns: ['email'] }, { PG2CRATE_HASH_SALT: SALT }).tables[0].hashSalt, SALT);
    assert.equal(load({ hashColumns: ['email'], hashSalt: 'own' }, { PG2CRATE_HASH_SALT: SALT }).tables[0].hashSalt, 'own', 'a table\'s own salt wins');
    rejects({ hashColumns: ['email'], excludeColumns: ['email'] }, 'tables[0].hashColumns', /either excluded or hashed/, { PG2CRATE_HASH_SALT: SALT });
    rejects({ hashColumns: ['email'], includeColumns: ['id'] }, 'tables[0].hashColumns', /not in includeColumns/, { PG2CRATE_HASH_SALT: SALT });
    rejects({ hashSalt: 7 }, 'tables[0].hashSalt');
    assert.throws(() => loadConfig({ ...BASE, PG2CRATE_HASH_SALT: '' }, { hashSalt: 5 }), /PG2CRATE_HASH_SALT/);
  });

  test('a predicate is one expression: quotes closed, parentheses balanced, no ";", comment or "$"', () => {
    for (const ok of [`tenant_id = 42`, `name = 'a;b)' and "odd""col" > 1`, `note like E'it\\'s --' or x in (1, (2))`, `coalesce(a, '') <> ''`]) {
      assert.doesNotThrow(() => checkPredicateText('where', ok), ok);
    }
    for (const [bad, why] of [
      ['true) or (true', /unbalanced/], ['true; drop table t', /";"/], ['a = 1 -- x', /comments/], ['a = 1 /* x */', /comments/],
      ['a = $1', /"\$"/], ['a = $$x$$', /"\$"/], [`a = 'open`, /unterminated string/], ['"a = 1', /unterminated quoted name/], ['((a)', /unbalanced "\("/],
      [`a = E'x\\' ) or (1=1`, /unterminated/],
    ] as const) {
      assert.throws(() => checkPredicateText('tables[0].where', bad), (err: unknown) => err instanceof ConfigError && why.test(err.message), bad);
    }
  });
});

const col = (name: string, baseType: string, more: Partial<ColumnInfo> = {}): ColumnInfo =>
  ({ name, type: baseType, baseType, baseFormatted: baseType, dims: 0, typtype: 'b', notNull: false, ...more });

const SHAPE: TableShape = {
  hashColumns: ['email'], excludeColumns: ['ssn'], where: 'tenant_id = 42', deletes: 'soft', deletedAtColumn: '_deleted_at',
  metadata: { sourceTime: '_src', appliedTime: '_applied', operation: '_op' },
  history: { schema: 'doc', table: 't_history', eventIdColumn: '_event_id', operationColumn: '_op', sourceTimeColumn: '_src' },
};

describe('capture SQL', () => {
  const target = { tableId: 7, relid: 16400, sourceSchema: 'public', sourceTable: 't', keyColumns: ['id'], keyOrigin: 'primary key' as const, guardedColumns: [{ name: 'email', attnum: 4 }] };

  test('a plain table\'s function is unchanged in what it writes: the whole row, no source time', () => {
    const fn = captureFunctionSql('pg2crate', target);
    assert.match(fn, /'I', pg_catalog\.to_json\(n\.\*\) from pg2crate_new n;/);
    assert.doesNotMatch(fn, /source_time|sha256|where \(/);
  });

  test('a shaped table\'s function leaves columns out, hashes with the registry\'s salt, filters, and writes the source time', () => {
    const fn = captureFunctionSql('pg2crate', { ...target, shape: SHAPE });
    assert.match(fn, /- array\['ssn'\]::text\[\]/);
    assert.match(fn, /sha256\(convert_to\(\(select s\.hash_salt from "pg2crate"\."tables" s where s\.id = 7\) \|\| \(n_img\.pg2crate_image ->> 'email'\), 'UTF8'\)\)/);
    assert.match(fn, /insert into "pg2crate"\."outbox" \(gen, table_id, op, data, source_time\)/);
    assert.match(fn, /\)::pg_catalog\.json, now\(\) from pg2crate_new n cross join lateral \(select to_jsonb\(n\.\*\) as pg2crate_image offset 0\) n_img where \(tenant_id = 42\);/);
    // UPDATE: a delete for each old row that passed and whose key is not among the new rows that pass
    assert.match(fn, /'D', pg_catalog\.json_build_object\('id', o\."id"\), now\(\)\s+from \(select o\."id" from pg2crate_old o where \(tenant_id = 42\) except select n\."id" from pg2crate_new n where \(tenant_id = 42\)\) o/);
    assert.match(fn, /tg_op OPERATOR\(pg_catalog\.=\) 'DELETE' then\s+insert .* from pg2crate_old o where \(tenant_id = 42\);/);
    // the predicate's names are the table's columns, the function's own variables always qualified
    assert.match(fn, /#variable_conflict use_column/);
    assert.doesNotMatch(fn.replace(/pg2crate_capture\.v_saved/g, ''), /\bv_saved\b(?! pg_catalog\.text\[\])/);
  });

  test('an include list is the complement of the table\'s other columns, read from the catalog by oid', () => {
    const fn = captureFunctionSql('pg2crate', { ...target, shape: { ...SHAPE, excludeColumns: undefined, includeColumns: ['id', 'email'] } });
    assert.match(fn, /a\.attrelid = 16400::oid .* a\.attname::text <> all\(array\['id', 'email'\]::text\[\]\)/s);
  });

  test('the initial load copies through the same image and predicate', () => {
    const sql = chunkSql('pg2crate', { id: 7, relid: 16400, sourceSchema: 'public', sourceTable: 't', keyColumns: ['id'], keyOrigin: 'primary key', targetSchema: 'public', targetTable: 't', shape: SHAPE }, ['integer']);
    assert.match(sql, /where \(\$1::jsonb is null or \(t\."id"\) > \(\(\$1::jsonb ->> 0\)::integer\)\) and \(\$3::jsonb is null or \(t\."id"\) <= \(\(\$3::jsonb ->> 0\)::integer\)\) and \(tenant_id = 42\)/);
    assert.match(sql, /\(table_id, op, data, source_time\) select 7, 'B', jsonb_set\(/);
    assert.match(sql, /- array\['ssn'\]::text\[\]/);
  });

  test('pgoutput publishes a filtered table with its column list and WHERE', () => {
    assert.deepEqual(publishedTable({ sourceSchema: 'public', sourceTable: 't', shape: { ...SHAPE, hashColumns: [] } }, ['id', 'tenant_id', 'ssn', 'email']), {
      clause: '"public"."t" ("id", "tenant_id", "email") where (tenant_id = 42)', columns: ['id', 'tenant_id', 'email'],
    });
    assert.equal(publishedTable({ sourceSchema: 'public', sourceTable: 't', shape: null }, ['id']).clause, '"public"."t"');
    // an excluded column renamed (found by attnum: RENAMED_SHAPE_COLUMNS) stays out under its new name
    assert.deepEqual(publishedTable({ sourceSchema: 'public', sourceTable: 't', shape: { ...SHAPE, hashColumns: [], where: undefined } }, ['id', 'tenant_id', 'social', 'email'], ['social']).columns, ['id', 'tenant_id', 'email']);
  });
});

describe('sink SQL', () => {
  const table: TableInfo = {
    id: 7, relid: 1, sourceSchema: 'public', sourceTable: 't', targetSchema: 'doc', targetTable: 't', keyColumns: ['id'],
    columns: [col('id', 'int8', { notNull: true }), col('tenant_id', 'int4'), col('email', 'text'), col('at', 'timestamptz')], shape: SHAPE,
  };
  const plan = planTable(table, { jsonColumn: 'object-ignored', textColumn: 'plain' }, { uuid: true });
  const change = (op: Change['op'], row: Change['row'], sourceTime?: string): Change =>
    ({ id: 12, tableId: 7, op, key: '', row, raw: row === null ? null : JSON.stringify(row), ...(sourceTime ? { sourceTime } : {}) });
  const parses = (sql: string) => assert.equal(sqlparse(sql, true).length, 1, sql);

  test('CrateDB: every statement of a shaped table parses under CrateDB\'s grammar', () => {
    parses(createTableSql(withExtraColumns(plan, SHAPE), { replicas: '0-1' }));
    parses(shapedUpsertSql(plan, SHAPE, new Set()));
    parses(softDeleteSql(plan, SHAPE));
    const t = softTruncate(plan, SHAPE, '2024-01-02T03:04:05.123456Z');
    parses(t.refresh);
    parses(t.update);
    const hp = historyPlan(table, SHAPE.history!, plan, { jsonColumn: 'object-ignored', textColumn: 'plain' }, { uuid: true });
    parses(createHistorySql(hp, { replicas: '0-1', shards: 4 }));
    parses(historyInsertSql(hp));
  });

  test('CrateDB: the added columns\' values follow the source columns, the applied time is CrateDB\'s clock', () => {
    assert.match(shapedUpsertSql(plan, SHAPE, new Set()), /VALUES \(\?, \?, \?, \?, \?, \?, CURRENT_TIMESTAMP, \?\) ON CONFLICT \("id"\) DO UPDATE SET .*"_deleted_at" = excluded\."_deleted_at"/);
    const at = '2024-01-02T03:04:05.123456Z';
    assert.equal(shapedUpsertArgs(plan, SHAPE, change('U', { id: 5, tenant_id: 42, email: 'h', at: null }, at)), `["5",42,"h",null,null,"${at}","update"]`);
    assert.equal(softDeleteArgs(plan, SHAPE, change('D', { id: 5 }, at)), `["${at}","${at}","delete","5"]`);
    assert.equal(softDeleteArgs(plan, SHAPE, change('D', { id: 5 })), `[null,null,"delete","5"]`, 'no captured time: CrateDB\'s clock (coalesce)');
    assert.deepEqual(softTruncate(plan, SHAPE, at).args, [at, at, 'truncate']);
    assert.match(softTruncate(plan, SHAPE, at).update, /WHERE "_deleted_at" IS NULL$/);
  });

  test('CrateDB: the history is partitioned by the day of the source time and keyed by (event id, day)', () => {
    const hp = historyPlan(table, SHAPE.history!, plan, { jsonColumn: 'object-ignored', textColumn: 'plain' }, { uuid: true });
    const ddl = createHistorySql(hp, { replicas: '0-1', refreshIntervalMs: 500 });
    // the settings every created table gets: the history is searched, not looked up by key
    assert.match(ddl, /\) PARTITIONED BY \("_day"\) WITH \(number_of_replicas = '0-1', refresh_interval = 500, column_policy = 'strict'\)$/);
    assert.match(ddl, /"_day" TIMESTAMP WITH TIME ZONE GENERATED ALWAYS AS date_trunc\('day', coalesce\("_src", 0::TIMESTAMP WITH TIME ZONE\)\)/);
    assert.match(ddl, /PRIMARY KEY \("_event_id", "_day"\)\n\) PARTITIONED BY \("_day"\)/);
    assert.match(historyInsertSql(hp), /ON CONFLICT \("_event_id", "_day"\) DO NOTHING$/);
    assert.equal(historyArgs(hp, change('D', { id: 5 }, '2024-01-02T03:04:05Z')), '["12","delete","2024-01-02T03:04:05Z","5",null,null,null]');
    assert.equal(historyArgs(hp, change('T', null)), '["12","truncate",null,null,null,null,null]');
    assert.equal(historyDay(change('T', null, '2024-01-02T23:59:59.999999Z')), '2024-01-02');
    assert.equal(historyDay(change('T', null)), '1970-01-01');
  });

  test('Postgres: the added values travel inside each row\'s JSON under their column names', () => {
    assert.equal(withFields('{"id": 5}', { _op: 'delete' }), '{"id": 5,"_op":"delete"}');
    assert.equal(withFields(null, { _op: 'truncate' }), '{"_op":"truncate"}');
    assert.equal(withFields('{}', { a: 1 }), '{"a":1}');
    const json = JSON.parse(stateRowJson(SHAPE, change('D', { id: 5 }, '2024-01-02T03:04:05Z')));
    assert.deepEqual(json, { id: 5, _deleted_at: '2024-01-02T03:04:05Z', _src: '2024-01-02T03:04:05Z', _op: 'delete' });
    assert.deepEqual(JSON.parse(stateRowJson(SHAPE, change('I', { id: 5 }))), { id: 5, _src: null, _op: 'insert' }, 'an upsert leaves the deletion time out (NULL)');
  });
});
