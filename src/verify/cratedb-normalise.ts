// What a CrateDB table holds of each source value, in the canonical form verify hashes (pure).
//
// Both sides go through one function, heldValue(): the source's value after the sink's own
// conversion (row-values.ts columnValue, i.e. exactly what the sink sends), and the value CrateDB
// answers when the column is read. Each kind then maps both onto one form:
// - timestamp, timestamptz, date: epoch milliseconds (CrateDB floors microseconds, also before 1970).
// - bigint, numeric(p,s): exact decimal text without exponent or trailing zeros; CrateDB answers
//   NUMERIC::TEXT as 1.500E-7 or 0E-10, so both sides go through exactNumberText(). numeric stored
//   as TEXT (no precision): the same, so 1.50 and 1.5 are one value.
// - real: the single-precision value (Math.fround); double: the double; NaN/±Infinity as strings.
// - json as OBJECT: decodeJsonColumn (the {"_value": …} wrapper undone); json as TEXT and composites
//   (stored as their JSON text): parsed, so key order and number notation do not count.
// - bytea: lower-case hex without the \x (the sink stores Postgres's \x… text).
// - point: quantised as Lucene encodes a GEO_POINT (32 bits per coordinate). CrateDB answers the
//   original double from the stored document in some plans and the quantised one from doc values in
//   others (seen on 6.4.3: `SELECT pt` alone vs with other columns); quantising both sides is
//   idempotent, so either answer compares equal.
// - inet: one text per address: CrateDB's IP answers ::ffff:1.2.3.4 as 1.2.3.4 and ::1.2.3.4 as
//   ::102:304 (RFC 5952, no embedded IPv4 except for v4-mapped addresses).
// - uuid lower case; BIT(n) without CrateDB's B'…' quoting; everything else as the sink sent it.
// A value the sink refuses (ValueRejected: infinity, BC, a sub-millisecond timestamp KEY, an
// over-long indexed text, a json number an OBJECT would round …) becomes a fixed marker object that
// no CrateDB column answers, so such a row (parked by the sink) shows as different or missing,
// never equal, and a sub-millisecond key never folds into the millisecond key of another row.
//
// Keys. UUID and BIT columns have no order comparison in CrateDB 6.4.3 (and UUID sorts by two signed
// longs), so they are ordered and bounded as format('%s', c), their text, which orders as in
// Postgres; that comparison cannot use the index, a cost paid only by such keys. UUID lookups use
// `u = ? OR …`: `u = ANY(?)` and `u IN (…)` fail unless the values come in CrateDB's internal order. Range bounds and
// lookups convert a key (from either side) as the sink converts a key it writes; a bound the sink
// would refuse (a sub-millisecond timestamp) is floored instead, which keeps the ranges ordered.
import { isIPv4, isIPv6 } from 'node:net';
import { LosslessNumber, parse as losslessParse } from 'lossless-json';
import type { ColumnInfo, JsonValue, Row, TableInfo } from '../core/change.js';
import { TableError } from '../core/errors.js';
import { displayName, qualify, quoteIdent } from '../core/identifiers.js';
import { planTable, type ColumnPlan, type PlanOptions } from '../sink/cratedb/column-types.js';
import { parseAnswer } from '../sink/cratedb/crate-client.js';
import { columnValue, decodeJsonColumn } from '../sink/cratedb/row-values.js';
import { canonicalJson, epochMillis, exactNumberText, normaliseColumns } from './canonical.js';

/** The canonical form a column's values take on both sides. */
export type HeldKind =
  | 'number' | 'decimal' | 'float8' | 'float4' | 'boolean' | 'text' | 'decimal-text' | 'composite-text'
  | 'bytea' | 'uuid' | 'bits' | 'timestamp' | 'json-object' | 'json-text' | 'geo-point' | 'ip';

export interface CrateReadColumn {
  info: ColumnInfo;
  /** how the sink converts the column's values (its kind follows the target column's real type) */
  plan: ColumnPlan;
  held: HeldKind;
  /** CrateDB's data_type of the column; null when the target lacks it (read as NULL) */
  dataType: string | null;
  /** the quoted CrateDB column */
  column: string;
  /** the SELECT expression */
  select: string;
  /** the expression keys are ordered and bounded by */
  compare: string;
  /** bounds of a BIT key compared as text are written B'…' */
  bitText: boolean;
  /**
   * `c = ANY(?)` finds keys: CrateDB 6.4.3 refuses it for UUID unless the values come in its
   * internal order ("values are out of order"), so UUID keys are looked up as `c = ? OR …`
   */
  anyLookup: boolean;
}

export interface CrateReadPlan {
  table: TableInfo;
  /** the quoted CrateDB table */
  qualified: string;
  /** false: the target table does not exist */
  exists: boolean;
  /** in source column order */
  columns: CrateReadColumn[];
  bySource: ReadonlyMap<string, CrateReadColumn>;
  /** in key order */
  keys: CrateReadColumn[];
  /** source columns the target table lacks */
  missing: string[];
}

const MARKER = 'value CrateDB cannot hold';

/** The fixed form of a value the sink refuses: no CrateDB column ever answers it. */
export function unstorable(v: JsonValue): JsonValue {
  return { [MARKER]: canonicalJson(v) };
}

function heldKind(c: ColumnInfo, p: ColumnPlan): HeldKind {
  switch (p.kind) {
    case 'exact-number': return 'decimal';
    case 'float': return c.baseType === 'float4' ? 'float4' : 'float8';
    case 'timestamp': case 'json-object': case 'json-text': case 'geo-point': case 'ip': return p.kind;
    case 'plain':
      if (c.baseType === 'int2' || c.baseType === 'int4') return 'number';
      if (c.baseType === 'bool') return 'boolean';
      if (c.baseType === 'uuid') return 'uuid';
      if (c.baseType === 'bit') return 'bits';
      return 'text';
    case 'text':
      if (c.typtype === 'c') return 'composite-text';
      if (c.baseType === 'numeric') return 'decimal-text';
      if (c.baseType === 'bytea') return 'bytea';
      if (c.baseType === 'uuid') return 'uuid';
      return 'text';
  }
}

const baseOf = (dataType: string) => dataType.replace(/(_array)+$/, '');

/**
 * How to read and compare a table in CrateDB. `dataTypes`: target column → CrateDB data_type as
 * information_schema answers it; null when the table does not exist; undefined when unknown (then
 * every column is assumed present, typed as the sink plans it).
 */
export function crateReadPlan(t: TableInfo, opts: PlanOptions, dataTypes: ReadonlyMap<string, string> | null | undefined): CrateReadPlan {
  const typeOf = (target: string) => (dataTypes === undefined ? undefined : dataTypes?.get(target) ?? null);
  // A UUID column is TEXT in a table created before CrateDB 6.2; the values are the same text.
  const asPlanned = planTable(t, opts, { uuid: true });
  const uuidAsText = asPlanned.columns.some((p, i) => t.columns[i].baseType === 'uuid' && typeOf(p.target)?.startsWith('text'));
  const plan = uuidAsText ? planTable(t, opts, { uuid: false }) : asPlanned;
  const columns = plan.columns.map((p, i): CrateReadColumn => {
    const info = t.columns[i];
    const actual = typeOf(p.target);
    const base = actual ? baseOf(actual) : null;
    let kind = p.kind;
    // json follows the table as it was created (crate.jsonColumn applies to tables created later).
    if ((kind === 'json-object' || kind === 'json-text') && base) kind = base === 'object' ? 'json-object' : 'json-text';
    const cp: ColumnPlan = kind === p.kind ? p : { ...p, kind };
    const held = heldKind(info, cp);
    const q = quoteIdent(p.target);
    const select = actual === null ? 'NULL' : held === 'decimal' && p.dims === 0 ? `${q}::TEXT` : q;
    const textCompared = base === 'uuid' || base === 'bit' || (actual === undefined && (held === 'uuid' || held === 'bits'));
    return { info, plan: cp, held, dataType: actual ?? null, column: q, select, compare: textCompared ? `format('%s', ${q})` : q,
      bitText: textCompared && held === 'bits', anyLookup: base !== 'uuid' && !(actual === undefined && held === 'uuid') };
  });
  const keys = t.keyColumns.map((k) => columns.find((c) => c.info.name === k)!);
  const exists = dataTypes !== null;
  const missing = exists && dataTypes !== undefined ? columns.filter((c) => c.dataType === null).map((c) => c.info.name) : [];
  const lackingKeys = keys.filter((k) => missing.includes(k.info.name));
  if (lackingKeys.length > 0) {
    throw new TableError(
      `CrateDB table ${displayName(plan.schema, plan.table)} lacks key column(s) ${lackingKeys.map((k) => k.plan.target).join(', ')}; ` +
        'drop it to have it created again, or check the configured key columns',
    );
  }
  return { table: t, qualified: qualify(plan.schema, plan.table), exists, columns, bySource: new Map(columns.map((c) => [c.info.name, c])), keys, missing };
}

// Lucene's GeoEncodingUtils: 32-bit cells, floored; the top edge is nudged down one ulp first.
const LAT_DECODE = 1 / (2 ** 32 / 180.0);
const LON_DECODE = 1 / (2 ** 32 / 360.0);
const LAT_TOP = 90 - 2 ** -46; // Math.nextDown(90.0)
const LON_TOP = 180 - 2 ** -45; // Math.nextDown(180.0)

export function quantiseGeo(lon: number, lat: number): [number, number] {
  const x = lon === 180 ? LON_TOP : lon;
  const y = lat === 90 ? LAT_TOP : lat;
  return [Math.floor(x / LON_DECODE) * LON_DECODE, Math.floor(y / LAT_DECODE) * LAT_DECODE];
}

/** One text per IP address, as CrateDB writes it (RFC 5952; v4-mapped addresses as IPv4). */
export function canonicalIp(s: string): string {
  if (isIPv4(s)) return s;
  if (!isIPv6(s)) return s; // with a prefix length (refused by CrateDB) or not an address
  const host = new URL(`http://[${s}]/`).hostname.slice(1, -1);
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(host);
  if (!m) return host;
  const hi = parseInt(m[1], 16);
  const lo = parseInt(m[2], 16);
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
}

const numberText = (v: JsonValue): string | null =>
  v instanceof LosslessNumber ? v.value : typeof v === 'number' ? String(v) : typeof v === 'string' ? v : null;

function decimal(v: JsonValue): JsonValue {
  const s = numberText(v);
  if (s === null) return v;
  try {
    return exactNumberText(s);
  } catch {
    return s; // NaN, Infinity (never a CrateDB NUMERIC)
  }
}

function float(v: JsonValue, single: boolean): JsonValue {
  const s = numberText(v);
  if (s === null) return v;
  const n = Number(s);
  if (!Number.isFinite(n)) return /^-?Infinity$|^NaN$/.test(s) ? s : String(n);
  return single ? Math.fround(n) : n;
}

function parsedText(v: JsonValue): JsonValue {
  if (typeof v !== 'string') return decodeJsonColumn(v) ?? null;
  try {
    return parseAnswer(v) as JsonValue;
  } catch {
    return v;
  }
}

function geo(v: JsonValue): JsonValue {
  if (!Array.isArray(v) || v.length !== 2) return v;
  const [x, y] = v.map((e) => Number(numberText(e)));
  return Number.isFinite(x) && Number.isFinite(y) ? quantiseGeo(x, y) : v;
}

function heldScalar(kind: HeldKind, v: JsonValue): JsonValue {
  switch (kind) {
    case 'number': case 'boolean': case 'text': return v;
    case 'decimal': case 'decimal-text': return decimal(v);
    case 'float8': return float(v, false);
    case 'float4': return float(v, true);
    case 'composite-text': case 'json-text': return parsedText(v);
    case 'json-object': return decodeJsonColumn(v) ?? null;
    case 'bytea': return typeof v === 'string' ? (v.startsWith('\\x') ? v.slice(2) : v).toLowerCase() : v;
    case 'uuid': return typeof v === 'string' ? v.toLowerCase() : v;
    case 'bits': return typeof v === 'string' ? v.replace(/^B'(.*)'$/, '$1') : v;
    case 'timestamp': {
      if (typeof v === 'string') return epochMillis(v) ?? unstorable(v);
      const s = numberText(v);
      return s === null ? v : Number(s);
    }
    case 'geo-point': return geo(v);
    case 'ip': return typeof v === 'string' ? canonicalIp(v) : v;
  }
}

/** The canonical form of a value as sent by the sink or as read from CrateDB (arrays element-wise). */
export function heldValue(col: CrateReadColumn, v: JsonValue, depth = 0): JsonValue {
  if (v === null) return null;
  if (depth < col.plan.dims && Array.isArray(v)) return v.map((e) => heldValue(col, e, depth + 1));
  return heldScalar(col.held, v);
}

/** DigestForm.normaliseSourceRow: the canonical Row of what CrateDB holds of a source row. Never throws. */
export function normaliseSourceRow(plan: CrateReadPlan, row: Row): Row {
  return normaliseColumns(row, plan.table.columns, (c, v) => {
    const col = plan.bySource.get(c.name)!;
    try {
      return heldValue(col, columnValue(col.plan, row));
    } catch {
      return unstorable(v); // the sink parks such a row (ValueRejected)
    }
  });
}

/** The canonical Row of a row read with plan.columns' SELECT expressions (values in that order). */
export function targetRow(plan: CrateReadPlan, values: readonly JsonValue[]): Row {
  const out: Row = {};
  plan.columns.forEach((c, i) => { out[c.info.name] = heldValue(c, values[i] ?? null); });
  return out;
}

// ---- keys -------------------------------------------------------------------------------------

const DECIMAL = /^-?\d+(?:\.\d+)?$/;

function keyJsonValue(c: CrateReadColumn, v: JsonValue): JsonValue {
  if (v === null || typeof v !== 'number' && typeof v !== 'string') return v;
  switch (c.held) {
    case 'decimal': case 'decimal-text': return typeof v === 'string' && DECIMAL.test(v) ? new LosslessNumber(v) : v;
    case 'bytea': return `\\x${String(v)}`;
    case 'timestamp': {
      if (typeof v !== 'number') return v;
      const iso = new Date(v).toISOString();
      // A date column holds midnight; a date's text casts back exactly.
      return c.info.baseType === 'date' && iso.endsWith('T00:00:00.000Z') ? iso.slice(0, 10) : iso;
    }
    default: return v;
  }
}

/** Key objects as jsonb writes them: keys by length then bytes, `": "` and `", "`. */
function jsonbObjectText(entries: [string, JsonValue][]): string {
  const sorted = entries.slice().sort(([a], [b]) => Buffer.byteLength(a) - Buffer.byteLength(b) || Buffer.compare(Buffer.from(a), Buffer.from(b)));
  return `{${sorted.map(([k, v]) => `${JSON.stringify(k)}: ${canonicalText(v)}`).join(', ')}}`;
}

function canonicalText(v: JsonValue): string {
  return v instanceof LosslessNumber ? v.value : typeof v === 'object' && v !== null ? canonicalJson(v) : JSON.stringify(v);
}

/** KeyRef.json of a target row (canonical Row): castable into the source's column types. */
export function targetKeyJson(plan: CrateReadPlan, row: Row): string {
  return jsonbObjectText(plan.keys.map((k) => [k.info.name, keyJsonValue(k, row[k.info.name] ?? null)]));
}

const exactNumbers = (text: string) => new LosslessNumber(text);
const MAX_MS = 8.64e15;

/** A timestamp bound the sink would refuse: floored, clamped, never null (keeps bounds in order). */
function timestampBound(raw: JsonValue): number {
  const s = typeof raw === 'string' ? raw : '';
  const ms = epochMillis(s);
  if (ms !== null) return Math.max(-MAX_MS, Math.min(MAX_MS, ms));
  return s.startsWith('-') || / BC$/.test(s) ? -MAX_MS : MAX_MS;
}

/**
 * The CrateDB values of a key (KeyRef.json from either side), in key order, as the sink writes
 * them: for 'lookup' null when the sink would never have written this key (a NULL, a refused
 * value); for 'bound' always values (a refused timestamp floored), in the form `compare` needs.
 */
export function keyParams(plan: CrateReadPlan, keyJson: string, purpose: 'bound' | 'lookup'): JsonValue[] | null {
  const row = losslessParse(keyJson, null, exactNumbers) as Row;
  const out: JsonValue[] = [];
  for (const k of plan.keys) {
    const raw = row[k.info.name] ?? null;
    let v: JsonValue;
    try {
      v = columnValue(k.plan, row);
      if (k.held === 'timestamp' && typeof v === 'string') v = epochMillis(v) ?? (purpose === 'bound' ? timestampBound(raw) : null);
    } catch {
      if (purpose === 'lookup') return null;
      v = k.held === 'timestamp' ? timestampBound(raw) : raw instanceof LosslessNumber ? raw.value : raw;
    }
    if (v === null) return null;
    if (k.held === 'uuid' && typeof v === 'string') v = v.toLowerCase();
    if (purpose === 'bound' && k.bitText && typeof v === 'string') v = `B'${v}'`;
    out.push(v);
  }
  return out;
}
