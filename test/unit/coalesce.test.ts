import { test } from 'node:test';
import assert from 'node:assert/strict';
import { coalesce, type TableBatch } from '../../src/drain/coalesce.js';
import { keyOf, parseRow, type Change, type Op, type Row } from '../../src/core/change.js';

let nextId = 1;

/** A change of table `tableId` on key `id` (row images carry a `v`). */
function ch(tableId: number, op: Op, id: number | null, v?: string, extra: Partial<Change> = {}): Change {
  const row: Row | null = op === 'T' ? null : op === 'D' ? { id } : { id, v: v ?? null };
  return { id: nextId++, tableId, op, key: row ? keyOf(row, ['id']) : '', row, raw: row ? JSON.stringify(row) : null, ...extra };
}

/** A compact view of a batch: deleted keys and upserted [key, v]. */
function view(b: TableBatch): { table: number; truncate: boolean; deletes: unknown[]; upserts: unknown[] } {
  return {
    table: b.tableId,
    truncate: b.truncate,
    deletes: b.deletes.map((c) => c.row!.id),
    upserts: b.upserts.map((c) => [c.row!.id, c.row!.v]),
  };
}

test('per key, the last change wins', () => {
  const out = coalesce([ch(1, 'I', 1, 'a'), ch(1, 'U', 1, 'b'), ch(1, 'I', 2, 'x'), ch(1, 'U', 1, 'c')]);
  assert.deepEqual(out.map(view), [{ table: 1, truncate: false, deletes: [], upserts: [[2, 'x'], [1, 'c']] }]);
});

test('the surviving change keeps its own id, so a page can be traced to the outbox', () => {
  const changes = [ch(1, 'I', 1, 'a'), ch(1, 'U', 1, 'b')];
  assert.equal(coalesce(changes)[0].upserts[0].id, changes[1].id);
});

test('a delete after an insert leaves a delete; an insert after a delete leaves an upsert', () => {
  const out = coalesce([ch(1, 'I', 1, 'a'), ch(1, 'D', 1), ch(1, 'D', 2), ch(1, 'I', 2, 'back')]);
  assert.deepEqual(out.map(view), [{ table: 1, truncate: false, deletes: [1], upserts: [[2, 'back']] }]);
});

test('a truncate drops the earlier changes of its table only, and later ones are kept', () => {
  const out = coalesce([
    ch(1, 'I', 1, 'gone'), ch(2, 'I', 1, 'other table'), ch(1, 'D', 5), ch(1, 'T', null), ch(1, 'I', 2, 'after'), ch(2, 'U', 1, 'other again'),
  ]);
  assert.deepEqual(out.map(view), [
    { table: 1, truncate: true, deletes: [], upserts: [[2, 'after']] },
    { table: 2, truncate: false, deletes: [], upserts: [[1, 'other again']] },
  ]);
});

test('a truncate as the last change leaves only the truncate', () => {
  assert.deepEqual(coalesce([ch(3, 'I', 1, 'a'), ch(3, 'T', null)]).map(view), [{ table: 3, truncate: true, deletes: [], upserts: [] }]);
});

test('a key change is a delete of the old key and an upsert of the new one', () => {
  // UPDATE … SET id = 2 WHERE id = 1, as the trigger writes it.
  const out = coalesce([ch(1, 'I', 1, 'a'), ch(1, 'D', 1), ch(1, 'U', 2, 'a')]);
  assert.deepEqual(out.map(view), [{ table: 1, truncate: false, deletes: [1], upserts: [[2, 'a']] }]);
});

test('keys swapped by one statement end with both new images and no delete', () => {
  // UPDATE … SET id = 3 - id WHERE id IN (1, 2): old keys {1, 2} = new keys, so no delete is written.
  const out = coalesce([ch(1, 'I', 1, 'one'), ch(1, 'I', 2, 'two'), ch(1, 'U', 2, 'one'), ch(1, 'U', 1, 'two')]);
  assert.deepEqual(out.map(view), [{ table: 1, truncate: false, deletes: [], upserts: [[2, 'one'], [1, 'two']] }]);
});

test('a key shifted by one statement (1→2, 2→3) deletes only the key that is gone', () => {
  const out = coalesce([ch(1, 'I', 1, 'a'), ch(1, 'I', 2, 'b'), ch(1, 'D', 1), ch(1, 'U', 2, 'a'), ch(1, 'U', 3, 'b')]);
  assert.deepEqual(out.map(view), [{ table: 1, truncate: false, deletes: [1], upserts: [[2, 'a'], [3, 'b']] }]);
});

test('a key appears in at most one of deletes and upserts, so the two statements commute', () => {
  const ops: Op[] = ['I', 'U', 'D'];
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  const changes = Array.from({ length: 500 }, () => {
    const op = ops[rnd(3)];
    return ch(1 + rnd(2), op, rnd(20), `v${rnd(100)}`);
  });
  for (const b of coalesce(changes)) {
    const del = new Set(b.deletes.map((c) => c.key));
    const up = new Set(b.upserts.map((c) => c.key));
    assert.equal(del.size, b.deletes.length, 'no key deleted twice');
    assert.equal(up.size, b.upserts.length, 'no key upserted twice');
    for (const k of del) assert.ok(!up.has(k));
    // And each survivor is the last change of its key in the input.
    for (const c of [...b.deletes, ...b.upserts]) {
      const last = changes.filter((x) => x.tableId === b.tableId && x.key === c.key).at(-1);
      assert.equal(c.id, last!.id);
    }
  }
});

test('tables come out in the order they first appear; changes in the order of their final position', () => {
  const out = coalesce([ch(9, 'I', 1, 'a'), ch(4, 'I', 1, 'x'), ch(9, 'I', 2, 'b'), ch(9, 'U', 1, 'c')]);
  assert.deepEqual(out.map((b) => b.tableId), [9, 4]);
  assert.deepEqual(view(out[0]).upserts, [[2, 'b'], [1, 'c']]);
});

test('keys compare by value: numbers beyond 2^53 and composite keys stay apart', () => {
  const change = (raw: string, keys: string[]): Change => {
    const row = parseRow(raw);
    return { id: nextId++, tableId: 1, op: 'U', key: keyOf(row, keys), row, raw };
  };
  // As doubles, these two ids are the same number.
  assert.equal(coalesce([change('{"id": 9007199254740993, "v": "x"}', ['id']), change('{"id": 9007199254740992, "v": "y"}', ['id'])])[0].upserts.length, 2);
  assert.equal(coalesce([change('{"id": 12345678901234567890, "v": "x"}', ['id']), change('{"id": 12345678901234567890, "v": "y"}', ['id'])])[0].upserts.length, 1);
  // [1, "12"] and [11, "2"] must not collide however the parts are joined.
  const composite = coalesce([change('{"a": 1, "b": "12"}', ['a', 'b']), change('{"a": 11, "b": "2"}', ['a', 'b']), change('{"a": 1, "b": null}', ['a', 'b'])]);
  assert.equal(composite[0].upserts.length, 3);
});

test('a partial change merges onto the earlier image of its key, and is dropped after a delete', () => {
  const full = ch(1, 'I', 1, 'a');
  const partial = ch(1, 'U', 1, undefined, { row: { id: 1, w: 'w2' }, raw: '{"id":1,"w":"w2"}', partial: true });
  const [merged] = coalesce([full, partial])[0].upserts;
  assert.deepEqual(merged.row, { id: 1, v: 'a', w: 'w2' });
  assert.equal(merged.partial, undefined, 'onto a full image the result is full');
  assert.equal(merged.id, partial.id);

  const alone = coalesce([ch(1, 'U', 2, undefined, { row: { id: 2, w: 'x' }, raw: '{"id":2,"w":"x"}', partial: true })])[0].upserts[0];
  assert.equal(alone.partial, true);

  const afterDelete = coalesce([ch(1, 'D', 3), ch(1, 'U', 3, undefined, { row: { id: 3, w: 'x' }, raw: '{"id":3,"w":"x"}', partial: true })]);
  assert.deepEqual(afterDelete.map(view), [{ table: 1, truncate: false, deletes: [3], upserts: [] }]);
});

test('an empty page gives no batches', () => {
  assert.deepEqual(coalesce([]), []);
});

test('numeric keys equal in value but of another scale are one key, also beyond a double', () => {
  // An insert, an UPDATE that rewrites the key to an equal value of another scale (no delete: the
  // trigger compares keys by value), then a delete: the row must end deleted.
  // Exponents (float8 text) are values of their own.
  const texts: [Op, string][] = [
    ['I', '{"id": 12345678901234567.5, "v": "a"}'],
    ['U', '{"id": 12345678901234567.50, "v": "b"}'],
    ['D', '{"id": 12345678901234567.500}'],
    ['I', '{"id": 98765432109876543210, "v": "c"}'],
    ['U', '{"id": 98765432109876543210.0, "v": "d"}'],
    ['I', '{"id": 1.23456789012345678e+30, "v": "e"}'],
    ['I', '{"id": 1.23456789012345678e+3, "v": "f"}'],
  ];
  const out = coalesce(texts.map(([op, text]) => {
    const row = parseRow(text);
    return { id: nextId++, tableId: 1, op, key: keyOf(row, ['id']), row, raw: text };
  }));
  assert.deepEqual(out.map(view).map((b) => ({ ...b, deletes: b.deletes.map(String), upserts: b.upserts.map((u) => { const [k, v] = u as [unknown, unknown]; return [String(k), v]; }) })), [
    { table: 1, truncate: false, deletes: ['12345678901234567.500'], upserts: [['98765432109876543210.0', 'd'], ['1.23456789012345678e+30', 'e'], ['1.23456789012345678e+3', 'f']] },
  ]);
});
