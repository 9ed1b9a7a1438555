import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRow, type Change, type ColumnInfo, type TableInfo } from '../../src/core/change.js';
import { OutboxChange, readRowText, ValuePositions } from '../../src/source/row-text.js';
import { chunkRows, type BulkItem } from '../../src/sink/cratedb/bulk-writer.js';
import { MAX_INDEXED_TEXT_BYTES, planTable } from '../../src/sink/cratedb/column-types.js';
import { toJson } from '../../src/sink/cratedb/json-text.js';
import { allRowsApplied } from '../../src/sink/cratedb/crate-client.js';
import { bulkBody, envelopeBytes, ParamRows } from '../../src/sink/cratedb/param-rows.js';
import { columnValue, deleteArgs, upsertArgs, writeUpsertArgs } from '../../src/sink/cratedb/row-values.js';

let seed = 11;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;

/** A string of random UTF-16 units: ASCII, 2- and 3-byte characters, pairs, and lone or reversed surrogates. */
function randomUnits(n: number): string {
  const units: number[] = [];
  const pick = [() => 0x20 + Math.floor(random() * 0x5f), () => 0x80 + Math.floor(random() * 0x780), () => 0x800 + Math.floor(random() * 0xd000),
    () => 0xe000 + Math.floor(random() * 0x2000), () => 0xd800 + Math.floor(random() * 0x400), () => 0xdc00 + Math.floor(random() * 0x400)];
  while (units.length < n) {
    const r = random();
    if (r < 0.15) units.push(0xd800 + Math.floor(random() * 0x400), 0xdc00 + Math.floor(random() * 0x400)); // a pair
    else units.push(pick[Math.floor(random() * pick.length)]());
  }
  return String.fromCharCode(...units.slice(0, n));
}

describe('parameter rows as bytes', () => {
  test('text is encoded as Buffer.from encodes it: multi-byte, pairs, lone and reversed surrogates, short and long', () => {
    const cases = ['', 'plain', 'é', 'ж€', '日本語', '😀', '𝄞x', 'a\ud800', '\ud800a', '\udc00\ud800', 'x\udbff', '\udfff', 'q"\\\n', '\u0000\u007f\u0080\u07ff\u0800\uffff'];
    for (let i = 0; i < 400; i++) cases.push(randomUnits(1 + Math.floor(random() * (i % 4 === 0 ? 1200 : 40))));
    for (const s of cases) {
      const rows = new ParamRows(1);
      rows.text(s);
      assert.deepEqual(rows.buffer.subarray(0, rows.length), Buffer.from(s, 'utf8'), JSON.stringify(s));
      // and any part of it, as its slice would be (a pair cut in two is two lone surrogates)
      const from = Math.floor(random() * (s.length + 1));
      const to = from + Math.floor(random() * (s.length - from + 1));
      const part = new ParamRows(2);
      part.text(s, from, to);
      assert.deepEqual(part.buffer.subarray(0, part.length), Buffer.from(s.slice(from, to), 'utf8'), `${JSON.stringify(s)} [${from}, ${to})`);
    }
  });

  test('rows survive the buffer growing under them, and a cancelled row leaves nothing behind', () => {
    const rows = new ParamRows(16);
    const want: string[] = [];
    const items = [];
    for (let i = 0; i < 2000; i++) {
      const json = `[${i},${JSON.stringify(randomUnits(i % 7 === 0 ? 600 : 12))}]`;
      if (i % 5 === 0) {
        rows.begin();
        rows.text('[1,"refused');
        rows.cancel();
      }
      items.push(rows.row(json));
      want.push(json);
    }
    assert.deepEqual(items.map((r) => rows.toString(r.start, r.end)), want.map((w) => Buffer.from(w).toString('utf8')));
    // each row is followed by its comma
    for (const r of items) assert.equal(rows.buffer[r.end], 0x2c);
    const part = new ParamRows(4);
    part.begin();
    part.text('[1,');
    const mark = part.length;
    part.text('"half');
    part.cancelTo(mark);
    part.text('2]');
    assert.equal(part.toString(0, part.close()), '[1,2]');
    assert.throws(() => part.cancelTo(-1), RangeError);
  });

  test('a bulk body is the JSON of the statement and exactly the rows given: in order, a subset, out of order, or from two buffers', () => {
    const stmt = 'INSERT INTO "tä"."t😀" ("a") VALUES (?)';
    const a = new ParamRows(8);
    const b = new ParamRows(8);
    const texts = Array.from({ length: 40 }, (_, i) => `[${i},${JSON.stringify(randomUnits(3 + (i % 9) * 40))}]`);
    const inA = texts.slice(0, 30).map((t) => a.row(t));
    const inB = texts.slice(30).map((t) => b.row(t));
    const expect = (rows: string[]) => `{"stmt":${JSON.stringify(stmt)},"bulk_args":[${rows.join(',')}]}`;
    const check = (items: typeof inA, rows: string[]) => {
      const body = bulkBody(stmt, items);
      assert.deepEqual(body, Buffer.from(expect(rows)));
      assert.deepEqual(JSON.parse(body.toString('utf8')).bulk_args, rows.map((r) => JSON.parse(r)));
      assert.equal(body.length, envelopeBytes(stmt) + items.reduce((n, r) => n + r.end - r.start, 0) + Math.max(0, items.length - 1));
    };
    check([], []);
    check(inA, texts.slice(0, 30));
    check(inA.slice(7, 8), texts.slice(7, 8));
    check(inA.slice(3, 17), texts.slice(3, 17));
    check([inA[4], inA[2], inA[3], inA[9]], [texts[4], texts[2], texts[3], texts[9]]);
    check([...inA.slice(25), ...inB, inA[0]], [...texts.slice(25, 30), ...texts.slice(30), texts[0]]);
    check(inA.filter((_, i) => i % 3 !== 1), texts.slice(0, 30).filter((_, i) => i % 3 !== 1));
  });

  test('requests are cut at the byte limit exactly: a request may fill it to the byte, never pass it', () => {
    const stmt = 'S';
    const rows = new ParamRows();
    // rows of 10 bytes in UTF-8 (8 characters): each adds 11 with its comma
    const row = (i: number) => `["é${String(i).padStart(3, '0')}😀"]`;
    assert.equal(Buffer.byteLength(row(1)), 13);
    const items: BulkItem[] = Array.from({ length: 10 }, (_, i) => ({ change: { id: i } as Change, ...rows.row(row(i)) }));
    const per = 14;
    for (const fit of [1, 2, 3, 7]) {
      const exact = envelopeBytes(stmt) + fit * per;
      const cut = chunkRows(stmt, items, { maxRows: 100, maxBytes: exact });
      assert.deepEqual(cut.map((c) => c.length), Array.from({ length: Math.ceil(10 / fit) }, (_, k) => Math.min(fit, 10 - k * fit)));
      // the body holds one comma fewer than rows: the bound is never passed
      for (const c of cut) assert.ok(bulkBody(stmt, c).length <= exact);
      const one = chunkRows(stmt, items, { maxRows: 100, maxBytes: exact - 1 });
      assert.equal(one[0].length, Math.max(1, fit - 1), `limit ${exact - 1}`);
    }
  });
});

function col(name: string, baseType: string, more: Partial<ColumnInfo> = {}): ColumnInfo {
  return { name, type: baseType, baseType, baseFormatted: more.baseFormatted ?? baseType, dims: 0, typtype: 'b', notNull: false, ...more };
}

describe('parameter rows written from the row text', () => {
  const t: TableInfo = {
    id: 1, relid: 1, sourceSchema: 'public', sourceTable: 't', targetSchema: 'doc', targetTable: 't', keyColumns: ['id'],
    columns: [col('id', 'int8'), col('name', 'text'), col('n', 'numeric', { baseFormatted: 'numeric(12,2)' }), col('at', 'timestamptz'), col('doc', 'jsonb'), col('tags', 'text', { dims: 1 })],
  };
  const plan = planTable(t, { jsonColumn: 'object-ignored', textColumn: 'plain' }, { uuid: true });
  const change = (raw: string): Change => ({ id: 1, tableId: 1, op: 'U', key: '', row: parseRow(raw), raw });
  /** the parsing path: what the row's values give, written by toJson */
  const parsed = (raw: string) => `[${plan.columns.map((c) => toJson(columnValue(c, parseRow(raw)))).join(',')}]`;

  test('give the values of the parsing path, byte for byte as UTF-8, for multi-byte text, pairs, escapes and long values', () => {
    const names = ['plain', 'é ж € 日本語', '😀𝄞', 'q"\\/\b\f\n\r\t\u0001', 'x'.repeat(300) + '😀', 'ü'.repeat(5000)];
    for (const name of names) {
      for (const order of [0, 1]) {
        const members = [`"id": 7`, `"name": ${JSON.stringify(name)}`, `"n": 12.5`, `"at": "2024-01-02T03:04:05.123+00:00"`, `"doc": {"k": "${name.length}", "e": "é"}`, `"tags": ["a", "😀", null]`];
        const raw = `{${(order ? [...members].reverse() : members).join(', ')}}`;
        const args = upsertArgs(plan, change(raw));
        assert.deepEqual(JSON.parse(args), JSON.parse(parsed(raw)), raw.slice(0, 80));
        const out = new ParamRows(8);
        out.begin();
        writeUpsertArgs(out, plan, change(raw));
        assert.deepEqual(out.buffer.subarray(0, out.length), Buffer.from(args, 'utf8'));
      }
    }
  });

  test('a value that needs parsing after others were written gives the row of the parsing path, and nothing of the first try', () => {
    // doc holds a fraction (an OBJECT may not keep it): the row is written again from the parsed image
    const raw = '{"id": 1, "name": "é😀", "n": 1.5, "at": null, "doc": {"f": 0.1}, "tags": null}';
    const out = new ParamRows(8);
    out.row('[0]');
    out.begin();
    writeUpsertArgs(out, plan, change(raw));
    const end = out.close();
    assert.equal(out.toString(4, end), parsed(raw));
    assert.equal(out.toString(0, 4), '[0],');
  });

  test('names are matched where they stand, and an escaped name or a name out of place is still found right', () => {
    const rows = [
      '{"id": 1, "name": "a", "n": 1, "at": null, "doc": null, "tags": null}',
      '{"id": 2, "name": "b", "n": 2, "at": null, "doc": null, "tags": null}',
      '{"tags": null, "doc": null, "at": null, "n": 3, "name": "c", "id": 3}',
      '{"id": 4, "n\\u0061me": "d", "n": 4, "at": null, "doc": null, "tags": null}',
      '{"id": 5, "extra": "x", "name": "e", "n": 5, "at": null, "doc": null, "tags": null}',
      '{"id": 6, "extra": "x", "name": "f", "n": 6, "at": null, "doc": null, "tags": null}',
      '{"id": 7, "nam": "x", "name": "g", "n": 7}',
    ];
    for (const raw of rows) assert.deepEqual(JSON.parse(upsertArgs(plan, change(raw))), JSON.parse(parsed(raw)), raw);
    assert.equal(deleteArgs(plan, change('{"id": 9}')), '["9"]');
  });

  test('a text over the indexed limit is found by its UTF-8 size, not its length', () => {
    const short = 'ж'.repeat(Math.floor(MAX_INDEXED_TEXT_BYTES / 2));
    assert.ok(Buffer.byteLength(short) <= MAX_INDEXED_TEXT_BYTES);
    const raw = `{"id": 1, "name": "${short}"}`;
    assert.equal(Buffer.byteLength(JSON.parse(upsertArgs(plan, change(raw)))[1]), Buffer.byteLength(short));
    assert.throws(() => upsertArgs(plan, change(`{"id": 1, "name": "${short}ж"}`)), /over the 32766-byte limit/);
  });
});

describe('bulk answers read without parsing', () => {
  const answer = (results: unknown[], duration: unknown = 12.5) => JSON.stringify({ cols: [], duration, results });
  const ones = (n: number) => Array.from({ length: n }, () => ({ rowcount: 1 }));

  test('an answer of row count 1 for exactly every row is recognised, in the form CrateDB writes it', () => {
    for (const n of [1, 2, 5000]) {
      assert.equal(allRowsApplied(answer(ones(n)), n), true);
      assert.equal(allRowsApplied(answer(ones(n), 3), n), true);
      assert.equal(allRowsApplied(answer(ones(n), 1.5e-7), n), true);
    }
  });

  test('anything else is left to the parser: another count, another row count, an error, more or fewer results, other text', () => {
    const n = 50;
    assert.equal(allRowsApplied(answer(ones(n)), n - 1), false);
    assert.equal(allRowsApplied(answer(ones(n)), n + 1), false);
    assert.equal(allRowsApplied(answer([]), 0), false);
    for (const [i, other] of [[0, { rowcount: 0 }], [25, { rowcount: 2 }], [49, { rowcount: -2 }], [10, { rowcount: -2, error: { code: 40411, message: 'DocumentMissingException' } }], [3, { rowcount: 11 }]] as const) {
      const results: unknown[] = ones(n);
      results[i] = other;
      assert.equal(allRowsApplied(answer(results), n), false, JSON.stringify(other));
    }
    const text = answer(ones(n));
    assert.equal(allRowsApplied(text.replace('"results":[', '"results": ['), n), false);
    assert.equal(allRowsApplied(`${text} `, n), false);
    assert.equal(allRowsApplied(text.replace('},{', '} {'), n), false);
    assert.equal(allRowsApplied(text.slice(0, -1), n), false);
    assert.equal(allRowsApplied(JSON.stringify({ cols: [], duration: 1, results: ones(n), more: 1 }), n), false);
    assert.equal(allRowsApplied(JSON.stringify({ error: { code: 4000, message: 'x' }, results: ones(n) }), n), false);
  });
});

describe('values where the source found them', () => {
  const t: TableInfo = {
    id: 1, relid: 1, sourceSchema: 'public', sourceTable: 't', targetSchema: 'doc', targetTable: 't', keyColumns: ['id'],
    columns: [col('id', 'int8'), col('name', 'text'), col('n', 'numeric', { baseFormatted: 'numeric(12,2)' }), col('doc', 'jsonb'), col('v', 'int4')],
  };
  const plan = planTable(t, { jsonColumn: 'object-ignored', textColumn: 'plain' }, { uuid: true });

  test('give the parameter rows that scanning the text gives, row after row of one page, names shared or not', () => {
    const texts = [
      '{"id": 1, "name": "é", "n": 1.5, "doc": {"a": [1, "}"]}, "v": 3}',
      '{"id": 2, "name": "😀 \\"q\\"", "n": -2, "doc": null, "v": null}',
      '{"v": 4, "doc": {"k": "v"}, "n": 0, "name": "x", "id": 3}',
      '{"id": 4, "extra": [1, 2, {"x": "y"}], "name": "z", "n": 9, "doc": {}, "v": 5}',
      '{"id": 5, "name": "w"}',
      '{"id": 6, "n\\u0061me": "escaped", "n": 1, "doc": null, "v": 1}',
      '{"id": 7, "name": "a", "name": "b", "n": 1, "doc": null, "v": 1}',
      '{"id": 8, "name": "after the ones the scan gave up on", "n": 2, "doc": {"b": 1}, "v": 2}',
    ];
    const values = new ValuePositions(16);
    let prev: readonly string[] | undefined;
    const read: OutboxChange[] = [];
    for (let round = 0; round < 30; round++) {
      for (const [i, text] of texts.entries()) {
        const r = readRowText(text, ['id'], prev, values);
        prev = r.columns;
        read.push(new OutboxChange(round * 100 + i, 1, 'U', r.key, text, r.columns, r.row, values, r.valuesAt));
      }
    }
    assert.ok(read.filter((c) => c.valuesAt !== undefined).length >= 30 * 6, 'most rows carry their value positions');
    assert.equal(read[5].valuesAt, undefined, 'a row the scan gave up on carries none');
    for (const c of read) {
      const scanned: Change = { id: c.id, tableId: 1, op: 'U', key: c.key, row: c.row, raw: c.raw };
      assert.equal(upsertArgs(plan, c), upsertArgs(plan, scanned), c.raw ?? '');
      assert.equal(deleteArgs(plan, c), deleteArgs(plan, scanned));
    }
  });
});
