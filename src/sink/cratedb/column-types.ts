// Postgres column → CrateDB column (pure): the DDL type and how values are converted on the way.
//
// Choices that lose or refuse something, on purpose (the rest keeps values exactly):
// - timestamps keep milliseconds (CrateDB's resolution; the rest is floored by CrateDB). infinity,
//   -infinity, BC and years past 9999 cannot be stored: such rows are rejected before they are
//   sent, and the drainer parks them as dead letters with the reason. A timestamp KEY with
//   sub-millisecond digits is rejected too: two source keys would fold into one target row.
// - text: 'plain' (the default) is indexed and refuses values over 32,766 bytes; such rows are
//   parked with a message naming crate.textColumn. 'unindexed' (INDEX OFF, no column store) keeps
//   values of megabytes but cannot be filtered fast, sorted or aggregated; 'fulltext' keeps them
//   analysed. Key columns are always plain. bytea (hex text, twice its size) is always unindexed:
//   nobody filters on it and it must not be lost.
// - json/jsonb as OBJECT: a top-level array or scalar cannot be an OBJECT, so it travels wrapped as
//   {"_value": v}; an object whose only key is "_value" is wrapped too, which keeps the mapping
//   one-to-one (see row-values.ts decodeJsonColumn; `verify` compares through it). An OBJECT
//   keeps numbers as 64-bit integers or doubles: a row with a json number that would change
//   (0.1000000000000000000001, integers past 2^63) is parked, naming crate.jsonColumn = 'text'.
// - numeric without precision (or beyond NUMERIC(38)) becomes TEXT holding the exact number text.
// - point becomes GEO_POINT [x, y] = [lon, lat]; CrateDB stores it to about a centimetre and
//   refuses points outside the lon/lat range (parked).
// - inet becomes IP; an address with a network prefix (192.168.0.5/24) is refused by CrateDB
//   (parked); cidr, macaddr and everything else without a CrateDB type become TEXT.
import type { ColumnInfo, TableInfo } from '../../core/change.js';
import type { CrateOptions } from '../../core/config.js';
import { TableError } from '../../core/errors.js';
import { displayName } from '../../core/identifiers.js';
import { crateColumnName } from './names.js';

/** How a value is converted before it is sent (see row-values.ts). */
export type ValueKind =
  /** as it arrived: booleans, small integers, uuid, bit strings */
  | 'plain'
  /** bigint, numeric: sent as text so that no double ever holds it */
  | 'exact-number'
  /** real, double: numbers, or the strings NaN / Infinity / -Infinity */
  | 'float'
  /** anything stored as TEXT; numbers keep their exact text, objects become JSON text */
  | 'text'
  | 'timestamp'
  | 'json-object'
  | 'json-text'
  | 'geo-point'
  | 'ip';

export interface ColumnPlan {
  /** the source column name (the key in row images) */
  source: string;
  /** the CrateDB column name */
  target: string;
  /** the CrateDB type with its storage clause, for CREATE TABLE and ADD COLUMN */
  ddl: string;
  kind: ValueKind;
  /** array dimensions: values are converted at this depth */
  dims: number;
  /** indexed text: values over 32,766 bytes are refused (checked before sending) */
  indexedText: boolean;
  isKey: boolean;
}

export interface TablePlan {
  schema: string;
  table: string;
  /** in source column order */
  columns: ColumnPlan[];
  /** in key order */
  keys: ColumnPlan[];
  /** rows must be read from their raw text with every number as written (numeric or json as text, composites) */
  exactNumbers: boolean;
}

export interface CrateFeatures {
  /** the UUID type exists (CrateDB 6.2+) */
  uuid: boolean;
}

export type PlanOptions = Pick<CrateOptions, 'jsonColumn' | 'textColumn'>;

/** CrateDB refuses a term over this many bytes in an indexed (or column-stored) text value. */
export const MAX_INDEXED_TEXT_BYTES = 32_766;

const TEXT_STORAGE: Record<PlanOptions['textColumn'], string> = {
  plain: '',
  unindexed: ' INDEX OFF STORAGE WITH (columnstore = false)',
  fulltext: ' INDEX USING FULLTEXT',
};

interface Base {
  type: string;
  kind: ValueKind;
  /** text-like: takes the crate.textColumn storage clause */
  textual?: boolean;
  /** always stored unindexed */
  bulky?: boolean;
}

function numericBase(formatted: string): Base {
  const m = /^numeric\((\d+),(-?\d+)\)$/.exec(formatted);
  if (m) {
    const p = Number(m[1]);
    const s = Number(m[2]);
    if (p <= 38 && s >= 0 && s <= p) return { type: `NUMERIC(${p}, ${s})`, kind: 'exact-number' };
  }
  return { type: 'TEXT', kind: 'text', textual: true };
}

function lengthOf(formatted: string): number | null {
  const m = /\((\d+)\)$/.exec(formatted);
  return m ? Number(m[1]) : null;
}

function baseType(c: ColumnInfo, opts: PlanOptions, features: CrateFeatures): Base {
  // Enums, composites, ranges and types from extensions have no CrateDB type: their text is kept.
  if (c.typtype === 'e' || c.typtype === 'c' || c.typtype === 'r' || c.typtype === 'm' || c.baseType === 'other') {
    return { type: 'TEXT', kind: 'text', textual: true };
  }
  switch (c.baseType) {
    case 'int2': return { type: 'SMALLINT', kind: 'plain' };
    case 'int4': return { type: 'INTEGER', kind: 'plain' };
    case 'int8': return { type: 'BIGINT', kind: 'exact-number' };
    case 'numeric': return numericBase(c.baseFormatted);
    case 'float4': return { type: 'REAL', kind: 'float' };
    case 'float8': return { type: 'DOUBLE PRECISION', kind: 'float' };
    case 'bool': return { type: 'BOOLEAN', kind: 'plain' };
    case 'varchar': {
      const n = lengthOf(c.baseFormatted);
      return { type: n === null ? 'TEXT' : `VARCHAR(${n})`, kind: 'text', textual: true };
    }
    case 'bpchar': {
      const n = lengthOf(c.baseFormatted);
      return { type: n === null ? 'TEXT' : `CHARACTER(${n})`, kind: 'text', textual: true };
    }
    case 'timestamp':
    case 'date': return { type: 'TIMESTAMP WITHOUT TIME ZONE', kind: 'timestamp' };
    case 'timestamptz': return { type: 'TIMESTAMP WITH TIME ZONE', kind: 'timestamp' };
    case 'uuid': return features.uuid ? { type: 'UUID', kind: 'plain' } : { type: 'TEXT', kind: 'text', textual: true };
    case 'json':
    case 'jsonb':
      if (opts.jsonColumn === 'text') return { type: 'TEXT', kind: 'json-text', textual: true };
      return { type: opts.jsonColumn === 'object-dynamic' ? 'OBJECT(DYNAMIC)' : 'OBJECT(IGNORED)', kind: 'json-object' };
    case 'bytea': return { type: 'TEXT', kind: 'text', bulky: true };
    case 'inet': return { type: 'IP', kind: 'ip' };
    case 'point': return { type: 'GEO_POINT', kind: 'geo-point' };
    case 'bit': {
      const n = lengthOf(c.baseFormatted);
      return n === null ? { type: 'TEXT', kind: 'text', textual: true } : { type: `BIT(${n})`, kind: 'plain' };
    }
    // text, "char", name, time, timetz, interval, cidr, macaddr, money, xml, tsvector, varbit …
    default: return { type: 'TEXT', kind: 'text', textual: true };
  }
}

export function planColumn(c: ColumnInfo, isKey: boolean, opts: PlanOptions, features: CrateFeatures): ColumnPlan {
  const base = baseType(c, opts, features);
  let type = base.type;
  for (let i = 0; i < c.dims; i++) type = `ARRAY(${type})`;
  // A key must be indexed; CrateDB refuses INDEX OFF (and analysed text) in a primary key.
  const storage = isKey ? '' : base.bulky ? TEXT_STORAGE.unindexed : base.textual ? TEXT_STORAGE[opts.textColumn] : '';
  const indexedText = (base.textual === true || base.bulky === true) && storage === '';
  return { source: c.name, target: crateColumnName(c.name), ddl: `${type}${storage}`, kind: base.kind, dims: c.dims, indexedText, isKey };
}

/**
 * Plans a table. Throws a TableError when CrateDB cannot hold it as it is: a key column of a type
 * a primary key cannot have, or two columns that map to one name.
 */
export function planTable(t: TableInfo, opts: PlanOptions, features: CrateFeatures): TablePlan {
  const name = displayName(t.sourceSchema, t.sourceTable);
  const keySet = new Set(t.keyColumns);
  const columns = t.columns.map((c) => planColumn(c, keySet.has(c.name), opts, features));
  const seen = new Map<string, string>();
  for (const c of columns) {
    const other = seen.get(c.target);
    if (other !== undefined) throw new TableError(`columns "${other}" and "${c.source}" of ${name} would both be "${c.target}" in CrateDB; rename one of them`);
    seen.set(c.target, c.source);
  }
  const keys = t.keyColumns.map((k) => {
    const col = columns.find((c) => c.source === k);
    if (!col) throw new TableError(`key column "${k}" of ${name} is not among its columns`);
    if (col.dims > 0 || col.kind === 'json-object' || col.kind === 'geo-point') {
      throw new TableError(
        `key column "${k}" of ${name} would be ${col.ddl} in CrateDB, which a primary key cannot be; ` +
          'name other key columns for this table in the configuration ({"name": …, "keyColumns": [...]})',
      );
    }
    return col;
  });
  // Only text keeps a number's notation (1.50, 0.00000015); NUMERIC casts "1.5e-7" exactly, an
  // OBJECT holds doubles, and a number a double cannot hold is a LosslessNumber in any case.
  const exactNumbers = t.columns.some((c, i) => (c.baseType === 'numeric' && columns[i].kind === 'text') || columns[i].kind === 'json-text' || c.typtype === 'c');
  return { schema: t.targetSchema, table: t.targetTable, columns, keys, exactNumbers };
}
