// The key of every row of an outbox page, read under the key columns the registry names for its table.
//
// The registry's key of a table is cached: it changes only when the table is captured again (`tables
// add`, or the watch after a key column was renamed: ops/key-watch.ts). Every image the capture
// writes holds the key columns (to_jsonb of the row, or the key object of a delete), so a row that
// lacks a value for one of them was written under other key names: before a rename that the cache
// (or the registry) already follows, or after a rename that it does not follow yet. The first such
// row of a table in a page reads the registry's key again. When it changed, the table's rows read so
// far in the page are keyed again under it and the page says so (Page.rekeyed), so that the drainer
// describes the table again and no page mixes two keys of one table. A row still without its key
// values matches no row of the target: it gets a key of its own (nothing coalesces it away) and the
// reason (Change.unkeyed), and the drainer parks it. Costs nothing for rows that have their key: the
// names are looked at only when the key text holds a null.
import type pg from 'pg';
import type { Change, Op } from '../core/change.js';
import { displayName } from '../core/identifiers.js';
import { OutboxChange, readRowText, ValuePositions } from './row-text.js';

export type OutboxRow = [id: string, tableId: number, op: Op, data: string | null, sourceTime: string | null];

interface TableKey {
  columns: string[];
  /** the source table's name, for the reason of a change without its key */
  name: string;
}

export interface KeyedPage {
  changes: Change[];
  rekeyed?: number[];
  unkeyed?: boolean;
}

/** Why a change without its key values is parked (also in pgoutput mode: pgoutput/row-changes.ts). */
export function unkeyedReason(missing: readonly string[], table: string, key: readonly string[]): string {
  return `the row has no value for the key column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of ${table} (key ${key.join(', ')}): ` +
    'it was written under other key names (a key column renamed or the primary key changed), so it matches no row of the target; ' +
    'README "Schema changes": give the target table the same key, then `pg2crate dead-letters retry --all`';
}

export function sameColumns(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((c, i) => c === b[i]);
}

export class PageKeys {
  readonly #tables: string;
  /** by table id; null: the table left the registry (ids are never reused, so that is final) */
  readonly #keys = new Map<number, TableKey | null>();
  /** per table and kind (deletes, others), the member names of the last row image read (shared by the rows that have the same) */
  readonly #names = new Map<number, readonly string[]>();

  /** `tables`: the registry table, qualified */
  constructor(tables: string) {
    this.#tables = tables;
  }

  async read(db: pg.ClientBase, rows: readonly OutboxRow[]): Promise<KeyedPage> {
    const out: KeyedPage = { changes: [] };
    // Where the members' values lie, for a sink that reads them from the text (row-text.ts).
    const values = new ValuePositions(rows.length * 24);
    /** tables whose key this page read from the registry again */
    let reread: Set<number> | null = null;
    for (const row of rows) {
      const tableId = row[1];
      const key = this.#keys.has(tableId) ? this.#keys.get(tableId)! : await this.#read(db, tableId);
      let change = this.#change(row, key, values);
      if (change.unkeyed !== undefined && key !== null && !reread?.has(tableId)) {
        (reread ??= new Set()).add(tableId);
        const fresh = await this.#read(db, tableId);
        if (fresh === null || !sameColumns(fresh.columns, key.columns)) {
          (out.rekeyed ??= []).push(tableId);
          out.changes = out.changes.map((c, i) => (c.tableId === tableId ? this.#change(rows[i], fresh, values) : c));
          change = this.#change(row, fresh, values);
        }
      }
      out.changes.push(change);
    }
    if (out.changes.some((c) => c.unkeyed !== undefined)) out.unkeyed = true;
    return out;
  }

  #change([id, tableId, op, data, sourceTime]: OutboxRow, key: TableKey | null, values: ValuePositions): OutboxChange {
    let change: OutboxChange;
    if (data === null) {
      change = new OutboxChange(Number(id), tableId, op, '', null, undefined, null);
    } else if (key === null) {
      // No key known (the table left the registry): a key no other change has, so none coalesces away.
      change = new OutboxChange(Number(id), tableId, op, `\u0000event ${id}`, data, undefined);
    } else {
      // deletes carry only the key: their names are kept apart from the full images'
      const kind = tableId * 2 + (op === 'D' ? 1 : 0);
      const read = readRowText(data, key.columns, this.#names.get(kind), values);
      this.#names.set(kind, read.columns);
      const missing = read.key.includes('null') ? key.columns.filter((k) => !read.columns.includes(k)) : [];
      if (missing.length === 0) {
        change = new OutboxChange(Number(id), tableId, op, read.key, data, read.columns, read.row, values, read.valuesAt);
      } else {
        change = new OutboxChange(Number(id), tableId, op, `\u0000event ${id}`, data, read.columns, read.row);
        change.unkeyed = unkeyedReason(missing, key.name, key.columns);
      }
    }
    if (sourceTime !== null) change.sourceTime = sourceTime;
    return change;
  }

  async #read(db: pg.ClientBase, tableId: number): Promise<TableKey | null> {
    const res = await db.query<{ key_columns: string[]; source_schema: string; source_table: string }>(
      `select key_columns, source_schema, source_table from ${this.#tables} where id = $1`,
      [tableId],
    );
    // A table removed while changes were pending: its registry row is gone, and with it the key.
    // Such changes cannot be applied (the drainer parks them as dead letters); null keeps each one
    // apart (a key of its own) so that no change is coalesced away unparked.
    const r = res.rows[0];
    const k = r ? { columns: r.key_columns, name: displayName(r.source_schema, r.source_table) } : null;
    this.#keys.set(tableId, k);
    return k;
  }
}
