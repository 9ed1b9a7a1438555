import { test } from 'node:test';
import assert from 'node:assert/strict';
import { keyOf, parseRow } from '../../src/core/change.js';
import { OutboxChange, readRowText, scanRow } from '../../src/source/row-text.js';

/** What the outbox gave before: the whole row parsed losslessly. */
function parsed(text: string, keys: string[]): { key: string; columns: string[] } {
  const row = parseRow(text);
  return { key: keyOf(row, keys), columns: Object.keys(row) };
}

function same(text: string, keys: string[], prev?: readonly string[]): void {
  const want = parsed(text, keys);
  const got = readRowText(text, keys, prev);
  assert.equal(got.key, want.key, `key of ${text}`);
  assert.deepEqual(new Set(got.columns), new Set(want.columns), `names of ${text}`);
}

test('the key and names read from a row image equal those of the parsed row', () => {
  const rows = [
    '{"id": 1, "v": "a"}',
    '{"k": 159, "id": 33159, "day": "2024-06-08", "qty": 99478, "flag": true, "name": "4751", "attrs": {"n": 33159, "s": "x0", "u": [1, {"}": "]"}]}, "price": 321.14, "ratio": 7105.5, "created": "2024-01-01T13:48:58.501+00:00"}',
    '{"id": -0, "v": null}',
    '{"id": 0, "v": -0}',
    '{"id": -5, "v": 10}',
    '{"id": -999999999999999, "v": 999999999999999}',
    '{"id": 1234567890123456, "v": -1234567890123456}',
    '{"id": 123456789012345, "v": 1}',
    '{"id": 9007199254740993, "v": 1}',
    '{"id": 12345678901234567890123, "v": 1}',
    '{"id": 1.50, "v": 1}',
    '{"id": 1e3}',
    '{"id": "a \\"quoted\\" \\\\ key\\n", "v": "x"}',
    '{"id": "\\u00e9t\\u00e9 ☃ 𝄞", "v": "\\\\"}',
    '{"id": true}',
    '{"id": null, "v": 2}',
    '{"v": 2}',
    '{"id": [1, 2], "v": 2}',
    '{"id": {"a": 1}, "v": 2}',
    '{}',
    '{ "id" : 7 , "v" : [ ] }',
    '{"a\\"b": 1, "id": 3}',
    '{"id": 1, "id": 2}',
    '{"id": "x\\\\", "v": "y\\\\\\""}',
    '{"big": 123456789012345678901234567890.123456789, "id": 5}',
  ];
  for (const text of rows) {
    same(text, ['id']);
    same(text, ['id', 'v']);
    same(text, ['v', 'id']);
  }
});

test('member names equal to the previous row\'s are shared, different ones are not', () => {
  const a = readRowText('{"id": 1, "v": "a"}', ['id']);
  const b = readRowText('{"id": 2, "v": "b"}', ['id'], a.columns);
  assert.equal(b.columns, a.columns);
  const c = readRowText('{"id": 3, "v": "c", "w": 1}', ['id'], a.columns);
  assert.notEqual(c.columns, a.columns);
  assert.deepEqual(c.columns, ['id', 'v', 'w']);
  const d = readRowText('{"id": 4}', ['id'], c.columns);
  assert.deepEqual(d.columns, ['id']);
  const e = readRowText('{"id": 5, "vv": 1}', ['id'], a.columns);
  assert.deepEqual(e.columns, ['id', 'vv']);
  assert.deepEqual(a.columns, ['id', 'v']);
});

test('text the scan does not answer for is left to the parser', () => {
  for (const text of ['[1]', '"x"', '{"id": 1', '{"id": 1} x', '{"id" 1}', '{"id": 1.5}', '{"id": 1, "id": 1}']) {
    assert.equal(scanRow(text, ['id']), null, text);
  }
});

test('random row images: the key and names equal those of the parsed row', () => {
  let seed = 42;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const strings = ['', 'a', '"', '\\', '\\"', '}', ']', ',', ':', '{', 'é', '\n', '\u0001', '𝄞', ' '];
  const str = () => {
    let s = '';
    for (let i = rnd(4); i > 0; i--) s += strings[rnd(strings.length)];
    return s;
  };
  const value = (depth: number): unknown => {
    switch (rnd(depth > 2 ? 6 : 8)) {
      case 0: return null;
      case 1: return rnd(2) === 0;
      case 2: return rnd(1_000_000) - 500_000;
      case 3: return str();
      case 4: return rnd(100000) / 100;
      case 5: return `__BIG${rnd(3)}__`;
      case 6: return Array.from({ length: rnd(3) }, () => value(depth + 1));
      default: return Object.fromEntries(Array.from({ length: rnd(3) }, () => [str(), value(depth + 1)]));
    }
  };
  const bigs = ['9007199254740993', '-123456789012345678', '0.1000000000000000000001'];
  let prev: readonly string[] | undefined;
  for (let i = 0; i < 3000; i++) {
    const row: Record<string, unknown> = {};
    for (const name of ['id', 'k', 'v', str(), 'w']) if (rnd(5) > 0) row[name] = value(0);
    const text = JSON.stringify(row, null, rnd(2) === 0 ? undefined : 1).replace(/"__BIG(\d)__"/g, (_m, d: string) => bigs[Number(d)]);
    const keys = rnd(2) === 0 ? ['id'] : ['k', 'id'];
    same(text, keys, prev);
    prev = readRowText(text, keys, prev).columns;
  }
});

test('an outbox change parses its row only when asked, losslessly', () => {
  const c = new OutboxChange(1, 1, 'U', '[{"n":"1"}]', '{"id": 1, "n": 123456789012345678901}', ['id', 'n']);
  assert.equal(String(c.row!.n), '123456789012345678901');
  assert.equal(c.row, c.row);
  assert.equal(new OutboxChange(2, 1, 'T', '', null, undefined).row, null);
});
