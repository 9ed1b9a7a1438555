// pgoutput mode without a database: text → JSON conversion, partial images through coalescing and
// both sinks' statements, WAL positions, settings.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { sqlparse } from '@cratedb/cratedb-sqlparse';
import type { Change, ColumnInfo, TableInfo } from '../../src/core/change.js';
import { loadConfig } from '../../src/core/config.js';
import { ConfigError } from '../../src/core/errors.js';
import { coalesce } from '../../src/drain/coalesce.js';
import { partitionIdentityHolds } from '../../src/source/pgoutput/preflight.js';
import { createLogger } from '../../src/core/logger.js';
import { arrayJson, canonicalJson, columnOrder, numericText, rowJson } from '../../src/source/pgoutput/text-values.js';
import { formatLsn, parseLsn } from '../../src/source/pgoutput/lsn.js';
import { groupPartial, updateColumnsSql as pgUpdateSql } from '../../src/sink/postgres/sql.js';
import { planTable } from '../../src/sink/cratedb/column-types.js';
import { updateColumnsSql as crateUpdateSql } from '../../src/sink/cratedb/sql.js';
import { updateArgs } from '../../src/sink/cratedb/row-values.js';
import { CrateSink } from '../../src/sink/cratedb/cratedb-sink.js';

describe('numbers as numeric_in → numeric_out writes them (what to_jsonb does to float and numeric text)', () => {
  const cases: [string, string | null][] = [
    ['0.30000000000000004', '0.30000000000000004'], ['1e+100', '1' + '0'.repeat(100)], ['1.5e-07', '0.00000015'], ['-0', '0'], ['-0.000', '0.000'],
    ['1.50', '1.50'], ['1E+2', '100'], ['1.50e1', '15.0'], ['0.1e1', '1'], ['3.4028235e+38', '340282350000000000000000000000000000000'], ['-1.25e-2', '-0.0125'],
    ['9223372036854775807', '9223372036854775807'], ['NaN', null], ['Infinity', null], ['-Infinity', null],
  ];
  for (const [text, want] of cases) test(`${text} → ${want}`, () => assert.equal(numericText(text), want));
});

describe('json written as jsonb writes it', () => {
  test('keys by length then bytes, the last duplicate wins, ", " and ": " separators', () => {
    assert.equal(canonicalJson('{"bb":1,"a":2,"a":3,"c":{"y":[],"x":{}}}'), '{"a": 3, "c": {"x": {}, "y": []}, "bb": 1}');
  });
  test('escapes are decoded and written again the jsonb way; numbers go through numeric', () => {
    assert.equal(canonicalJson('["\\u0041\\/\\u00fc", "\\u0001", 1E+2, -0, 1.50, 123456789012345678901234567890]'), '["A/ü", "\\u0001", 100, 0, 1.50, 123456789012345678901234567890]');
  });
  test('scalars and whitespace', () => {
    assert.equal(canonicalJson(' "just a string" '), '"just a string"');
    assert.equal(canonicalJson('null'), 'null');
    assert.throws(() => canonicalJson('{"a" 1}'), SyntaxError);
  });
});

describe('arrays from their text output', () => {
  test('quoted elements, NULL and "NULL", nesting, bounds', () => {
    assert.equal(arrayJson('{"a,b","c\\"d",NULL,"NULL",x,""}', 'text'), '["a,b", "c\\"d", null, "NULL", "x", ""]');
    assert.equal(arrayJson('{{1,2},{3,4}}', 'number'), '[[1, 2], [3, 4]]');
    assert.equal(arrayJson('[0:1]={7,8}', 'number'), '[7, 8]');
    assert.equal(arrayJson('{}', 'number'), '[]');
    assert.equal(arrayJson('{t,f,NULL}', 'bool'), '[true, false, null]');
    assert.equal(arrayJson('{"2024-01-01 00:00:00+00",infinity}', 'timestamptz'), '["2024-01-01T00:00:00+00:00", "infinity"]');
  });
  test('a box array uses ; between elements', () => {
    assert.equal(arrayJson('{(1,1),(0,0);(3,3),(2,2)}', 'text', ';'), '["(1,1),(0,0)", "(3,3),(2,2)"]');
  });
  test('json elements are rewritten', () => {
    assert.equal(arrayJson('{"{\\"b\\": 1, \\"a\\": 2}",NULL}', 'json'), '[{"a": 2, "b": 1}, null]');
  });
});

test('a row lists its columns in jsonb key order and leaves absent (unchanged TOAST) columns out', () => {
  const names = ['id', 'a much longer name', 'n', 'big'];
  const kinds = ['number', 'text', 'number', 'text'] as const;
  assert.equal(rowJson(names, [...kinds], columnOrder(names), ['1', 'x', null, undefined]), '{"n": null, "id": 1, "a much longer name": "x"}');
});

test('WAL positions round-trip', () => {
  assert.equal(formatLsn(parseLsn('16/B374D848')), '16/B374D848');
  assert.ok(parseLsn('1/0') > parseLsn('0/FFFFFFFF'));
  assert.throws(() => parseLsn('nope'), TypeError);
});

const change = (id: number, key: string, op: Change['op'], row: Record<string, unknown> | null, partial = false): Change => {
  const c: Change = { id, tableId: 1, op, key, row: row as Change['row'], raw: row === null ? null : JSON.stringify(row) };
  if (partial) c.partial = true;
  return c;
};

describe('coalescing partial images', () => {
  test('a partial update after a full image of the key in the page gives a full image', () => {
    const [b] = coalesce([change(1, 'k', 'I', { id: 1, a: 'x', big: 'long' }), change(2, 'k', 'U', { id: 1, a: 'y' }, true)]);
    assert.equal(b.upserts.length, 1);
    assert.equal(b.upserts[0].partial, undefined);
    assert.deepEqual(JSON.parse(b.upserts[0].raw!), { id: 1, a: 'y', big: 'long' });
    assert.equal(b.upserts[0].id, 2);
  });
  test('without an earlier image it stays partial; two partial ones merge', () => {
    const [b] = coalesce([change(1, 'k', 'U', { id: 1, a: 'y' }, true), change(2, 'k', 'U', { id: 1, n: 2 }, true)]);
    assert.equal(b.upserts[0].partial, true);
    assert.deepEqual(b.upserts[0].row, { id: 1, a: 'y', n: 2 });
  });
  test('after a delete of the key it is dropped; a full image after it replaces it', () => {
    const [b] = coalesce([change(1, 'k', 'D', { id: 1 }), change(2, 'k', 'U', { id: 1, a: 'y' }, true)]);
    assert.deepEqual(b.deletes.map((c) => c.id), [1]);
    assert.equal(b.upserts.length, 0);
    const [c] = coalesce([change(1, 'k', 'U', { id: 1, a: 'y' }, true), change(2, 'k', 'U', { id: 1, a: 'z', big: 'b' })]);
    assert.equal(c.upserts[0].partial, undefined);
    assert.equal(c.upserts[0].id, 2);
  });
});

function col(name: string, baseType: string): ColumnInfo {
  return { name, type: baseType, baseType, baseFormatted: baseType, dims: 0, typtype: 'b', notNull: name === 'id' };
}
const TABLE: TableInfo = {
  id: 1, relid: 1, sourceSchema: 'public', sourceTable: 't', targetSchema: 'doc', targetTable: 't', keyColumns: ['id'],
  columns: [col('id', 'int8'), col('a', 'text'), col('big', 'text'), col('n', 'numeric')],
};

describe('the Postgres sink updates only the columns of a partial image', () => {
  test('one statement per set of columns', () => {
    const groups = groupPartial(TABLE, [change(1, '1', 'U', { id: 1, a: 'x' }, true), change(2, '2', 'U', { id: 2, n: 1, a: 'y' }, true), change(3, '3', 'U', { id: 3, a: 'z' }, true)]);
    assert.deepEqual(groups.map((g) => [g.columns, g.changes.map((c) => c.id)]), [[['a'], [1, 3]], [['a', 'n'], [2]]]);
    assert.equal(
      pgUpdateSql(TABLE, ['a', 'n'], false),
      'update "doc"."t" as t set "a" = k."a", "n" = k."n" from json_populate_recordset(null::"doc"."t", $1::json) as k where t."id" = k."id"',
    );
  });
});

describe('the CrateDB sink updates only the columns of a partial image', () => {
  const plan = planTable(TABLE, { jsonColumn: 'object-ignored', textColumn: 'plain' }, { uuid: true });
  test('UPDATE … SET … WHERE key = ? parses under CrateDB\'s grammar, with values then key as parameters', () => {
    const cols = plan.columns.filter((c) => c.source === 'a' || c.source === 'n');
    const sql = crateUpdateSql(plan, cols);
    assert.equal(sql, 'UPDATE "doc"."t" SET "a" = ?, "n" = ? WHERE "id" = ?');
    assert.equal(sqlparse(sql, true).length, 1);
    const raw = '{"id": 9007199254740993, "a": "x", "n": 1.50}';
    assert.equal(updateArgs(plan, { id: 1, tableId: 1, op: 'U', key: 'k', row: null, raw, partial: true }, cols), '["x","1.50","9007199254740993"]');
  });

  let server: Server;
  const sockets = new Set<Socket>();
  const bodies: { stmt: string; bulk_args?: unknown[][] }[] = [];
  before(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const reply = (body: unknown) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
        if (req.method === 'GET') return reply({ ok: true, version: { number: '6.4.3' } });
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { stmt: string; bulk_args?: unknown[][] };
        bodies.push(body);
        const s = body.stmt;
        if (s.includes('information_schema.tables')) return reply({ cols: [], rows: [['_id', null]], rowcount: 1 });
        if (s.includes('information_schema.columns')) return reply({ cols: [], rows: [['id', 'bigint'], ['a', 'text'], ['big', 'text'], ['n', 'numeric']], rowcount: 4 });
        if (s.includes('key_column_usage')) return reply({ cols: [], rows: [['id']], rowcount: 1 });
        // the second row of every bulk request is missing in the target: row count 0
        return reply({ cols: [], duration: 1, results: (body.bulk_args ?? []).map((_, i) => ({ rowcount: i === 1 ? 0 : 1 })) });
      });
    });
    server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  });

  test('a page with full and partial images: upserts for the full ones, bulk UPDATEs per column set for the others; a missing row is not a rejection', async () => {
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const opts = { maxRequestRows: 100, maxRequestBytes: 1 << 20, requestsInFlight: 2, requestTimeoutMs: 5_000, replicas: '0-1', refreshIntervalMs: 500, jsonColumn: 'object-ignored' as const, textColumn: 'plain' as const };
    const sink = new CrateSink({ kind: 'cratedb', urls: [url], username: 'crate' }, opts, createLogger('silent'));
    try {
      await sink.start();
      await sink.prepare(TABLE);
      const upserts = [
        change(1, '1', 'U', { id: 1, a: 'full', big: 'b', n: 1 }),
        change(2, '2', 'U', { id: 2, a: 'p' }, true),
        change(3, '3', 'U', { id: 3, a: 'q' }, true),
        change(4, '4', 'U', { id: 4, n: 2, a: 'r' }, true),
      ];
      const { rejected } = await sink.apply([{ table: TABLE, truncate: false, deletes: [], upserts }]);
      assert.deepEqual(rejected, []);
      // the partial updates and the upserts touch other keys, so they go at once, in no set order
      const writes = bodies.filter((b) => b.bulk_args).sort((a, b) => JSON.stringify(a.bulk_args).localeCompare(JSON.stringify(b.bulk_args)));
      assert.deepEqual(writes.map((w) => [w.stmt.split(' ')[0], w.bulk_args]), [
        ['INSERT', [['1', 'full', 'b', '1']]],
        ['UPDATE', [['p', '2'], ['q', '3']]],
        ['UPDATE', [['r', '2', '4']]],
      ]);
      assert.equal(writes[2].stmt, 'UPDATE "doc"."t" SET "a" = ?, "n" = ? WHERE "id" = ?');
    } finally {
      await sink.stop();
    }
  });
});

describe('settings', () => {
  const base = { DATABASE_URL: 'postgres://u@h/db', TARGET_DATABASE_URL: 'postgres://u@h/t' };
  test('defaults: trigger capture, slot and publication pg2crate, warn past 1 GiB', () => {
    const c = loadConfig(base);
    assert.deepEqual([c.capture, c.slotName, c.publicationName, c.slotWarnBytes], ['trigger', 'pg2crate', 'pg2crate', 1024 * 1024 * 1024]);
  });
  test('each is validated and named in the message', () => {
    assert.throws(() => loadConfig({ ...base, PG2CRATE_CAPTURE: 'wal2json' }), (e: unknown) => e instanceof ConfigError && /PG2CRATE_CAPTURE: expected one of trigger, pgoutput/.test(e.message));
    assert.throws(() => loadConfig({ ...base, PG2CRATE_SLOT: 'My-Slot' }), (e: unknown) => e instanceof ConfigError && /^PG2CRATE_SLOT:/.test(e.message));
    assert.throws(() => loadConfig({ ...base, PG2CRATE_PUBLICATION: 'pub; drop' }), (e: unknown) => e instanceof ConfigError && /^PG2CRATE_PUBLICATION:/.test(e.message));
    assert.throws(() => loadConfig({ ...base, PG2CRATE_SLOT_WARN_MB: '0' }), (e: unknown) => e instanceof ConfigError && /^PG2CRATE_SLOT_WARN_MB:/.test(e.message));
    const c = loadConfig({ ...base, PG2CRATE_CAPTURE: 'pgoutput', PG2CRATE_SLOT: 'my_slot', PG2CRATE_SLOT_WARN_MB: '64' });
    assert.deepEqual([c.capture, c.slotName, c.slotWarnBytes], ['pgoutput', 'my_slot', 64 * 1024 * 1024]);
  });
});

test('a partition identifies its rows as its table does: FULL under FULL, else exactly the key columns', () => {
  const leaf = (replident: string, identity: string[] | null) => ({ schema: 'public', name: 'p1', replident, identity });
  // The table has REPLICA IDENTITY FULL: each partition needs FULL (ALTER TABLE on the table does not reach them).
  assert.equal(partitionIdentityHolds('f', ['region', 'id'], leaf('f', null)), true);
  assert.equal(partitionIdentityHolds('f', ['region', 'id'], leaf('d', null)), false, 'no primary key: Postgres refuses its updates');
  assert.equal(partitionIdentityHolds('f', ['region', 'id'], leaf('d', ['id', 'region'])), false);
  // The table is identified by its key: each partition by the same columns, in any order.
  assert.equal(partitionIdentityHolds('d', ['region', 'id'], leaf('d', ['id', 'region'])), true);
  assert.equal(partitionIdentityHolds('i', ['region', 'id'], leaf('i', ['region', 'id'])), true);
  assert.equal(partitionIdentityHolds('d', ['region', 'id'], leaf('i', ['region', 'code'])), false, 'other columns: old rows would come without the key');
  assert.equal(partitionIdentityHolds('d', ['region', 'id'], leaf('d', ['region'])), false);
  assert.equal(partitionIdentityHolds('d', ['id'], leaf('n', null)), false);
  assert.equal(partitionIdentityHolds('d', ['id'], leaf('f', null)), false);
});
