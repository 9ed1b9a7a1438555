import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CopyRows, copyPageSql } from '../../src/source/copy-page.js';
import type { OutboxRow } from '../../src/source/page-keys.js';

/** Binary COPY output of `rows`, as Postgres writes it (header with an extension area of `ext` bytes). */
function copyOutput(rows: OutboxRow[], ext = 0): Buffer {
  const parts: Buffer[] = [Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1')];
  const head = Buffer.alloc(8 + ext);
  head.writeUInt32BE(0, 0);
  head.writeUInt32BE(ext, 4);
  parts.push(head);
  const text = (s: string | null, enc: BufferEncoding) => {
    const len = Buffer.alloc(4);
    if (s === null) {
      len.writeInt32BE(-1);
      return [len];
    }
    const b = Buffer.from(s, enc);
    len.writeInt32BE(b.length);
    return [len, b];
  };
  for (const [id, tableId, op, data, time] of rows) {
    const n = Buffer.alloc(2);
    n.writeInt16BE(5);
    const t = Buffer.alloc(8);
    t.writeInt32BE(4, 0);
    t.writeInt32BE(tableId, 4);
    parts.push(n, ...text(id, 'latin1'), t, ...text(op, 'latin1'), ...text(data, 'utf8'), ...text(time, 'latin1'));
  }
  parts.push(Buffer.from([0xff, 0xff]));
  return Buffer.concat(parts);
}

const ROWS: OutboxRow[] = [
  ['1', 7, 'I', '{"id": 1, "name": "Grüße, 日本 🎉", "v": "tab\\there"}', null],
  ['2', 7, 'D', '{"id": 1}', '2026-12-08T00:00:00.000000Z'],
  ['10', 2147483647, 'T', null, null],
  ['9223372036854775807', 1, 'U', '{}', ''],
];

test('binary COPY output cut anywhere gives the rows it holds', () => {
  const out = copyOutput(ROWS, 3);
  // every split into two chunks, and one byte at a time
  for (let cut = 0; cut <= out.length; cut++) {
    const p = new CopyRows();
    p.push(out.subarray(0, cut));
    p.push(out.subarray(cut));
    assert.deepEqual(p.end(), ROWS, `cut at ${cut}`);
  }
  const p = new CopyRows();
  for (let i = 0; i < out.length; i++) p.push(out.subarray(i, i + 1));
  assert.deepEqual(p.end(), ROWS);
});

test('a row that arrives in many chunks is copied a bounded number of times, not once per chunk', () => {
  const big: OutboxRow[] = [['1', 1, 'I', `{"v": "${'x'.repeat(8 * 1024 * 1024)}"}`, null], ['2', 1, 'D', '{"id": 2}', null]];
  const out = copyOutput(big);
  let copied = 0;
  const { copy } = Buffer.prototype;
  const { concat } = Buffer;
  Buffer.prototype.copy = function (this: Buffer, ...args: Parameters<Buffer['copy']>) {
    const n = copy.apply(this, args);
    copied += n;
    return n;
  };
  Buffer.concat = (list: readonly Uint8Array[], total?: number) => {
    const b = concat(list, total);
    copied += b.length;
    return b;
  };
  try {
    const p = new CopyRows();
    for (let i = 0; i < out.length; i += 16 * 1024) p.push(out.subarray(i, i + 16 * 1024));
    assert.deepEqual(p.end(), big);
  } finally {
    Buffer.prototype.copy = copy;
    Buffer.concat = concat;
  }
  // every byte kept once, plus the copies of each doubling (together less than the final size)
  assert.ok(copied <= 3 * out.length, `${copied} bytes copied for ${out.length} bytes of output`);
});

test('an empty page is its header and trailer', () => {
  const p = new CopyRows();
  p.push(copyOutput([]));
  assert.deepEqual(p.end(), []);
});

test('output that is not binary COPY, or ends early, is an error', () => {
  assert.throws(() => new CopyRows().push(Buffer.from('id\ttable\n1\t2\n'.repeat(3))), /bad signature/);
  const out = copyOutput(ROWS);
  for (const cut of [5, 19, 40, out.length - 2, out.length - 1]) {
    const p = new CopyRows();
    p.push(out.subarray(0, cut));
    assert.throws(() => p.end(), /ended before its trailer/, `cut at ${cut}`);
  }
});

test('the page COPY writes its bounds in as literals, and refuses anything else', () => {
  const sql = copyPageSql('s.outbox', '10', '20', '100:105:101,103', null, 5000);
  assert.match(sql, /^copy \(select /);
  assert.match(sql, /\) to stdout \(format binary\)$/);
  assert.match(sql, /o\.id > 10 and o\.id <= 20/);
  assert.match(sql, /'100:105:101,103'::pg_snapshot/);
  assert.match(sql, /\(null::pg_snapshot is null/);
  assert.match(sql, /limit 5000/);
  assert.doesNotMatch(sql, /\$\d/);
  // a name holding `$1` stays as it is
  assert.match(copyPageSql('"repl$1".outbox', '1', '2', '1:1:', null, 1), /from "repl\$1"\.outbox o/);
  assert.match(copyPageSql('s.outbox', '0', '1', '5:5:', '3:4:', 1), /'3:4:'::pg_snapshot/);
  assert.throws(() => copyPageSql('s.outbox', '1 or true', '2', '1:1:', null, 1), /after must be a non-negative integer/);
  assert.throws(() => copyPageSql('s.outbox', '1', '2', "1:1:'; drop table x; --", null, 1), /not a pg_snapshot text/);
  assert.throws(() => copyPageSql('s.outbox', '1', '2', '1:1:', null, -1), /limit must be/);
});
