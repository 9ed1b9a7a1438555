// The outbox's page query, and a page read as binary COPY (pure, but for the one call that runs it).
//
// A page read as a query's rows costs Node, for every event, pg's message object, its field array,
// the row array and a string per column, all of which the collector copies while the page waits to
// be applied. COPY (the page query) TO STDOUT in binary format arrives as a few large buffers that
// pg-copy-streams hands over without parsing; this file cuts them into the same tuples
// (id, table_id, op, data, source_time) and makes one string per text column, nothing else.
// Binary, not text: a value travels as its length and its bytes, with no escapes to undo; text
// values arrive in the client encoding (UTF8, as pg sets it), as a query's do.
//
// COPY takes no parameters, so the page's inputs are written into its text; they come from the
// checkpoint (digits, and snapshots as pg_snapshot prints them) and are checked to be exactly that.
// The query is built with them in place, never by replacing text (a schema name may hold `$1`).
// While the COPY runs, pg-copy-streams drops NOTICE messages on its connection; the drainer's
// connection waits for none (wake-ups come on the listener's own connection).
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { Op } from '../core/change.js';
import type { OutboxRow } from './page-keys.js';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const DIGITS = /^\d+$/;
const SNAPSHOT = /^\d+:\d+:(\d+(,\d+)*)?$/;

function digits(name: string, v: string | number): string {
  const s = String(v);
  if (!DIGITS.test(s)) throw new TypeError(`outbox page: ${name} must be a non-negative integer, got ${JSON.stringify(s)}`);
  return s;
}

function snapshot(name: string, v: string | null): string {
  if (v === null) return 'null';
  if (!SNAPSHOT.test(v)) throw new TypeError(`outbox page: ${name} is not a pg_snapshot text: ${JSON.stringify(v)}`);
  return `'${v}'`;
}

/** The page query's five inputs, as SQL expressions. */
export interface PageParams {
  after: string;
  upper: string;
  snapshot: string;
  prev: string;
  limit: string;
}

const PLACEHOLDERS: PageParams = { after: '$1', upper: '$2', snapshot: '$3', prev: '$4', limit: '$5' };

/**
 * A page of the outbox: the events after id `after` up to `upper` committed in the window's
 * snapshot and not in `prev` (the window before), at most `limit` of them in id order, one row each
 * as (id, table_id, op, data, source_time). Without `p`, the inputs are the parameters $1 … $5 in
 * that order. bench/page-read.ts measures this read in other shapes.
 */
export function pageSql(outbox: string, p: PageParams = PLACEHOLDERS): string {
  // Order by the column, not the text alias of the same name (that would sort "10" before "9").
  // source_time as ISO 8601 in UTC, whatever the session's time zone.
  // 'P': a delete written by a partition's truncate (triggers.ts), a delete like any other here.
  return `select o.id::text as id, o.table_id, case when o.op = 'P' then 'D' else o.op end as op, o.data::text as data,
              to_char(o.source_time at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as source_time
         from ${outbox} o
        where o.id > ${p.after} and o.id <= ${p.upper}
          and pg_visible_in_snapshot(o.xid, ${p.snapshot}::pg_snapshot)
          and (${p.prev}::pg_snapshot is null or not pg_visible_in_snapshot(o.xid, ${p.prev}::pg_snapshot))
        order by o.id
        limit ${p.limit}`;
}

/** The page of `outbox` (qualified) as a binary COPY of its rows, its inputs written in as literals. */
export function copyPageSql(outbox: string, after: string, upper: string, cur: string, prev: string | null, limit: number): string {
  const p: PageParams = {
    after: digits('after', after), upper: digits('upper', upper), snapshot: snapshot('window snapshot', cur),
    prev: snapshot('previous snapshot', prev), limit: digits('limit', limit),
  };
  return `copy (${pageSql(outbox, p)}) to stdout (format binary)`;
}

/**
 * Cuts binary COPY output into outbox rows: columns text id, int4 table_id, text op, text data,
 * text source_time (NULL for data and source_time). Chunks may split anything anywhere.
 */
export class CopyRows {
  readonly rows: OutboxRow[] = [];
  /**
   * Bytes received and not cut into rows yet: [0, #restLen) of #rest. It grows by doubling, so a
   * row that arrives in many chunks is copied a bounded number of times, not once per chunk.
   */
  #rest: Buffer | null = null;
  #restLen = 0;
  #header = false;
  #done = false;

  push(chunk: Buffer): void {
    if (this.#restLen === 0) {
      const at = this.#cut(chunk);
      if (at < chunk.length) this.#keep(chunk.subarray(at));
      return;
    }
    this.#keep(chunk);
    const rest = this.#rest!;
    const at = this.#cut(rest.subarray(0, this.#restLen));
    if (at > 0) {
      rest.copyWithin(0, at, this.#restLen);
      this.#restLen -= at;
    }
  }

  #keep(bytes: Buffer): void {
    const need = this.#restLen + bytes.length;
    if (this.#rest === null || this.#rest.length < need) {
      const next = Buffer.allocUnsafe(Math.max(need, 2 * (this.#rest?.length ?? 0), 64 * 1024));
      this.#rest?.copy(next, 0, 0, this.#restLen);
      this.#rest = next;
    }
    bytes.copy(this.#rest, this.#restLen);
    this.#restLen = need;
  }

  /** Cuts the header and every whole row at the start of `buf` into rows; returns how many bytes that took. */
  #cut(buf: Buffer): number {
    let at = 0;
    if (!this.#header) {
      if (buf.length < 19) return 0;
      if (!buf.subarray(0, 11).equals(SIGNATURE)) throw new Error('outbox page: not binary COPY output (bad signature)');
      const ext = buf.readUInt32BE(15);
      if (buf.length < 19 + ext) return 0;
      at = 19 + ext;
      this.#header = true;
    }
    const n = buf.length;
    while (at + 2 <= n && !this.#done) {
      const fields = buf.readInt16BE(at);
      if (fields === -1) {
        this.#done = true;
        at += 2;
        break;
      }
      if (fields !== 5) throw new Error(`outbox page: a row of ${fields} columns, expected 5`);
      // the whole tuple must be here: walk its lengths first
      let p = at + 2;
      let whole = true;
      for (let f = 0; f < 5; f++) {
        if (p + 4 > n) { whole = false; break; }
        const len = buf.readInt32BE(p);
        p += 4 + (len > 0 ? len : 0);
        if (p > n) { whole = false; break; }
      }
      if (!whole) break;
      p = at + 2;
      const idLen = buf.readInt32BE(p);
      const id = buf.toString('latin1', p + 4, p + 4 + idLen);
      p += 4 + idLen;
      if (buf.readInt32BE(p) !== 4) throw new Error('outbox page: table_id is not an int4');
      const tableId = buf.readInt32BE(p + 4);
      p += 8;
      const opLen = buf.readInt32BE(p);
      const op = buf.toString('latin1', p + 4, p + 4 + opLen) as Op;
      p += 4 + opLen;
      const dataLen = buf.readInt32BE(p);
      const data = dataLen < 0 ? null : buf.toString('utf8', p + 4, p + 4 + dataLen);
      p += 4 + (dataLen > 0 ? dataLen : 0);
      const timeLen = buf.readInt32BE(p);
      const sourceTime = timeLen < 0 ? null : buf.toString('latin1', p + 4, p + 4 + timeLen);
      p += 4 + (timeLen > 0 ? timeLen : 0);
      this.rows.push([id, tableId, op, data, sourceTime]);
      at = p;
    }
    return at;
  }

/** The rows, once the output has ended; an error if it ended inside a row or before its trailer. */
  end(): OutboxRow[] {
    if (!this.#done || this.#restLen > 0) throw new Error('outbox page: binary COPY output ended before its trailer');
    return this.rows;
  }
}

/** Runs `copy (…) to stdout (format binary)` on `db` and returns its rows. */
export function readCopyRows(db: pg.ClientBase, copySql: string): Promise<OutboxRow[]> {
  return new Promise<OutboxRow[]>((resolve, reject) => {
    const parser = new CopyRows();
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      reject(err);
    };
    const stream = db.query(copyTo(copySql));
    stream.on('data', (chunk: Buffer) => {
      if (failed) return;
      try {
        parser.push(chunk);
      } catch (err) {
        // keep reading to the end, so that the connection is left at a message boundary
        fail(err);
      }
    });
    stream.on('error', fail);
    stream.on('end', () => {
      if (failed) return;
      try {
        resolve(parser.end());
      } catch (err) {
        fail(err);
      }
    });
  });
}
