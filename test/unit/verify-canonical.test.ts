// Pure parts of verify: the canonical form of client-side hashes, the normalisation helpers, the
// key-range SQL builders, the diff bookkeeping and the report text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LosslessNumber, parseRow } from '../../src/core/change.js';
import { byteaAs, canonicalJson, epochMillis, exactNumberText, md5Hex, rangeDigestOf, rowHashOf } from '../../src/verify/canonical.js';
import { DiffSet } from '../../src/verify/diff-set.js';
import { lexicographicCondition, pgRangeCondition } from '../../src/verify/key-range.js';
import { differencesOf, formatTableReport, reportHeader, reportLayout, type TableReport } from '../../src/verify/report.js';
import type { KeyRef } from '../../src/verify/verify-target.js';

test('exact number text drops exponent, sign of zero and insignificant zeros, and keeps every digit', () => {
  assert.equal(exactNumberText('1.50'), '1.5');
  assert.equal(exactNumberText('-0.000'), '0');
  assert.equal(exactNumberText('1E+2'), '100');
  assert.equal(exactNumberText('1.25e-3'), '0.00125');
  assert.equal(exactNumberText('007'), '7');
  assert.equal(exactNumberText(new LosslessNumber('9223372036854775807')), '9223372036854775807');
  assert.equal(exactNumberText('1234567890123456789012345678.0123456789'), '1234567890123456789012345678.0123456789');
  assert.equal(exactNumberText(1e21), '1000000000000000000000');
  assert.throws(() => exactNumberText('NaN'));
});

test('canonical JSON sorts keys at every depth and writes numbers exactly, so equal values hash equal', () => {
  const a = parseRow('{"b": 1.50, "a": {"y": [1, null, "x"], "x": 12345678901234567890123}}');
  const b = parseRow('{"a": {"x": 1.2345678901234567890123e22, "y": [1.0, null, "x"]}, "b": 1.5}');
  assert.equal(canonicalJson(a), '{"a":{"x":12345678901234567890123,"y":[1,null,"x"]},"b":1.5}');
  assert.equal(rowHashOf(a), rowHashOf(b));
  assert.notEqual(rowHashOf(a), rowHashOf({ ...a, b: 1.51 }));
  assert.notEqual(rowHashOf({ k: null }), rowHashOf({ k: 'null' }));
});

test('a range digest is md5 over the row hashes in order, md5 of nothing for an empty range (as in SQL)', () => {
  assert.equal(rangeDigestOf([]), md5Hex(''));
  assert.equal(rangeDigestOf(['ab', 'cd']), md5Hex('abcd'));
  assert.notEqual(rangeDigestOf(['ab', 'cd']), rangeDigestOf(['cd', 'ab']));
});

test('epoch milliseconds of Postgres JSON date-times: offsets applied, microseconds cut towards the past', () => {
  assert.equal(epochMillis('2024-02-29T18:29:59.654321+00:00'), Date.UTC(2024, 1, 29, 18, 29, 59, 654));
  assert.equal(epochMillis('2024-02-29T23:59:59.654999+05:30'), Date.UTC(2024, 1, 29, 18, 29, 59, 654));
  assert.equal(epochMillis('1900-01-01T00:00:00+00:19:32'), Date.UTC(1899, 11, 31, 23, 40, 28));
  assert.equal(epochMillis('1969-12-31T23:59:59.9999'), -1);
  assert.equal(epochMillis('2024-02-29'), Date.UTC(2024, 1, 29));
  assert.equal(epochMillis('0044-03-15T00:00:00'), new Date('0044-03-15T00:00:00Z').getTime());
  assert.equal(epochMillis('infinity'), null);
  assert.equal(epochMillis('0044-03-15 BC'), null);
});

test('bytea text from Postgres as hex or base64', () => {
  assert.equal(byteaAs('\\x00FF10', 'hex'), '00ff10');
  assert.equal(byteaAs('\\x00ff10', 'base64'), 'AP8Q');
});

test('the lexicographic key condition spells out row comparison with parameters in order', () => {
  const one = lexicographicCondition(['id'], '>', [5]);
  assert.deepEqual(one, { sql: '"id" > ?', params: [5] });
  const two = lexicographicCondition(['a', 'b'], '>', [1, 'x']);
  assert.equal(two.sql, '("a" >= ? AND ("a" > ? OR ("a" = ? AND "b" > ?)))');
  assert.deepEqual(two.params, [1, 1, 1, 'x']);
  const three = lexicographicCondition(['a', 'b', 'c'], '<=', [1, 2, 3], { placeholder: (i) => `$${i + 1}` });
  assert.equal(three.sql, '("a" <= $1 AND ("a" < $2 OR ("a" = $3 AND "b" < $4) OR ("a" = $5 AND "b" = $6 AND "c" <= $7)))');
  assert.deepEqual(three.params, [1, 1, 1, 2, 1, 2, 3]);
  assert.throws(() => lexicographicCondition(['a', 'b'], '>', [1]));
});

test('the Postgres range condition types its bounds through the table row type and skips NULL keys when keys may be NULL', () => {
  const key = (id: number): KeyRef => ({ text: String(id), json: `{"id": ${id}}` });
  const c = pgRangeCondition({ qualified: '"s"."t"', keyColumns: ['id'], nullableKey: false }, { after: key(1), upTo: key(9) }, 3);
  assert.equal(c.sql, '(t."id") > ((jsonb_populate_record(null::"s"."t", $3::jsonb))."id") and (t."id") <= ((jsonb_populate_record(null::"s"."t", $4::jsonb))."id")');
  assert.deepEqual(c.params, ['{"id": 1}', '{"id": 9}']);
  const open = pgRangeCondition({ qualified: '"s"."t"', keyColumns: ['a', 'b'], nullableKey: true }, { after: null, upTo: null }, 1);
  assert.equal(open.sql, 't."a" is not null and t."b" is not null');
  assert.deepEqual(open.params, []);
});

test('a key found missing in one range and extra in another is kept once, as different; the cap counts the rest', () => {
  const k = (n: number, side = 's'): KeyRef => ({ text: `[${n}]`, json: `{"id": ${n}, "side": "${side}"}` });
  const d = new DiffSet(3);
  d.compare([{ key: k(1), hash: 'a' }, { key: k(2), hash: 'b' }], [{ key: k(2, 't'), hash: 'c' }, { key: k(3, 't'), hash: 'd' }]);
  assert.deepEqual(d.counts(), { missing: 1, extra: 1, different: 1 });
  d.add('extra', k(1, 't'));
  assert.deepEqual(d.counts(), { missing: 0, extra: 1, different: 2 });
  assert.equal(d.keys('different').find((x) => x.text === '[1]')?.json, '{"id": 1, "side": "s"}', 'the source key is kept');
  d.add('missing', k(4));
  assert.equal(d.size, 3);
  assert.equal(d.dropped, 1);
  assert.equal(d.total, 4);
});

test('the text report lists keys up to the limit with how many more, and the outcome of waiting and repair', () => {
  const d = new DiffSet(100);
  for (let i = 1; i <= 5; i++) d.add('missing', { text: `[${i}]`, json: `{"id": ${i}}` });
  const r: TableReport = {
    table: 'public.t', target: 'public.t', equal: false, sourceRows: 10, targetRows: 5, ranges: 2, differingRanges: 1,
    firstPass: { missing: 6, extra: 0, different: 0 }, catchUp: 'caught-up', differences: differencesOf(d, 2), notKept: 0, notes: ['a note'], durationMs: 1234,
  };
  const layout = reportLayout([r, { table: 'public.longer_name', target: 'public.longer_name' }]);
  const lines = formatTableReport(r, layout);
  // a row under the header, each column starting where the header's does
  assert.equal(reportHeader(layout), 'table               result     source rows  target rows  missing    extra  different     time');
  assert.equal(lines[0], 'public.t            DIFFERENT           10            5        5        0          0    1.2 s');
  assert.equal(lines[1], '  1 of 2 key range(s) differed in the walk');
  assert.equal(lines[2], '  missing: {"id": 1} {"id": 2} … and 3 more');
  // a table landing under another name adds the target column
  const renamed = reportLayout([{ table: 'public.t', target: 'other.t' }]);
  assert.equal(reportHeader(renamed), 'table     target   result     source rows  target rows  missing    extra  different     time');
  assert.equal(formatTableReport({ ...r, target: 'other.t', sourceRows: 12_345 }, renamed)[0], 'public.t  other.t  DIFFERENT       12,345            5        5        0          0    1.2 s');
  assert.ok(lines.includes('  1 difference(s) of the first pass did not hold up on re-check (changes in flight, or keys the two sides order differently)'));
  assert.ok(lines.includes('  note: a note'));
});
