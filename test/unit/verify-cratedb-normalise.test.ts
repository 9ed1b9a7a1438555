// The CrateDB target's normalisation (pure): a source row and the answer a real CrateDB 6.4.3 gave
// for the same row hash equal; what CrateDB cannot hold is forgiven, nothing else; values the sink
// refuses map to fixed markers; keys convert the way the sink writes them.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRow, type ColumnInfo, type JsonValue, type TableInfo } from '../../src/core/change.js';
import { parseAnswer } from '../../src/sink/cratedb/crate-client.js';
import { keyTextOf, rowHashOf } from '../../src/verify/canonical.js';
import {
  canonicalIp, crateReadPlan, keyParams, normaliseSourceRow, quantiseGeo, targetKeyJson, targetRow, unstorable, type CrateReadPlan,
} from '../../src/verify/cratedb-normalise.js';
import { lookupSql, rangeSelectSql } from '../../src/verify/cratedb-target.js';

function col(name: string, baseType: string, more: Partial<ColumnInfo> = {}): ColumnInfo {
  return { name, type: baseType, baseType, baseFormatted: more.baseFormatted ?? baseType, dims: 0, typtype: 'b', notNull: false, ...more };
}

function table(columns: ColumnInfo[], keys: string[]): TableInfo {
  return { id: 1, relid: 1, sourceSchema: 'public', sourceTable: 't', targetSchema: 'doc', targetTable: 't', keyColumns: keys, columns };
}

const OPTS = { jsonColumn: 'object-ignored', textColumn: 'plain' } as const;

const COLUMNS = [
  col('id', 'int8'), col('at', 'timestamptz'), col('d', 'date'), col('n', 'numeric', { baseFormatted: 'numeric(38,10)' }), col('nf', 'numeric'),
  col('r', 'float4'), col('f', 'float8'), col('js', 'jsonb'), col('arr', 'jsonb'), col('tags', 'text', { dims: 1 }), col('b', 'bytea'),
  col('u', 'uuid'), col('flag', 'bool'), col('bits', 'bit', { baseFormatted: 'bit(4)' }), col('ip', 'inet'), col('pt', 'point'),
  col('cmp', 'pair', { typtype: 'c' }), col('ch', 'bpchar', { baseFormatted: 'character(3)' }), col('tss', 'timestamptz', { dims: 1 }),
];

/** information_schema.columns data_type as CrateDB 6.4.3 answers for the sink's DDL of COLUMNS */
const TYPES = new Map(Object.entries({
  id: 'bigint', at: 'timestamp with time zone', d: 'timestamp without time zone', n: 'numeric', nf: 'text', r: 'real', f: 'double precision',
  js: 'object', arr: 'object', tags: 'text_array', b: 'text', u: 'uuid', flag: 'boolean', bits: 'bit', ip: 'ip', pt: 'geo_point', cmp: 'text',
  ch: 'character', tss: 'timestamp with time zone_array',
}));

// A source row as to_jsonb writes it under verify's output settings …
const SOURCE = String.raw`{"id": 9007199254740993, "at": "2024-02-29T18:29:59.123456+00:00", "d": "2024-02-29", "n": 0.0000001500, "nf": 1.50,
  "r": 0.1, "f": 0.30000000000000004, "js": {"b": 1.50, "a": [1, "x", null], "big": 9223372036854775807}, "arr": [1, 2],
  "tags": ["a", null, "😀"], "b": "\\x00ff10", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "flag": true, "bits": "0101",
  "ip": "::ffff:1.2.3.4", "pt": "(13.405,52.52)", "cmp": {"f1": 1.50, "f2": "a"}, "ch": "ab ", "tss": ["1969-12-31T23:59:59.9999+00:00", null]}`;
// … and what CrateDB answered for it (SELECT of plan.columns' expressions).
const CRATE = String.raw`["9007199254740993", 1709231399123, 1709164800000, "1.500E-7", "1.50", 0.1, 0.30000000000000004,
  {"a": [1, "x", null], "b": 1.5, "big": 9223372036854775807}, {"_value": [1, 2]}, ["a", null, "😀"], "\\x00ff10",
  "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", true, "B'0101'", "1.2.3.4", [13.404999962076545, 52.51999998930842],
  "{\"f1\":1.50,\"f2\":\"a\"}", "ab ", [-1, null]]`;

function plan(columns = COLUMNS, keys = ['id'], types: ReadonlyMap<string, string> | null | undefined = TYPES): CrateReadPlan {
  return crateReadPlan(table(columns, keys), OPTS, types);
}

const crateRow = (p: CrateReadPlan, text = CRATE) => targetRow(p, parseAnswer(text) as JsonValue[]);

describe('rows', () => {
  test('a source row and CrateDB\'s answer for it hash equal, every mapped type included', () => {
    const p = plan();
    const source = normaliseSourceRow(p, parseRow(SOURCE));
    const target = crateRow(p);
    assert.deepEqual(target, source);
    assert.equal(rowHashOf(target), rowHashOf(source));
    assert.equal(keyTextOf(source, ['id']), keyTextOf(target, ['id']));
  });

  test('what CrateDB holds differently is forgiven, any other change is not', () => {
    const p = plan();
    const source = rowHashOf(normaliseSourceRow(p, parseRow(SOURCE)));
    // the stored document's original point instead of the doc value; the same timestamp without microseconds
    assert.equal(rowHashOf(crateRow(p, CRATE.replace('13.404999962076545, 52.51999998930842', '13.405, 52.52'))), source);
    assert.equal(rowHashOf(normaliseSourceRow(p, parseRow(SOURCE.replace('18:29:59.123456', '18:29:59.123')))), source);
    for (const [from, to] of [['1709231399123', '1709231399124'], ['"1.500E-7"', '"1.501E-7"'], ['"ab "', '"ab"'], ['"1.2.3.4"', '"1.2.3.5"'],
      ['{"_value": [1, 2]}', '{"_value": [2, 1]}'], ['"B\'0101\'"', '"B\'0111\'"'], ['0.1,', '0.2,'], ['[-1, null]', '[-1]']]) {
      assert.notEqual(rowHashOf(crateRow(p, CRATE.replace(from, to))), source, `${from} → ${to}`);
    }
  });

  test('a column the target lacks is read as NULL, and the row then differs only if the source has a value there', () => {
    const types = new Map(TYPES);
    types.delete('tags');
    const p = plan(COLUMNS, ['id'], types);
    assert.deepEqual(p.missing, ['tags']);
    assert.equal(p.columns.find((c) => c.info.name === 'tags')?.select, 'NULL');
    const row = parseRow(SOURCE);
    row.tags = null;
    assert.equal(normaliseSourceRow(p, row).tags, null);
  });

  test('json follows the target column as created: TEXT holds the JSON text, compared parsed', () => {
    const types = new Map(TYPES);
    types.set('js', 'text');
    const p = plan(COLUMNS, ['id'], types);
    const js = p.columns.find((c) => c.info.name === 'js')!;
    assert.equal(js.plan.kind, 'json-text');
    const source = normaliseSourceRow(p, parseRow(SOURCE));
    const answer = parseAnswer(CRATE) as JsonValue[];
    answer[7] = '{"big":9223372036854775807,"a":[1,"x",null],"b":1.50}';
    assert.equal(rowHashOf(targetRow(p, answer)), rowHashOf(source));
  });

  test('values the sink refuses become fixed markers, without throwing, that no CrateDB answer equals', () => {
    const p = plan();
    const row = parseRow(SOURCE);
    Object.assign(row, { at: 'infinity', d: '0044-03-15 BC', n: 'NaN', js: { x: parseRow('{"v": 0.1000000000000000000001}').v }, pt: '(NaN,1)' });
    const out = normaliseSourceRow(p, row);
    assert.deepEqual(out.at, unstorable('infinity'));
    assert.deepEqual(out.d, unstorable('0044-03-15 BC'));
    assert.equal(out.n, 'NaN');
    assert.deepEqual(Object.keys(out.js as object), ['value CrateDB cannot hold']);
    assert.deepEqual(Object.keys(out.pt as object), ['value CrateDB cannot hold']);
    assert.notEqual(rowHashOf(out), rowHashOf(crateRow(p)));
  });

  test('a sub-millisecond timestamp key stays apart from the millisecond key CrateDB could hold', () => {
    const p = plan([col('at', 'timestamptz'), col('v', 'int4')], ['at'], new Map([['at', 'timestamp with time zone'], ['v', 'integer']]));
    const exact = normaliseSourceRow(p, parseRow('{"at": "2024-01-01T00:00:00.123+00:00", "v": 1}'));
    const micro = normaliseSourceRow(p, parseRow('{"at": "2024-01-01T00:00:00.123456+00:00", "v": 1}'));
    assert.equal(exact.at, Date.UTC(2024, 0, 1, 0, 0, 0, 123));
    assert.notEqual(keyTextOf(micro, ['at']), keyTextOf(exact, ['at']));
    assert.equal(keyTextOf(exact, ['at']), keyTextOf(targetRow(p, [Date.UTC(2024, 0, 1, 0, 0, 0, 123), 1]), ['at']));
  });

  test('real compares at single precision, double at double; NaN and infinities as CrateDB writes them', () => {
    const p = plan([col('id', 'int4'), col('r', 'float4'), col('f', 'float8')], ['id'], new Map([['id', 'integer'], ['r', 'real'], ['f', 'double precision']]));
    const src = normaliseSourceRow(p, parseRow('{"id": 1, "r": 3.4028235e+38, "f": "-Infinity"}'));
    assert.deepEqual(src, targetRow(p, parseAnswer('[1, 3.4028235E38, "-Infinity"]') as JsonValue[]));
    const nan = normaliseSourceRow(p, parseRow('{"id": 1, "r": "NaN", "f": -0}'));
    assert.deepEqual(nan, targetRow(p, [1, 'NaN', -0]));
  });
});

describe('values CrateDB writes its own way', () => {
  test('IP addresses: RFC 5952, v4-mapped as IPv4, embedded IPv4 as hex (CrateDB 6.4.3 answers)', () => {
    assert.equal(canonicalIp('::ffff:1.2.3.4'), '1.2.3.4');
    assert.equal(canonicalIp('::1.2.3.4'), '::102:304');
    assert.equal(canonicalIp('::ffff:0:0'), '0.0.0.0');
    assert.equal(canonicalIp('2001:0DB8:0000:0000:0000:0000:0000:0001'), '2001:db8::1');
    assert.equal(canonicalIp('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1');
    assert.equal(canonicalIp('10.0.0.1'), '10.0.0.1');
    assert.equal(canonicalIp('10.0.0.0/8'), '10.0.0.0/8');
  });

  test('geo points are quantised as Lucene encodes them, idempotently (CrateDB 6.4.3 doc values)', () => {
    assert.deepEqual(quantiseGeo(13.405, 52.52), [13.404999962076545, 52.51999998930842]);
    assert.deepEqual(quantiseGeo(180, 90), [179.99999991618097, 89.99999995809048]);
    assert.deepEqual(quantiseGeo(-180, -90), [-180, -90]);
    for (let i = 0; i < 1000; i++) {
      const q = quantiseGeo(Math.random() * 360 - 180, Math.random() * 180 - 90);
      assert.deepEqual(quantiseGeo(...q), q);
    }
  });
});

describe('keys', () => {
  const keyed = () => plan([col('region', 'text'), col('at', 'timestamptz'), col('d', 'date'), col('v', 'int4')], ['region', 'at', 'd'],
    new Map([['region', 'text'], ['at', 'timestamp with time zone'], ['d', 'timestamp without time zone'], ['v', 'integer']]));

  test('a target key is written as a jsonb-like object Postgres casts back into the source types', () => {
    const p = keyed();
    const row = targetRow(p, ['eu', Date.UTC(2024, 0, 1, 0, 0, 0, 123), Date.UTC(2024, 1, 29), 7]);
    assert.equal(targetKeyJson(p, row), '{"d": "2024-02-29", "at": "2024-01-01T00:00:00.123Z", "region": "eu"}');
    const big = plan();
    assert.equal(targetKeyJson(big, crateRow(big)), '{"id": 9007199254740993}');
  });

  test('keys from either side become the values the sink wrote; a key the sink refuses is not looked up, and bounds floor it', () => {
    const p = keyed();
    const ms = Date.UTC(2024, 0, 1, 0, 0, 0, 123);
    const day = Date.UTC(2024, 1, 29);
    assert.deepEqual(keyParams(p, '{"d": "2024-02-29", "at": "2024-01-01T05:30:00.123+05:30", "region": "eu"}', 'lookup'), ['eu', ms, day]);
    assert.deepEqual(keyParams(p, '{"d": "2024-02-29", "at": "2024-01-01T00:00:00.123Z", "region": "eu"}', 'lookup'), ['eu', ms, day]);
    assert.equal(keyParams(p, '{"d": "2024-02-29", "at": "2024-01-01T00:00:00.123456+00:00", "region": "eu"}', 'lookup'), null);
    assert.deepEqual(keyParams(p, '{"d": "2024-02-29", "at": "2024-01-01T00:00:00.123456+00:00", "region": "eu"}', 'bound'), ['eu', ms, day]);
    assert.deepEqual(keyParams(p, '{"d": "infinity", "at": "-infinity", "region": "eu"}', 'bound'), ['eu', -8.64e15, 8.64e15]);
    assert.deepEqual(keyParams(plan(), '{"id": 9007199254740993}', 'lookup'), ['9007199254740993']);
  });

  test('UUID and BIT keys are ordered and bounded by their text; lookups compare natively', () => {
    const p = plan([col('u', 'uuid'), col('b', 'bit', { baseFormatted: 'bit(4)' }), col('v', 'int8')], ['u', 'b'],
      new Map([['u', 'uuid'], ['b', 'bit'], ['v', 'bigint']]));
    const key = '{"b": "0101", "u": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"}';
    const q = rangeSelectSql(p, { after: { text: '', json: key }, upTo: null }, 10);
    assert.equal(q.sql, `SELECT "u", "b", "v"::TEXT FROM "doc"."t" WHERE (format('%s', "u") >= ? AND (format('%s', "u") > ? OR (format('%s', "u") = ? AND format('%s', "b") > ?))) ORDER BY format('%s', "u"), format('%s', "b") LIMIT ?`);
    assert.deepEqual(q.params, ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', "B'0101'", 10]);
    const l = lookupSql(p, [keyParams(p, key, 'lookup')!]);
    assert.equal(l.sql, 'SELECT "u", "b", "v"::TEXT FROM "doc"."t" WHERE ("u" = ? AND "b" = ?)');
    assert.deepEqual(l.params, ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '0101']);
    const single = lookupSql(plan(), [['1'], ['2']]);
    assert.deepEqual(single.params, [['1', '2']]);
    assert.match(single.sql, /WHERE "id" = ANY\(\?\)$/);
    // CrateDB 6.4.3 refuses `u = ANY(?)` unless the UUIDs come in its internal order
    const uuids = plan([col('u', 'uuid'), col('v', 'text')], ['u'], new Map([['u', 'uuid'], ['v', 'text']]));
    assert.match(lookupSql(uuids, [['b'], ['a']]).sql, /WHERE \("u" = \?\) OR \("u" = \?\)$/);
  });

  test('a table that does not exist reads as empty; one without a key column is refused', () => {
    assert.equal(plan(COLUMNS, ['id'], null).exists, false);
    const types = new Map(TYPES);
    types.delete('id');
    assert.throws(() => plan(COLUMNS, ['id'], types), /lacks key column\(s\) id/);
  });
});
