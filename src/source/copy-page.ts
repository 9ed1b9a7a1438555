// An outbox page read as binary COPY (pure parsing, plus the one call that runs the COPY).
//
// A page read as a query's rows costs Node, for every event, pg's message object, its field array,
// the row array and a string per column, all of which the collector copies while the page waits to
// be applied. COPY (the page query) TO STDOUT in binary format arrives as a few large buffers that
// pg-copy-streams hands over without parsing; this file cuts them into the same tuples
// (id, table_id, op, data, source_time) and makes one string per text column, nothing else.
// Binary, not text: a value travels as its length and its bytes, with no escapes to undo.
//
// COPY takes no parameters, so the page's bounds are written into its text; they come from the
// checkpoint (digits, and snapshots as pg_snapshot prints them) and are checked to be exactly that.
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

/**
 * The page query `pageSql` (outbox.ts, with $1 … $5) as a binary COPY of its rows, its parameters
 * written in as literals.
 */
export function copyPageSql(pageQuery: string, after: string, upper: string, cur: string, prev: string | null, limit: number): string {
  const lits = [digits('after', after), digits('upper', upper), snapshot('window snapshot', cur), snapshot('previous snapshot', prev), digits('limit', limit)];
  // Replace from $5 down, so that $1 never matches the start of $10 (there is none, but stay safe).
  let text = pageQuery;
  for (let i = lits.length; i >= 1; i--) text = text.replaceAll(`$${i}`, lits[i - 1]);
  return `copy (${text}) to stdout (format binary)`;
}

/**
 * Cuts binary COPY output into outbox rows: columns text id, int4 table_id, text op, text data,
 * text source_time (NULL for data and source_time). Chunks may split anything anywhere.
 */
export class CopyRows {
  readonly rows: OutboxRow[] = [];
  #rest: Buffer | null = null;
  #header = false;
  #done = false;

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.#rest !== null) {
      buf = Buffer.concat([this.#rest, chunk]);
      this.#rest = null;
    }
    let at = 0;
    if (!this.#header) {
      if (buf.length < 19) {
        this.#rest = buf;
        return;
      }
      if (!buf.subarray(0, 11).equals(SIGNATURE)) throw new Error('outbox page: not binary COPY output (bad signature)');
      const ext = buf.readUInt32BE(15);
      if (buf.length < 19 + ext) {
        this.#rest = buf;
        return;
      }
      at = 19 + ext;
      this.#header = true;
    }
    const n = buf.length;
    while (at + 2 <= n) {
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
    if (at < n) this.#rest = buf.subarray(at);
  }

  /** The rows, once the output has ended; an error if it ended inside a row or before its trailer. */
  end(): OutboxRow[] {
    if (!this.#done || this.#rest !== null) throw new Error('outbox page: binary COPY output ended before its trailer');
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
