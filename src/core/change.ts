// The change model shared by both capture modes, the drainer and the sinks.
import { LosslessNumber, isSafeNumber, parse as losslessParse } from 'lossless-json';
import type { ValuePositions } from './json-scan.js';
import type { TableShape } from './table-shape.js';

/** I insert, U update, D delete (row holds the key), T truncate (no row), B a row copied by the initial load (or a repair). */
export type Op = 'I' | 'U' | 'D' | 'T' | 'B';

/**
 * A JSON value as it arrived. Numbers that a double cannot hold exactly (bigint past 2^53,
 * numeric(38,10) …) are kept as LosslessNumber with their exact text.
 */
export type JsonValue = null | boolean | number | string | LosslessNumber | JsonValue[] | { [k: string]: JsonValue };
export type Row = Record<string, JsonValue>;
export { LosslessNumber };

export interface Change {
  /**
   * position in the stream (outbox id; in pgoutput mode the change's number in this session's
   * stream); increasing, and in commit order for any one key
   */
  id: number;
  tableId: number;
  op: Op;
  /** canonical text of the key values; '' for truncate */
  key: string;
  /** new row image (I/U), key columns (D), null (T) */
  row: Row | null;
  /** the exact JSON text of `row`, passed through untouched where a sink can use it */
  raw: string | null;
  /**
   * the member names of `row` where the source knows them without parsing it (the outbox); changes
   * with the same names may share one array
   */
  readonly columns?: readonly string[] | undefined;
  /**
   * where the value of each member of `columns` lies in `raw`, when the source found them reading
   * it (json-scan.ts ValuePositions: from `valuesAt` on, two numbers per member, in `columns` order)
   */
  readonly values?: ValuePositions | undefined;
  readonly valuesAt?: number | undefined;
  /** the row holds the key and only some other columns (pgoutput's unchanged TOAST values) */
  partial?: boolean;
  /**
   * why the row's key cannot be read: it lacks a key column's value (written under other key
   * names, see source/outbox.ts). Such a change matches nothing in the target and is parked.
   */
  unkeyed?: string;
  /**
   * when the change was made in the source, ISO 8601 in UTC; set only for tables whose target
   * wants it (table-shape.ts). Trigger mode: the writing transaction's start (`now()`), the copy's
   * for initial loads. pgoutput mode: the transaction's commit time.
   */
  sourceTime?: string;
}

export interface ColumnInfo {
  name: string;
  /** format_type() of the column, e.g. `numeric(38,10)`, `timestamp with time zone`, `text[]` */
  type: string;
  /** the element type's name (domains resolved to their base), e.g. int8, numeric, jsonb, text */
  baseType: string;
  /** format_type() of the element type with the column's modifier, e.g. `numeric(38,10)`, `character varying(20)` */
  baseFormatted: string;
  /** 0 for scalars, the number of dimensions for arrays (1 when the catalog does not say) */
  dims: number;
  /** pg_type.typtype of the element: b base, e enum, c composite, r range, m multirange, d domain resolved */
  typtype: string;
  notNull: boolean;
}

export interface TableInfo {
  id: number;
  relid: number;
  sourceSchema: string;
  sourceTable: string;
  targetSchema: string;
  targetTable: string;
  keyColumns: string[];
  /** the columns that reach the target: excluded ones left out, hashed ones as text (table-shape.ts) */
  columns: ColumnInfo[];
  /** how the target is shaped; absent or null: a plain copy */
  shape?: TableShape | null;
  /** the tool's schema in the source database (its registry holds a shaped table's hash salt) */
  toolSchema?: string;
}

/** Looks tables up in the source catalog; the drainer re-reads a table when rows carry new columns. */
export interface SourceCatalog {
  describe(tableId: number): Promise<TableInfo>;
}

/**
 * A member named twice in one object keeps its last value, as JSON.parse and jsonb do. A row image
 * is json text (migrations/000012), and a source column of type json keeps its text as written, a
 * name twice included; lossless-json would throw on it.
 */
export function lastValue({ newValue }: { newValue: unknown }): unknown {
  return newValue;
}

// A run of 16+ digits (with dots) may be a number a double cannot hold; only then parse losslessly.
const MAYBE_UNSAFE_NUMBER = /\d[\d.]{15,}/;

function parseNumber(text: string): number | LosslessNumber {
  return isSafeNumber(text) ? Number(text) : new LosslessNumber(text);
}

/** Parses a row's JSON text without rounding any number. */
export function parseRow(text: string): Row {
  const value = MAYBE_UNSAFE_NUMBER.test(text) ? losslessParse(text, null, { parseNumber, onDuplicateKey: lastValue }) : JSON.parse(text);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError('a change row must be a JSON object');
  }
  return value as Row;
}

/**
 * The exact text of a number that a double cannot hold, without trailing fractional zeros: numeric
 * keys equal in value are one row to Postgres and to the target whatever their scale
 * (`…7.5` = `…7.50`), so they must be one key to a page's coalescing too. (A number a double holds
 * is parsed to one, which already forgets the scale.) Text with an exponent (float8's) is left as it is.
 */
function unsafeNumberKeyText(text: string): string {
  return /^-?\d+\.\d+$/.test(text) ? text.replace(/\.?0+$/, '') : text;
}

/** The canonical key text of a row: its key values in key order, numbers exact and without scale. */
export function keyOf(row: Row, keyColumns: readonly string[]): string {
  const parts = keyColumns.map((c) => {
    const v = row[c];
    if (v === undefined || v === null) return null;
    if (typeof v === 'number') return { n: String(v) };
    if (v instanceof LosslessNumber) return { n: unsafeNumberKeyText(v.value) };
    return v;
  });
  return JSON.stringify(parts);
}

export function isLosslessNumber(v: unknown): v is LosslessNumber {
  return v instanceof LosslessNumber;
}
