// What the drainer needs from a row image's JSON text, read without parsing the whole of it (pure).
//
// The drainer needs of every change only its key (to coalesce a page) and, for full images, the set
// of column names (to notice DDL); the Postgres sink sends the text itself. Parsing every image
// losslessly cost more CPU than everything else in a drain, so the outbox reads rows as text, scans
// the top level of each object for its member names and the key members' values, and parses the
// whole row only when something asks for `row` (the CrateDB sink, a partial merge, dead letters).
//
// The scan answers only for the common shape: a top-level object whose member names carry no
// escapes, whose key values are strings, booleans, nulls or integers of at most 15 digits. For
// anything else it returns null and the caller parses the row as before, so the key text is always
// exactly what keyOf(parseRow(text)) gives.
import { keyOf, parseRow, type Change, type Op, type Row } from '../core/change.js';
import { scanMembers } from '../core/json-scan.js';

export interface RowScan {
  key: string;
  /** the top-level member names, in text order; `prev` itself when they are the same */
  columns: readonly string[];
}

const QUOTE = 34;

function sameAt(text: string, at: number, name: string): boolean {
  for (let k = 0; k < name.length; k++) if (text.charCodeAt(at + k) !== name.charCodeAt(k)) return false;
  return true;
}

const SMALL_INTEGER = /^-?\d{1,15}$/;

/** A key member's value as JSON.stringify renders it inside keyOf()'s array, or null when the scan cannot say. */
function keyPart(raw: string | undefined): string | null {
  if (raw === undefined || raw === 'null') return 'null';
  const c = raw.charCodeAt(0);
  if (c === QUOTE) return JSON.stringify(JSON.parse(raw) as string);
  if (raw === 'true' || raw === 'false') return raw;
  if (SMALL_INTEGER.test(raw)) return `{"n":"${String(Number(raw))}"}`;
  return null;
}

/**
 * The key text (as keyOf(parseRow(text), keyColumns)) and the member names of a row image, or null
 * when the text is not of the shape this scan answers for.
 */
export function scanRow(text: string, keyColumns: readonly string[], prev?: readonly string[]): RowScan | null {
  const single = keyColumns.length === 1 ? keyColumns[0] : null;
  let singleRaw = undefined as string | undefined;
  let raws = null as (string | undefined)[] | null;
  /** the names read so far, once they differ from `prev` */
  let names = null as string[] | null;
  let n = 0;
  const ok = scanMembers(text, (nameStart, nameEnd, valueStart, valueEnd) => {
    // The same name as the previous row's at this place: compared in place, no new string.
    let name: string;
    if (names === null && prev !== undefined && n < prev.length && prev[n].length === nameEnd - nameStart && sameAt(text, nameStart, prev[n])) {
      name = prev[n];
    } else {
      name = text.slice(nameStart, nameEnd);
      if (name.includes('\\')) return false;
      names ??= prev === undefined ? [] : prev.slice(0, n);
      names.push(name);
    }
    n++;
    if (single !== null) {
      if (name === single) {
        if (singleRaw !== undefined) return false;
        singleRaw = text.slice(valueStart, valueEnd);
      }
    } else {
      const k = keyColumns.indexOf(name);
      if (k >= 0) {
        raws ??= new Array<string | undefined>(keyColumns.length).fill(undefined);
        if (raws[k] !== undefined) return false;
        raws[k] = text.slice(valueStart, valueEnd);
      }
    }
    return true;
  });
  if (!ok) return null;
  // A name twice: JSON.parse would keep the last value; leave such text to it. (A list equal to or
  // a prefix of `prev` was checked when `prev` was made.)
  if (names !== null && new Set(names).size !== names.length) return null;
  const columns = names ?? (prev !== undefined && n === prev.length ? prev : (prev ?? []).slice(0, n));
  let key: string;
  if (single !== null) {
    const part = keyPart(singleRaw);
    if (part === null) return null;
    key = `[${part}]`;
  } else {
    key = '[';
    for (let k = 0; k < keyColumns.length; k++) {
      const part = keyPart(raws?.[k]);
      if (part === null) return null;
      key += k === 0 ? part : `,${part}`;
    }
    key += ']';
  }
  return { key, columns };
}

/**
 * A change read from the outbox: the row is parsed (losslessly) the first time something asks for
 * it; the Postgres sink never does.
 */
export class OutboxChange implements Change {
  readonly id: number;
  readonly tableId: number;
  readonly op: Op;
  readonly key: string;
  readonly raw: string | null;
  readonly columns: readonly string[] | undefined;
  sourceTime?: string;
  #row: Row | null | undefined;

  constructor(id: number, tableId: number, op: Op, key: string, raw: string | null, columns: readonly string[] | undefined, row?: Row | null) {
    this.id = id;
    this.tableId = tableId;
    this.op = op;
    this.key = key;
    this.raw = raw;
    this.columns = columns;
    this.#row = row;
  }

  get row(): Row | null {
    if (this.#row === undefined) this.#row = this.raw === null ? null : parseRow(this.raw);
    return this.#row;
  }
}

/** The key and columns of a row's text: scanned where possible, parsed otherwise. */
export function readRowText(text: string, keyColumns: readonly string[], prev?: readonly string[]): { key: string; columns: readonly string[]; row?: Row } {
  const scan = scanRow(text, keyColumns, prev);
  if (scan !== null) return scan;
  const row = parseRow(text);
  return { key: keyOf(row, keyColumns), columns: Object.keys(row), row };
}
