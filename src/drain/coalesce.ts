// Pure per-key coalescing of one page (no I/O).
//
// Within a page, only the last change of each key matters: an upsert with the latest image, or a
// delete. A truncate wipes the table, so changes before it in the page are dropped and the
// truncate goes first. The result per table: [truncate], deletes, upserts, each a separate bulk
// statement; they commute because every key appears in at most one of them.
import type { Change } from '../change.js';

export interface TableBatch {
  tableId: number;
  truncate: boolean;
  deletes: Change[];
  upserts: Change[];
}

export function coalesce(changes: readonly Change[]): TableBatch[] {
  const tables = new Map<number, { truncate: boolean; last: Map<string, Change> }>();
  for (const c of changes) {
    let t = tables.get(c.tableId);
    if (!t) {
      t = { truncate: false, last: new Map() };
      tables.set(c.tableId, t);
    }
    if (c.op === 'T') {
      t.truncate = true;
      t.last.clear();
      continue;
    }
    // delete then re-insert keeps the Map's insertion order equal to the order of final changes
    t.last.delete(c.key);
    t.last.set(c.key, c);
  }
  const out: TableBatch[] = [];
  for (const [tableId, t] of tables) {
    const deletes: Change[] = [];
    const upserts: Change[] = [];
    for (const c of t.last.values()) (c.op === 'D' ? deletes : upserts).push(c);
    out.push({ tableId, truncate: t.truncate, deletes, upserts });
  }
  return out;
}
