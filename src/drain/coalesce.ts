// Pure per-key coalescing of one page (no I/O).
//
// Within a page, only the last change of each key matters: an upsert with the latest image, or a
// delete. A truncate wipes the table, so changes before it in the page are dropped and the
// truncate goes first. The result per table: [truncate], deletes, upserts, each a separate bulk
// statement; they commute because every key appears in at most one of them.
//
// A partial upsert (pgoutput: unchanged TOASTed columns are absent) is merged onto the key's
// earlier image in the page: onto a full image the result is full, onto another partial one it is
// partial with the union of the columns. Without an earlier image it stays partial, and the sink
// updates only its columns. After a delete of the same key it is dropped: applied in order, an
// update of a deleted row changes nothing.
import { stringify as losslessStringify } from 'lossless-json';
import type { Change } from '../core/change.js';

export interface TableBatch {
  tableId: number;
  truncate: boolean;
  /** the source time of the page's last truncate, where captured (soft deletes mark rows with it) */
  truncatedAt?: string;
  deletes: Change[];
  /** full images, and partial ones (`partial: true`) */
  upserts: Change[];
  /** every key of the table's deletes and upserts, with its change */
  keys: ReadonlyMap<string, Change>;
}

function merge(earlier: Change, later: Change): Change {
  const row = { ...earlier.row, ...later.row };
  const merged: Change = { id: later.id, tableId: later.tableId, op: earlier.partial ? 'U' : earlier.op, key: later.key, row, raw: losslessStringify(row) ?? null };
  if (earlier.partial) merged.partial = true;
  if (later.sourceTime !== undefined) merged.sourceTime = later.sourceTime;
  return merged;
}

export function coalesce(changes: readonly Change[]): TableBatch[] {
  const tables = new Map<number, { truncate: boolean; truncatedAt?: string; last: Map<string, Change> }>();
  for (const c of changes) {
    let t = tables.get(c.tableId);
    if (!t) {
      t = { truncate: false, last: new Map() };
      tables.set(c.tableId, t);
    }
    if (c.op === 'T') {
      t.truncate = true;
      t.truncatedAt = c.sourceTime;
      t.last.clear();
      continue;
    }
    let next = c;
    if (c.partial) {
      const earlier = t.last.get(c.key);
      if (earlier?.op === 'D') continue;
      if (earlier) next = merge(earlier, c);
    }
    // delete then re-insert keeps the Map's insertion order equal to the order of final changes
    t.last.delete(c.key);
    t.last.set(c.key, next);
  }
  const out: TableBatch[] = [];
  for (const [tableId, t] of tables) {
    const deletes: Change[] = [];
    const upserts: Change[] = [];
    for (const c of t.last.values()) (c.op === 'D' ? deletes : upserts).push(c);
    const batch: TableBatch = { tableId, truncate: t.truncate, deletes, upserts, keys: t.last };
    if (t.truncatedAt !== undefined) batch.truncatedAt = t.truncatedAt;
    out.push(batch);
  }
  return out;
}
