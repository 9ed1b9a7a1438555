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
import { scanRow, type ValuePositions } from '../core/json-scan.js';

export { scanRow, ValuePositions, type RowScan } from '../core/json-scan.js';

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
  readonly values: ValuePositions | undefined;
  readonly valuesAt: number | undefined;
  sourceTime?: string;
  unkeyed?: string;
  #row: Row | null | undefined;

  constructor(id: number, tableId: number, op: Op, key: string, raw: string | null, columns: readonly string[] | undefined, row?: Row | null, values?: ValuePositions, valuesAt?: number) {
    this.id = id;
    this.tableId = tableId;
    this.op = op;
    this.key = key;
    this.raw = raw;
    this.columns = columns;
    this.#row = row;
    this.values = valuesAt === undefined ? undefined : values;
    this.valuesAt = valuesAt;
  }

  get row(): Row | null {
    if (this.#row === undefined) this.#row = this.raw === null ? null : parseRow(this.raw);
    return this.#row;
  }
}

/**
 * The key and columns of a row's text: scanned where possible (with `values`, where the members'
 * values lie is added to it), parsed otherwise.
 */
export function readRowText(text: string, keyColumns: readonly string[], prev?: readonly string[], values?: ValuePositions): { key: string; columns: readonly string[]; row?: Row; valuesAt?: number } {
  const scan = scanRow(text, keyColumns, prev, values);
  if (scan !== null) return scan;
  const row = parseRow(text);
  return { key: keyOf(row, keyColumns), columns: Object.keys(row), row };
}
