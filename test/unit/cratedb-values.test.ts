import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parse as losslessParse } from 'lossless-json';
import { LosslessNumber, parseRow, type Change, type ColumnInfo, type TableInfo } from '../../src/core/change.js';
import { planTable, type PlanOptions } from '../../src/sink/cratedb/column-types.js';
import { toJson } from '../../src/sink/cratedb/json-text.js';
import { decodeJsonColumn, deleteArgs, encodeJsonColumn, objectKeepsNumber, upsertArgs, ValueRejected } from '../../src/sink/cratedb/row-values.js';

function col(name: string, baseType: string, more: Partial<ColumnInfo> = {}): ColumnInfo {
  return { name, type: baseType, baseType, baseFormatted: more.baseFormatted ?? baseType, dims: 0, typtype: 'b', notNull: false, ...more };
}

function plan(columns: ColumnInfo[], keys: string[], opts: PlanOptions = { jsonColumn: 'object-ignored', textColumn: 'plain' }) {
  const t: TableInfo = { id: 1, relid: 1, sourceSchema: 'public', sourceTable: 't', targetSchema: 'doc', targetTable: 't', keyColumns: keys, columns };
  return planTable(t, opts, { uuid: true });
}

let nextId = 1;
function change(raw: string, op: Change['op'] = 'I'): Change {
  return { id: nextId++, tableId: 1, op, key: '', row: parseRow(raw), raw };
}

describe('JSON text', () => {
  test('a LosslessNumber is written as its exact digits, everything else as JSON.stringify would', () => {
    const v = { big: new LosslessNumber('123456789012345678901234567890'), n: 1.5, s: 'a"b\n', a: [null, true, new LosslessNumber('0.30000000000000004')], o: {} };
    assert.equal(toJson(v), '{"big":123456789012345678901234567890,"n":1.5,"s":"a\\"b\\n","a":[null,true,0.30000000000000004],"o":{}}');
    assert.equal(toJson(undefined), 'null');
  });
});

describe('upsert parameters', () => {
  test('bigint and numeric travel as exact strings, floats as numbers, NaN and Infinity as strings', () => {
    const p = plan([col('id', 'int8'), col('num', 'numeric', { baseFormatted: 'numeric(38,10)' }), col('f', 'float8'), col('r', 'float4'), col('i', 'int4')], ['id']);
    const args = upsertArgs(p, change('{"id": 9223372036854775807, "num": 1234567890123456789012345678.0123456789, "f": 0.30000000000000004, "r": "NaN", "i": -2147483648}'));
    assert.equal(args, '["9223372036854775807","1234567890123456789012345678.0123456789",0.30000000000000004,"NaN",-2147483648]');
    const inf = upsertArgs(p, change('{"id": 1, "num": "NaN", "f": "-Infinity", "r": "Infinity", "i": null}'));
    assert.equal(inf, '["1","NaN","-Infinity","Infinity",null]');
  });

  test('numeric without precision keeps the number text exactly as Postgres wrote it', () => {
    const p = plan([col('id', 'int4'), col('free', 'numeric')], ['id']);
    assert.equal(upsertArgs(p, change('{"id": 1, "free": 1.50}')), '[1,"1.50"]');
    assert.equal(upsertArgs(p, change('{"id": 2, "free": 0.00000015}')), '[2,"0.00000015"]');
  });

  test('a numeric key stored as text is written in one canonical form, as Postgres compares it', () => {
    const p = plan([col('k', 'numeric'), col('v', 'text')], ['k']);
    assert.equal(upsertArgs(p, change('{"k": 1.50, "v": "x"}')), '["1.5","x"]');
    assert.equal(deleteArgs(p, change('{"k": 1.500}', 'D')), '["1.5"]');
    assert.equal(deleteArgs(p, change('{"k": 10}', 'D')), '["10"]');
  });

  test('json objects keep 64-bit integers and doubles exactly; arrays, scalars and JSON null arrive wrapped and decode back', () => {
    const p = plan([col('id', 'int4'), col('js', 'jsonb'), col('docs', 'jsonb', { dims: 1 })], ['id']);
    const args = upsertArgs(p, change('{"id": 1, "js": {"big": 9223372036854775807, "f": 0.30000000000000004, "x": 1.50, "": "empty key", "_id": 1}, "docs": [{"a": 1}, [1, 2], "s"]}'));
    assert.equal(args, '[1,{"big":9223372036854775807,"f":0.30000000000000004,"x":1.5,"":"empty key","_id":1},[{"a":1},{"_value":[1,2]},{"_value":"s"}]]');
    for (const v of [[1, 'x'], 'just a string', 42, null, true, { _value: 1 }, { _value: 1, other: 2 }, {}]) {
      assert.deepEqual(decodeJsonColumn(encodeJsonColumn(v as never)), v);
    }
    assert.deepEqual(encodeJsonColumn({ _value: 1 }), { _value: { _value: 1 } });
    assert.equal(decodeJsonColumn(null), null);
  });

  test('a json number an OBJECT would round or refuse is refused before it is sent, naming crate.jsonColumn', () => {
    const p = plan([col('id', 'int4'), col('js', 'jsonb')], ['id']);
    for (const n of ['123456789012345678901234567890', '-9223372036854775809', '0.1000000000000000000000000001', '1' + '0'.repeat(400), '123456789012345678901234567890.5']) {
      assert.throws(() => upsertArgs(p, change(`{"id": 1, "js": {"a": [{"n": ${n}}]}}`)), (e: unknown) => e instanceof ValueRejected && /crate\.jsonColumn/.test(e.message), n);
    }
    for (const n of ['9223372036854775807', '-9223372036854775808', '0.1', '1.50', '1e-7', '0.00000015', '-0.0', '1.7976931348623157e308', '5e-324']) {
      assert.ok(objectKeepsNumber(n), n);
    }
    assert.equal(objectKeepsNumber('1e400'), false);
    // as text, nothing is refused
    const t = plan([col('id', 'int4'), col('js', 'jsonb')], ['id'], { jsonColumn: 'text', textColumn: 'plain' });
    assert.equal(upsertArgs(t, change('{"id": 1, "js": 0.1000000000000000000000000001}')), '[1,"0.1000000000000000000000000001"]');
  });

  test('json as text, composite values and arrays of text', () => {
    const p = plan([col('id', 'int4'), col('js', 'jsonb'), col('cmp', 'other', { typtype: 'c' }), col('tags', 'text', { dims: 1 })], ['id'], { jsonColumn: 'text', textColumn: 'plain' });
    const args = upsertArgs(p, change('{"id": 1, "js": [1, {"b": 12345678901234567890}], "cmp": {"f1": 1, "f2": "a"}, "tags": ["a", null, "😀"]}'));
    assert.equal(args, '[1,"[1,{\\"b\\":12345678901234567890}]","{\\"f1\\":1,\\"f2\\":\\"a\\"}",["a",null,"😀"]]');
  });

  test('a point becomes [lon, lat], also inside arrays', () => {
    const p = plan([col('id', 'int4'), col('pt', 'point'), col('pts', 'point', { dims: 1 })], ['id']);
    assert.equal(upsertArgs(p, change('{"id": 1, "pt": "(1.5,-2.25)", "pts": ["(1,2)", null]}')), '[1,[1.5,-2.25],[[1,2],null]]');
    assert.throws(() => upsertArgs(p, change('{"id": 1, "pt": "(NaN,1)", "pts": null}')), ValueRejected);
  });

  test('timestamps CrateDB cannot hold are refused with the reason; others pass as they are', () => {
    const p = plan([col('id', 'int4'), col('ts', 'timestamp'), col('d', 'date'), col('tz', 'timestamptz')], ['id']);
    assert.equal(upsertArgs(p, change('{"id": 1, "ts": "2024-02-29T23:59:59.123456", "d": "0001-01-01", "tz": "2024-02-29T18:29:59.654321+00:00"}')),
      '[1,"2024-02-29T23:59:59.123456","0001-01-01","2024-02-29T18:29:59.654321+00:00"]');
    for (const bad of ['"infinity"', '"-infinity"', '"0044-03-15T10:00:00 BC"', '"12345-01-01T00:00:00"']) {
      assert.throws(() => upsertArgs(p, change(`{"id": 1, "ts": ${bad}, "d": null, "tz": null}`)), (e: unknown) => e instanceof ValueRejected && /years 1 to 9999/.test(e.message));
    }
    assert.throws(() => upsertArgs(p, change('{"id": 1, "ts": null, "d": "0044-03-15 BC", "tz": null}')), ValueRejected);
  });

  test('a timestamp key with sub-millisecond digits is refused: two keys would become one row', () => {
    const p = plan([col('at', 'timestamptz'), col('v', 'int4')], ['at']);
    assert.equal(upsertArgs(p, change('{"at": "2024-01-01T00:00:00.123000+00:00", "v": 1}')), '["2024-01-01T00:00:00.123000+00:00",1]');
    assert.throws(() => upsertArgs(p, change('{"at": "2024-01-01T00:00:00.123400+00:00", "v": 1}')), /sub-millisecond/);
  });

  test('text over 32,766 bytes is refused in an indexed column, naming the setting, and kept when unindexed', () => {
    const big = 'é'.repeat(20_000);
    const cols = [col('id', 'int4'), col('txt', 'text')];
    assert.throws(() => upsertArgs(plan(cols, ['id']), change(`{"id": 1, "txt": "${big}"}`)), (e: unknown) => e instanceof ValueRejected && /crate\.textColumn/.test(e.message) && /40000 bytes/.test(e.message));
    assert.equal(upsertArgs(plan(cols, ['id'], { jsonColumn: 'object-ignored', textColumn: 'unindexed' }), change(`{"id": 1, "txt": "${big}"}`)).length, 20_000 + 6);
    assert.equal(upsertArgs(plan([col('id', 'int4'), col('b', 'bytea')], ['id']), change(`{"id": 1, "b": "\\\\x${'ab'.repeat(20_000)}"}`)).length, 40_000 + 9);
  });

  test('a NULL key is refused before it is sent', () => {
    const p = plan([col('a', 'int4'), col('b', 'text')], ['a', 'b']);
    assert.throws(() => upsertArgs(p, change('{"a": 1, "b": null}')), /key column "b" is NULL/);
  });

  test('columns missing from an older row image are sent as NULL; columns the plan does not know are ignored', () => {
    const p = plan([col('id', 'int4'), col('added', 'text')], ['id']);
    assert.equal(upsertArgs(p, change('{"id": 1, "dropped": "x"}')), '[1,null]');
  });

  test('delete parameters are the key values in key order, converted like the upsert ones', () => {
    const p = plan([col('v', 'text'), col('b', 'int8'), col('a', 'text')], ['a', 'b']);
    assert.equal(deleteArgs(p, change('{"b": 9007199254740993, "a": "x"}', 'D')), '["x","9007199254740993"]');
  });
});

describe('parameters built from the row text', () => {
  const cols = [
    col('id', 'int8'), col('i', 'int4'), col('num', 'numeric', { baseFormatted: 'numeric(12,2)' }), col('free', 'numeric'), col('f', 'float8'),
    col('t', 'text'), col('b', 'bool'), col('ts', 'timestamptz'), col('d', 'date'), col('js', 'jsonb'), col('u', 'uuid'), col('arr', 'text', { dims: 1 }),
    col('ints', 'int4', { dims: 1 }), col('floats', 'float8', { dims: 1 }), col('nums', 'numeric', { baseFormatted: 'numeric(12,2)', dims: 1 }), col('grid', 'text', { dims: 2 }),
  ];
  const p = plan(cols, ['id', 't']);
  const pick = <T>(xs: readonly T[], r: () => number): T => xs[Math.floor(r() * xs.length)];
  const samples: Record<string, readonly string[]> = {
    id: ['1', '-42', '9007199254740993', '9223372036854775807', 'null'],
    i: ['0', '-2147483648', 'null'],
    num: ['12.30', '0.07', '-1', '"NaN"', '1234567890.12'],
    free: ['1.50', '0.00000015', '123456789012345678901234567890.123', '"Infinity"'],
    f: ['0.30000000000000004', '1.50', '1e+308', '"NaN"', '"-Infinity"', '5e-324'],
    t: ['"plain"', '"quote \\" and \\\\ and \\n"', '"é😀 unicode"', '"\\u0001"', `"${'é'.repeat(20_000)}"`, '""', 'null'],
    b: ['true', 'false', 'null'],
    ts: ['"2024-01-01T00:00:01.5+00:00"', '"2024-02-29T18:29:59.654321+00:00"', '"infinity"', '"0044-03-15T10:00:00+00:00 BC"'],
    d: ['"2024-01-02"', '"0001-01-01"', '"12345-01-01"'],
    js: ['{"n": 1, "s": "x0"}', '{}', '{"a": {"b": [1, 2, {"c": null}]}}', '{"big": 9223372036854775807}', '{"x": 1.50, "y": 0.1}', '{"_value": 1}',
      '[1, 2]', '"s"', '{"n": 123456789012345678901234567890}', '{"k": "with \\" quote"}'],
    u: ['"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"', 'null'],
    arr: ['["a", null, "😀"]', 'null', '[]', '["quote \\" in", "\\\\"]', `["${'é'.repeat(20_000)}"]`],
    ints: ['[1, null, -3]', '[]', 'null'],
    floats: ['[1.50, "NaN", 0.30000000000000004]', '[]'],
    nums: ['[12.30, null]', '[]'],
    grid: ['[["a", "b"], ["c", null]]', '[]'],
  };
  /** a value as CrateDB reads it: numbers by their value where the column is a float, else by their text */
  const normal = (kind: string, v: unknown): unknown => {
    if (v instanceof LosslessNumber) return kind === 'float' ? Number(v.value) : { number: v.value };
    if (Array.isArray(v)) return v.map((x) => normal(kind, x));
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normal(kind, x)]));
    return v;
  };
  const outcome = (f: () => string): unknown => {
    try {
      const args = losslessParseArray(f());
      return args.map((v, i) => normal(p.columns[i].kind, v));
    } catch (err) {
      if (!(err instanceof ValueRejected)) throw err;
      return `rejected: ${err.message}`;
    }
  };

  test('give the values that parsing the row gives, for every kind of column and value (2,000 random rows)', () => {
    let seed = 7;
    const r = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    let parses = 0;
    for (let n = 0; n < 2000; n++) {
      // the keys and a few other columns (so that most rows can be read from their text), or all of them
      const few = n % 4 !== 0;
      const members = cols.filter((c) => (few ? c.name === 'id' || c.name === 't' || r() < 0.15 : r() > 0.05)).map((c) => `"${c.name}": ${pick(samples[c.name], r)}`);
      const raw = `{${members.join(', ')}}`;
      // the parsing path: every number exact, as a plan that needs exact numbers reads rows
      const parsed: Change = { id: n, tableId: 1, op: 'U', key: '', row: losslessParseRow(raw), raw: null };
      const counted = (op: Change['op']): Change => ({ id: n, tableId: 1, op, key: '', get row() { parses++; return parseRow(raw); }, raw });
      assert.deepEqual(outcome(() => upsertArgs(p, counted('U'))), outcome(() => upsertArgs(p, parsed)), raw.slice(0, 300));
      assert.deepEqual(outcome(() => deleteArgs(p, counted('D'))), outcome(() => deleteArgs(p, parsed)), raw.slice(0, 300));
    }
    // most rows took the text path: the comparison above covers it
    assert.ok(parses < 2000, `${parses} of 4,000 parameter rows parsed their row`);
  });

  test('a numeric value is sent as Postgres wrote it, without the row being parsed', () => {
    const q = plan([col('id', 'int4'), col('price', 'numeric', { baseFormatted: 'numeric(12,2)' }), col('js', 'jsonb')], ['id']);
    const c: Change = { id: 1, tableId: 1, op: 'U', key: '', get row(): never { throw new Error('the row was parsed'); }, raw: '{"id": 1, "price": 12.30, "js": {"n": 5}}' };
    assert.equal(upsertArgs(q, c), '[1,"12.30",{"n": 5}]');
    assert.equal(deleteArgs(q, c), '[1]');
  });
});

function losslessParseRow(raw: string): Change['row'] {
  return losslessParse(raw, null, (t: string) => new LosslessNumber(t)) as Change['row'];
}

function losslessParseArray(text: string): unknown[] {
  return losslessParse(text, null, (t: string) => new LosslessNumber(t)) as unknown[];
}
