// Outbox inserts that arrive through the slot → Changes, exactly as the outbox source's readPage
// makes them (outbox.ts): op, table id, the data jsonb's text parsed with the table's key columns,
// the raw text, and source_time in ISO 8601 UTC.
//
// Why the outbox is published at all: `verify --repair`, `dead-letters retry` and initial loads
// (`backfill`) write their events into the outbox, whatever the capture mode. Through the slot they
// arrive at their transaction's commit, in commit order with the row changes, and their ordering
// arguments (FOR SHARE: the event's transaction commits after every earlier writer of the row and
// before every later one) carry over from id order to commit order unchanged.
//
// The one exception: a partitioned table keeps its truncate triggers in this mode, because the slot
// does not send the TRUNCATE of one partition; their deletes ('P') are always applied.
//
// Trigger events arrive too, while triggers are installed during a switch, and are skipped: they
// would apply twice what the slot already sent (the switch to pgoutput promises nothing twice).
// They are recognised by their transaction: a statement trigger writes its events at the end of a
// statement that changed a captured table, in the same transaction, so the slot sends that change
// first; the transactions that write repair, retry and load events change no captured table (they
// read the rows FOR SHARE and insert into the outbox only). Updates, deletes and truncates of the
// outbox are not changes of any table: skipped as well.
import type pg from 'pg';
import type { Pgoutput } from 'pg-logical-replication';
import type { Change, Op } from '../../core/change.js';
import { keyOf, parseRow } from '../../core/change.js';
import { displayName, qualify } from '../../core/identifiers.js';
import { unkeyedReason } from '../page-keys.js';

type ColumnText = string | null | undefined;

interface TableKey {
  columns: string[];
  /** the source table's name, for the reason of a change without its key */
  name: string;
}

export class OutboxEvents {
  readonly #db: pg.Pool;
  readonly #schema: string;
  readonly #keys = new Map<number, TableKey | null>();

  constructor(db: pg.Pool, schema: string) {
    this.#db = db;
    this.#schema = schema;
  }

  /** Whether a relation message names pg2crate's outbox (published via its root). */
  isOutbox(rel: { schema: string; name: string }): boolean {
    return rel.schema === this.#schema && rel.name === 'outbox';
  }

  /**
   * Appends the change an outbox insert stands for; returns the key columns it was keyed by (null:
   * no key, a truncate or a table removed). A row without a member for a key column was written
   * under other key names (a key column renamed, as in trigger mode: page-keys.ts): the registry's
   * key is read again, once a page per table (`reread`), and a row still without it is parked.
   */
  async change(msg: Pgoutput.MessageInsert, id: number, out: Change[], reread: Set<number>): Promise<string[] | null> {
    const v = msg.new as Record<string, ColumnText>;
    const tableId = Number(v.table_id);
    const raw = v.data ?? null;
    const row = raw === null ? null : parseRow(raw);
    let k = row === null ? null : await this.#key(tableId, false);
    if (row !== null && k !== null && !k.columns.every((c) => c in row) && !reread.has(tableId)) {
      reread.add(tableId);
      k = await this.#key(tableId, true);
    }
    const missing = row === null || k === null ? [] : k.columns.filter((c) => !(c in row));
    // As in outbox.ts: a table removed meanwhile has no key; each change keeps a key of its own.
    const key = row === null ? '' : k === null || missing.length > 0 ? `\u0000event ${id}` : keyOf(row, k.columns);
    // 'P', a delete written by a partition's truncate (triggers.ts), is a delete like any other.
    const change: Change = { id, tableId, op: v.op === 'P' ? 'D' : (v.op as Op), key, row, raw };
    if (missing.length > 0) change.unkeyed = unkeyedReason(missing, k!.name, k!.columns);
    const at = isoUtc(v.source_time);
    if (at !== null) change.sourceTime = at;
    out.push(change);
    return k?.columns ?? null;
  }

  async #key(tableId: number, fresh: boolean): Promise<TableKey | null> {
    if (!fresh && this.#keys.has(tableId)) return this.#keys.get(tableId)!;
    const res = await this.#db.query<{ key_columns: string[]; source_schema: string; source_table: string }>(
      `select key_columns, source_schema, source_table from ${qualify(this.#schema, 'tables')} where id = $1`,
      [tableId],
    );
    const r = res.rows[0];
    const k = r ? { columns: r.key_columns, name: displayName(r.source_schema, r.source_table) } : null;
    this.#keys.set(tableId, k);
    return k;
  }

  /**
   * Whether an outbox insert is applied even in a transaction that changed captured tables: the
   * deletes of a partition's truncate, which the slot itself does not send (publish_via_partition_root).
   */
  static sentOnlyHere(msg: Pgoutput.MessageInsert): boolean {
    return (msg.new as Record<string, ColumnText>).op === 'P';
  }
}

/**
 * A timestamptz as the walsender writes it (timezone UTC, datestyle ISO: `2026-01-02 03:04:05.6+00`)
 * → outbox.ts's `to_char(… at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`.
 */
export function isoUtc(text: ColumnText): string | null {
  if (text === null || text === undefined) return null;
  const m = /^(\d{4,}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\+00$/.exec(text);
  if (!m) return null;
  return `${m[1]}T${m[2]}.${(m[3] ?? '').padEnd(6, '0')}Z`;
}
