// How many rows a page's CrateDB requests carry (cratedb-sink.ts pageRequestRows).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Change, TableInfo } from '../../src/core/change.js';
import type { SinkTableBatch } from '../../src/sink/sink.js';
import { pageRequestRows } from '../../src/sink/cratedb/cratedb-sink.js';

const table = (id: number): TableInfo => ({ id, relid: id, sourceSchema: 'public', sourceTable: `t${id}`, targetSchema: 'doc', targetTable: `t${id}`, keyColumns: ['id'], columns: [] });
const changes = (n: number, op: Change['op']): Change[] => Array.from({ length: n }, (_, i) => ({ id: i + 1, tableId: 1, op, key: String(i), row: { id: i }, raw: null }));
const batch = (upserts: number, deletes = 0, more: Partial<SinkTableBatch> = {}): SinkTableBatch => ({ table: table(1), truncate: false, deletes: changes(deletes, 'D'), upserts: changes(upserts, 'I'), ...more });

test('a page that is one statement is cut so that every slot has a request, never below 1,000 rows a request', () => {
  // a page of 5,000 inserts: two requests of 2,500, not one of 5,000 with the other slot empty
  assert.equal(pageRequestRows([batch(5000)], 5000, 2), 2500);
  assert.equal(pageRequestRows([batch(0, 5000)], 5000, 2), 2500);
  assert.equal(pageRequestRows([batch(3000)], 5000, 3), 1000);
  assert.equal(pageRequestRows([batch(6000)], 5000, 2), 3000);
  // too few rows to cut into requests of 1,000 or more: as it is
  assert.equal(pageRequestRows([batch(1999)], 5000, 2), 5000);
  assert.equal(pageRequestRows([batch(2999)], 5000, 3), 5000);
  // already a request for every slot: as it is
  assert.equal(pageRequestRows([batch(10_001)], 5000, 2), 5000);
  // a smaller configured bound is kept
  assert.equal(pageRequestRows([batch(5000)], 2000, 2), 2000);
  // one slot, or a page of several statements or tables (they share the slots already): as it is
  assert.equal(pageRequestRows([batch(5000)], 5000, 1), 5000);
  assert.equal(pageRequestRows([batch(4000, 1000)], 5000, 2), 5000);
  assert.equal(pageRequestRows([batch(5000), { ...batch(5000), table: table(2) }], 5000, 2), 5000);
  assert.equal(pageRequestRows([batch(5000, 0, { truncate: true })], 5000, 2), 5000);
  assert.equal(pageRequestRows([batch(5000, 0, { history: changes(5000, 'I') })], 5000, 2), 5000);
});
