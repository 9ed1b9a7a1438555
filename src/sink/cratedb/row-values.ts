// Row images → bulk_args parameter rows (pure).
//
// Numbers a double cannot hold arrive as LosslessNumber and leave as their exact text: as a JSON
// string for bigint/numeric columns (CrateDB casts it to the column type), as a raw JSON number
// inside objects (json-text.ts).
// A value CrateDB surely cannot store is refused here with the reason (ValueRejected), so that
// the row is parked with a message a person can act on instead of failing a whole request.
//
// Most rows never need parsing: a value's JSON text as Postgres wrote it is already what CrateDB
// takes (a number, a string, a small object), or it only needs quotes (bigint, numeric). So the
// parameter row is first written from the row image's text, value by value, as UTF-8 bytes straight
// into the statement's buffer (writeTextArgs, param-rows.ts); a value that needs more (arrays, json
// as text, points, numbers an OBJECT may not keep, a text near the size limit, escaped names) sends
// the whole row down the parsing path, which gives the same values.
import { LosslessNumber, parse as losslessParse } from 'lossless-json';
import { lastValue, type Change, type JsonValue, type Row } from '../../core/change.js';
import { memberPositions } from '../../core/json-scan.js';
import { MAX_INDEXED_TEXT_BYTES, type ColumnPlan, type TablePlan } from './column-types.js';
import { toJson } from './json-text.js';
import { ParamRows } from './param-rows.js';

/** A value of this row cannot be stored in CrateDB; the message says which and why. */
export class ValueRejected extends Error {
  override name = 'ValueRejected';
}

/** The key that wraps a json value that cannot be an OBJECT (array, scalar, JSON null). */
export const JSON_WRAP_KEY = '_value';

function isPlainObject(v: JsonValue): v is { [k: string]: JsonValue } {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof LosslessNumber);
}

function isWrapShaped(v: JsonValue): boolean {
  if (!isPlainObject(v)) return false;
  const keys = Object.keys(v);
  return keys.length === 1 && keys[0] === JSON_WRAP_KEY;
}

/**
 * The OBJECT value for a json column: objects as they are; anything else, and an object that
 * looks like a wrapper itself, as {"_value": v}. One-to-one, see decodeJsonColumn.
 */
export function encodeJsonColumn(v: JsonValue): JsonValue {
  return isPlainObject(v) && !isWrapShaped(v) ? v : { [JSON_WRAP_KEY]: v };
}

/** The json value that encodeJsonColumn stored (for verify and tests). SQL NULL stays null. */
export function decodeJsonColumn(v: JsonValue | undefined): JsonValue | undefined {
  if (v === null || v === undefined) return v;
  return isWrapShaped(v) ? (v as { [k: string]: JsonValue })[JSON_WRAP_KEY] : v;
}

/** `d…de±p` without leading or trailing zeros: one text per decimal value, whatever its notation. */
function canonicalDecimal(s: string): string | null {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(s);
  if (!m) return null;
  let digits = m[2] + (m[3] ?? '');
  let point = m[2].length + Number(m[4] ?? 0);
  const lead = /^0*/.exec(digits)![0].length;
  digits = digits.slice(lead).replace(/0+$/, '');
  point -= lead;
  return digits === '' ? '0' : `${m[1]}${digits}e${point}`;
}

const LONG_MIN = -(2n ** 63n);
const LONG_MAX = 2n ** 63n - 1n;

/**
 * Whether a CrateDB OBJECT keeps this JSON number: it stores integers as 64-bit longs (larger
 * ones fail the row) and every other number as a double (silently rounded: 0.1000000000000000000001
 * comes back as 0.1, 1e400 as "Infinity"). A number is kept when its double has the same value.
 */
export function objectKeepsNumber(text: string): boolean {
  if (/^-?\d+$/.test(text)) {
    const n = BigInt(text);
    return n >= LONG_MIN && n <= LONG_MAX;
  }
  const d = Number(text);
  return Number.isFinite(d) && canonicalDecimal(String(d)) === canonicalDecimal(text);
}

function checkObjectNumbers(col: ColumnPlan, v: JsonValue): void {
  if (v instanceof LosslessNumber) {
    if (!objectKeepsNumber(v.value)) {
      throw new ValueRejected(
        `column "${col.source}": the json number ${v.value} would not be kept exactly by a CrateDB OBJECT (64-bit integers and doubles only); ` +
          'set crate.jsonColumn to "text" to keep json values exactly, for tables created after the change',
      );
    }
  } else if (Array.isArray(v)) {
    for (const e of v) checkObjectNumbers(col, e);
  } else if (v !== null && typeof v === 'object') {
    for (const k in v) checkObjectNumbers(col, v[k]);
  }
}

function exactText(v: JsonValue): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || v instanceof LosslessNumber) return String(v);
  return toJson(v);
}

/** `1.50` and `1.5` are one numeric key in Postgres; a TEXT key column must see one text. */
function canonicalNumberText(s: string): string {
  if (!/^-?\d+\.\d+$/.test(s)) return s;
  const t = s.replace(/0+$/, '').replace(/\.$/, '');
  return t === '-0' ? '0' : t;
}

export const TIMESTAMP_IN_RANGE = /^\d{4}-\d\d-\d\d(?:[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?)?(?:[+-]\d\d(?::?\d\d(?::?\d\d)?)?|Z)?$/;

function timestamp(col: ColumnPlan, v: string): string {
  const m = TIMESTAMP_IN_RANGE.exec(v);
  if (!m || v.startsWith('0000')) {
    throw new ValueRejected(
      `column "${col.source}": ${JSON.stringify(v)} is outside what a CrateDB timestamp holds (years 1 to 9999, no infinity, no BC dates)`,
    );
  }
  if (col.isKey && m[2] !== undefined && /[1-9]/.test(m[2].slice(3))) {
    throw new ValueRejected(
      `key column "${col.source}": ${JSON.stringify(v)} has sub-millisecond digits; CrateDB keeps milliseconds, so two source keys would become one target row`,
    );
  }
  return v;
}

function geoPoint(col: ColumnPlan, v: JsonValue): JsonValue {
  if (typeof v !== 'string') return v;
  const m = /^\(([^,]+),([^)]+)\)$/.exec(v);
  const x = m ? Number(m[1]) : NaN;
  const y = m ? Number(m[2]) : NaN;
  if (!Number.isFinite(x) || !Number.isFinite(y)) {
    throw new ValueRejected(`column "${col.source}": point ${JSON.stringify(v)} has no finite coordinates for a GEO_POINT`);
  }
  return [x, y];
}

function scalar(col: ColumnPlan, v: JsonValue): JsonValue {
  if (v === null) return null;
  switch (col.kind) {
    case 'plain':
    case 'ip':
      return v;
    case 'exact-number':
      return typeof v === 'number' || v instanceof LosslessNumber ? String(v) : v;
    case 'float':
      // A float's shortest text parses back to the same double; CrateDB reads NaN/Infinity strings.
      return v instanceof LosslessNumber ? Number(v.value) : v;
    case 'text': {
      let s = exactText(v);
      if (col.isKey && (typeof v === 'number' || v instanceof LosslessNumber)) s = canonicalNumberText(s);
      if (col.indexedText && s.length * 3 > MAX_INDEXED_TEXT_BYTES && Buffer.byteLength(s) > MAX_INDEXED_TEXT_BYTES) {
        throw new ValueRejected(
          `column "${col.source}": a text of ${Buffer.byteLength(s)} bytes is over the ${MAX_INDEXED_TEXT_BYTES}-byte limit of an indexed CrateDB TEXT column; ` +
            (col.isKey ? 'a key column is always indexed' : 'set crate.textColumn to "unindexed" (or "fulltext") to keep such values, for tables created after the change'),
        );
      }
      return s;
    }
    case 'timestamp':
      return typeof v === 'string' ? timestamp(col, v) : v;
    case 'json-object':
      checkObjectNumbers(col, v);
      return encodeJsonColumn(v);
    case 'json-text':
      return toJson(v);
    case 'geo-point':
      return geoPoint(col, v);
  }
}

function convert(col: ColumnPlan, v: JsonValue, depth: number): JsonValue {
  if (depth < col.dims && Array.isArray(v)) return v.map((e) => convert(col, e, depth + 1));
  // A json column's null is a JSON null only at the top of a non-array column; SQL NULL is null.
  return scalar(col, v);
}

/** The parameter value of one column; throws ValueRejected. */
export function columnValue(col: ColumnPlan, row: Row): JsonValue {
  const v = row[col.source];
  return v === undefined ? null : convert(col, v, 0);
}

const exactNumber = (text: string) => new LosslessNumber(text);

/** The row image to convert: parsed again from its raw text, every number exact, where the plan needs that. */
export function rowImage(plan: TablePlan, change: Change): Row {
  if (plan.exactNumbers && change.raw !== null) return losslessParse(change.raw, null, { parseNumber: exactNumber, onDuplicateKey: lastValue }) as Row;
  if (change.row === null) throw new ValueRejected(`change ${change.id} carries no row`);
  return change.row;
}

/** member positions of the row being read (reused: one row at a time) */
const at: number[] = [];
/** where each column's value lies in the row being read: start, end (-1: absent) */
const valueAt: number[] = [];

/**
 * Per list of columns: each source name's place in it, and per member position the name last seen
 * there and its place (-1: not a column). Rows of a table mostly have the same names in the same
 * order, so a name is compared where it stands in the text instead of being cut out to look it up.
 */
interface NamePlaces {
  byName: Map<string, number>;
  names: string[];
  places: number[];
  /** per list of member names a source gave (Change.columns): each member's place, the last list asked first */
  byColumns: WeakMap<readonly string[], Int32Array>;
  lastColumns: readonly string[] | null;
  lastPlaces: Int32Array;
}
const namePlaces = new WeakMap<readonly ColumnPlan[], NamePlaces>();

function sameAt(text: string, from: number, to: number, name: string): boolean {
  if (to - from !== name.length) return false;
  for (let k = 0; k < name.length; k++) if (text.charCodeAt(from + k) !== name.charCodeAt(k)) return false;
  return true;
}

/** Each member's place in the columns (-1: not one of them), for a list of member names. */
function placesOf(np: NamePlaces, columns: readonly string[]): Int32Array {
  if (columns === np.lastColumns) return np.lastPlaces;
  let places = np.byColumns.get(columns);
  if (!places) np.byColumns.set(columns, (places = Int32Array.from(columns, (name) => np.byName.get(name) ?? -1)));
  np.lastColumns = columns;
  np.lastPlaces = places;
  return places;
}

/**
 * Finds the value of each of `cols` in a row image's text (valueAt): where the source found them
 * reading the text (Change.values), or by scanning it; false when the text is not of the plain form
 * read here.
 */
function findValues(text: string, cols: readonly ColumnPlan[], change: Change): boolean {
  let np = namePlaces.get(cols);
  if (!np) {
    np = { byName: new Map(cols.map((c, i) => [c.source, i])), names: [], places: [], byColumns: new WeakMap(), lastColumns: null, lastPlaces: new Int32Array(0) };
    namePlaces.set(cols, np);
  }
  for (let i = 0; i < 2 * cols.length; i++) valueAt[i] = -1;
  const found = change.values;
  if (found !== undefined && change.valuesAt !== undefined && change.columns !== undefined && change.raw === text) {
    // The source's scan gave up on repeated and escaped names, so each place here is taken once.
    const places = placesOf(np, change.columns);
    const positions = found.at;
    for (let m = 0, k = change.valuesAt; m < places.length; m++, k += 2) {
      const i = places[m];
      if (i < 0) continue;
      valueAt[2 * i] = positions[k];
      valueAt[2 * i + 1] = positions[k + 1];
    }
    return true;
  }
  const members = memberPositions(text, at);
  if (members < 0) return false;
  for (let m = 0; m < members; m++) {
    const from = at[4 * m];
    const to = at[4 * m + 1];
    let i: number;
    // A name kept here never holds a backslash, so text equal to it holds no escape either.
    if (m < np.names.length && sameAt(text, from, to, np.names[m])) {
      i = np.places[m];
    } else {
      const name = text.slice(from, to);
      // an escaped name is not the column's name as written: leave it to the parser
      if (name.includes('\\')) return false;
      i = np.byName.get(name) ?? -1;
      np.names[m] = name;
      np.places[m] = i;
    }
    if (i < 0) continue;
    if (valueAt[2 * i] >= 0) return false;
    valueAt[2 * i] = at[4 * m + 2];
    valueAt[2 * i + 1] = at[4 * m + 3];
  }
  return true;
}

const NULL_BYTES = [110, 117, 108, 108];
const QUOTE = 34;

function isNullAt(text: string, from: number, to: number): boolean {
  return from < 0 || (to - from === 4 && text.startsWith('null', from));
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** `-` or a digit: the start of a JSON number */
function isNumberStart(c: number): boolean {
  return c === 45 || isDigit(c);
}

/** a number an OBJECT might not keep exactly (a fraction, an exponent, 16+ digits), or the wrapper's key; strings included, to be safe */
export const OBJECT_NEEDS_PARSING = /\d[.eE]|\d{16}|"_value"/;

// The two checks below answer for text[from, to) in place, as the regular expressions above would
// for its slice. Both ran for every timestamp and jsonb value of a drain, and a slice, a match
// object and its captures per value were 11% of what the drainer allocated (a sampling heap
// profile of a mixed drain into CrateDB), which the collector then had to make room for.

function digitsAt(t: string, i: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (!isDigit(t.charCodeAt(i + k))) return false;
  return true;
}

/** OBJECT_NEEDS_PARSING.test(t.slice(from, to)), without the slice. */
export function objectNeedsParsingAt(t: string, from: number, to: number): boolean {
  let digits = 0;
  for (let i = from; i < to; i++) {
    const c = t.charCodeAt(i);
    if (isDigit(c)) {
      if (++digits === 16) return true;
      continue;
    }
    if (digits > 0 && (c === 46 || c === 101 || c === 69)) return true;
    digits = 0;
    if (c === QUOTE && i + 8 <= to && t.startsWith('"_value"', i)) return true;
  }
  return false;
}

/**
 * True only when t[from, to) is a timestamp that timestamp() passes as it is: TIMESTAMP_IN_RANGE
 * matches, the year is not 0000, and a key has no sub-millisecond digit. False is no verdict: the
 * caller asks timestamp() itself, which refuses with the reason or passes the value.
 */
export function timestampFitsAt(t: string, from: number, to: number, isKey: boolean): boolean {
  if (to - from < 10 || !digitsAt(t, from, 4) || t.charCodeAt(from + 4) !== 45 || !digitsAt(t, from + 5, 2) || t.charCodeAt(from + 7) !== 45 || !digitsAt(t, from + 8, 2)) return false;
  if (t.startsWith('0000', from)) return false;
  let i = from + 10;
  const sep = t.charCodeAt(i);
  if (i < to && (sep === 84 || sep === 32)) {
    // T or a space, then hh:mm:ss and maybe a fraction
    if (to - i < 9 || !digitsAt(t, i + 1, 2) || t.charCodeAt(i + 3) !== 58 || !digitsAt(t, i + 4, 2) || t.charCodeAt(i + 6) !== 58 || !digitsAt(t, i + 7, 2)) return false;
    i += 9;
    if (i < to && t.charCodeAt(i) === 46) {
      const fraction = ++i;
      while (i < to && isDigit(t.charCodeAt(i))) i++;
      if (i === fraction) return false;
      if (isKey) for (let k = fraction + 3; k < i; k++) if (t.charCodeAt(k) !== 48) return false;
    }
  }
  if (i === to) return true;
  const zone = t.charCodeAt(i);
  if (zone === 90) return i + 1 === to; // Z
  if (zone !== 43 && zone !== 45) return false;
  if (to - i < 3 || !digitsAt(t, i + 1, 2)) return false;
  i += 3;
  // then up to two more parts of the offset, each :mm or mm
  for (let part = 0; part < 2 && i < to; part++) {
    if (t.charCodeAt(i) === 58) i++;
    if (to - i < 2 || !digitsAt(t, i, 2)) return false;
    i += 2;
  }
  return i === to;
}

/**
 * Writes the parameter value of one column given as its JSON text, text[from, to), the same value
 * that columnValue() gives for the parsed value; false (having written part of it, maybe) when this
 * value needs parsing. Throws ValueRejected as columnValue().
 */
function writeTextValue(out: ParamRows, col: ColumnPlan, text: string, from: number, to: number): boolean {
  if (isNullAt(text, from, to)) {
    for (const b of NULL_BYTES) out.byte(b);
    return true;
  }
  if (col.dims > 0) {
    const t = arrayText(col, text.slice(from, to));
    if (t === null) return false;
    out.text(t);
    return true;
  }
  const first = text.charCodeAt(from);
  switch (col.kind) {
    case 'plain':
    case 'ip':
    case 'float':
      out.text(text, from, to);
      return true;
    case 'exact-number':
      if (!isNumberStart(first)) {
        out.text(text, from, to);
      } else {
        out.byte(QUOTE);
        out.text(text, from, to);
        out.byte(QUOTE);
      }
      return true;
    case 'text':
      if (first === QUOTE) {
        // the text of an escaped string is never longer in UTF-8 than the string itself
        if (col.indexedText && (to - from) * 3 > MAX_INDEXED_TEXT_BYTES && Buffer.byteLength(text.slice(from, to)) > MAX_INDEXED_TEXT_BYTES) return false;
        out.text(text, from, to);
        return true;
      }
      if (col.isKey || !(isNumberStart(first) || sameAt(text, from, to, 'true') || sameAt(text, from, to, 'false'))) return false;
      out.byte(QUOTE);
      out.text(text, from, to);
      out.byte(QUOTE);
      return true;
    case 'timestamp': {
      if (first === QUOTE && !timestampFitsAt(text, from + 1, to - 1, col.isKey)) {
        const inner = text.slice(from + 1, to - 1);
        if (inner.includes('\\')) return false;
        timestamp(col, inner);
      }
      out.text(text, from, to);
      return true;
    }
    case 'json-object':
      if (first !== 123 || objectNeedsParsingAt(text, from, to)) return false;
      out.text(text, from, to);
      return true;
    default:
      return false;
  }
}

/** a one-dimensional array of strings and nulls */
const STRING_ARRAY = /^\[(?:\s*(?:"(?:[^"\\]|\\.)*"|null)\s*(?:,\s*(?:"(?:[^"\\]|\\.)*"|null)\s*)*)?\]$/;

/** An array value's parameter text, for the kinds whose elements pass as they are; null otherwise. */
function arrayText(col: ColumnPlan, t: string): string | null {
  if (t.charCodeAt(0) !== 91) return null;
  if (col.kind === 'plain' || col.kind === 'float' || col.kind === 'ip') return t;
  if (col.kind === 'text' && col.dims === 1 && STRING_ARRAY.test(t) && !(col.indexedText && Buffer.byteLength(t) > MAX_INDEXED_TEXT_BYTES)) return t;
  return null;
}

/**
 * Writes the parameter row of `cols` straight from the row image's text, value by value, into the
 * row begun on `out`; false when a value needs parsing (the row is then to be written again).
 */
function writeTextArgs(out: ParamRows, change: Change, text: string, cols: readonly ColumnPlan[], checkKeys: boolean): boolean {
  if (!findValues(text, cols, change)) return false;
  if (checkKeys) for (let i = 0; i < cols.length; i++) if (cols[i].isKey && isNullAt(text, valueAt[2 * i], valueAt[2 * i + 1])) keyIsNull(cols[i]);
  out.byte(91); // [
  for (let i = 0; i < cols.length; i++) {
    if (i > 0) out.byte(44); // ,
    if (!writeTextValue(out, cols[i], text, valueAt[2 * i], valueAt[2 * i + 1])) return false;
  }
  out.byte(93); // ]
  return true;
}

function keyIsNull(k: ColumnPlan): never {
  throw new ValueRejected(`key column "${k.source}" is NULL; CrateDB keys cannot be NULL`);
}

/** Writes the row of `values` as a JSON array (the parsing path). */
function writeValues(out: ParamRows, values: readonly JsonValue[]): void {
  out.byte(91);
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out.byte(44);
    out.text(toJson(values[i]));
  }
  out.byte(93);
}

/**
 * Writes the parameter row of `cols` into the row begun on `out`: from the row image's text where
 * it can, else from the parsed image. Throws ValueRejected (the caller cancels the row).
 */
function writeArgs(out: ParamRows, plan: TablePlan, change: Change, cols: readonly ColumnPlan[], checkKeys: boolean): void {
  if (change.raw !== null) {
    const start = out.length;
    if (writeTextArgs(out, change, change.raw, cols, checkKeys)) return;
    out.cancelTo(start);
  }
  const row = rowImage(plan, change);
  if (checkKeys) for (const k of plan.keys) if (row[k.source] === null || row[k.source] === undefined) keyIsNull(k);
  writeValues(out, cols.map((c) => columnValue(c, row)));
}

/** Writes the upsert parameter row (values in plan.columns order) into the row begun on `out`; throws ValueRejected. */
export function writeUpsertArgs(out: ParamRows, plan: TablePlan, change: Change): void {
  writeArgs(out, plan, change, plan.columns, true);
}

/** Writes the delete parameter row (key values in key order) into the row begun on `out`; throws ValueRejected. */
export function writeDeleteArgs(out: ParamRows, plan: TablePlan, change: Change): void {
  writeArgs(out, plan, change, plan.keys, false);
}

/** One row written by `write`, as a string (for the builders that add values around it, and for tests). */
function asText(write: (out: ParamRows) => void): string {
  const out = new ParamRows(256);
  write(out);
  return out.toString();
}

/** JSON text of the upsert parameter row (values in plan.columns order). */
export function upsertArgs(plan: TablePlan, change: Change): string {
  return asText((out) => writeUpsertArgs(out, plan, change));
}

/** JSON text of a partial update's parameter row: the `columns` values, then the key values. */
export function updateArgs(plan: TablePlan, change: Change, columns: readonly ColumnPlan[]): string {
  const row = rowImage(plan, change);
  const values = [...columns, ...plan.keys].map((c) => toJson(columnValue(c, row)));
  return `[${values.join(',')}]`;
}

/** JSON text of the delete parameter row (key values in key order). */
export function deleteArgs(plan: TablePlan, change: Change): string {
  return asText((out) => writeDeleteArgs(out, plan, change));
}
