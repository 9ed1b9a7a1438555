// The parameter row of a copied row, built by the source in SQL (pure): for the initial load, whose
// rows would otherwise be written as row images by Postgres and read back value by value by Node
// (row-values.ts). On two cores that reading was most of the load's own CPU.
//
// The SQL must give what upsertArgs() gives for the row's image, value for value: the same JSON
// value with the same number texts (its spacing may differ, which CrateDB does not see). So each
// column kind is built from the same output functions the image uses: Postgres writes a value the
// same way in to_jsonb(row) and json_build_array(value) (both categorise by the base type, and
// both print numbers, strings and timestamps with one function each), except floats, which jsonb
// turns into numerics by their output text (1e+20 is 100000000000000000000 in an image): json
// keeps that text, the same decimal, so CrateDB reads the same double from either, and the
// conversion is saved (0.9 µs of the 4.6 per row of bench/backfill.ts's chunk query, with one
// float and one array). Arrays go the same way, as json prints them (to_jsonb's text but for
// spacing and floats), except those of enums and ranges, which keep to_jsonb as their scalars do.
// Bigint and numeric go as their text in quotes (row-values.ts).
//
// What SQL cannot settle cheaply goes the old way, as the row's image: a row is "referred" when one
// of its values is one row-values.ts would refuse or convert (a NULL key, a timestamp outside years
// 1–9999 or a key with sub-millisecond digits, a text over the indexed-text limit, a json that is
// not an object or holds a number an OBJECT may not keep, an array of text that is not flat). The
// conditions are those of row-values.ts's fast path or wider, never narrower, so a row the SQL
// builds is one whose image row-values.ts would also have built from its text. The json test is
// row-values.ts's own regular expression on the same text (jsonb's, which the image holds too),
// given apart (CopyRowSql.matched): matched row by row it cost 1.7 µs per row, more than the rest
// of the row, so a chunk matches the texts of all its rows at once first. A column of a kind
// with no SQL form here (json kept as text, points, composite types, arrays of numbers that go as
// text or of timestamps, numeric keys kept as text, types from extensions) makes the whole table
// go the old way: copyRowSql() answers null. Texts are measured in bytes of UTF-8, so the SQL is
// only offered for a UTF8 database (the caller checks).
import type { ColumnInfo, TableInfo } from '../../core/change.js';
import { quoteIdent } from '../../core/identifiers.js';
import type { CopyRowSql } from '../sink.js';
import { MAX_INDEXED_TEXT_BYTES, type ColumnPlan, type TablePlan } from './column-types.js';

/** Built-in types whose JSON is a string of their output text (no number, no object). */
const STRING_TYPES = new Set([
  'text', 'varchar', 'bpchar', 'char', 'name', 'time', 'timetz', 'interval', 'cidr', 'macaddr', 'macaddr8', 'money',
  'bytea', 'bit', 'varbit', 'uuid', 'inet', 'xml', 'tsvector', 'tsquery',
]);
/** plain columns of these types pass as they are: numbers, booleans and strings whose text CrateDB reads */
const PLAIN_TYPES = new Set(['int2', 'int4', 'bool', 'uuid', 'bit']);
/** key columns whose text casts back to the same key (the load's position is kept as key texts) */
const KEY_TYPES = new Set(['int2', 'int4', 'int8', 'numeric', 'bool', 'uuid', 'text', 'varchar', 'bpchar', 'timestamp', 'timestamptz', 'date']);

/** A json number an OBJECT might not keep, or the wrapper's key: row-values.ts OBJECT_NEEDS_PARSING (no anchors: see CopyRowSql.matched). */
const OBJECT_NEEDS_PARSING = `'\\d[.eE]|\\d{16}|"_value"'`;

/** An enum, range or multirange: a string too, but a user-defined type, written through to_jsonb in both paths. */
function userStringType(c: ColumnInfo): boolean {
  return c.typtype === 'e' || c.typtype === 'r' || c.typtype === 'm';
}

interface ColumnSql {
  value: string;
  referred: string[];
  /** a text the row is referred for when it matches OBJECT_NEEDS_PARSING, and the value it is made from */
  matched?: { text: string; value: string };
}

function overLimit(text: string): string {
  return `octet_length(${text}) > ${MAX_INDEXED_TEXT_BYTES}`;
}

/** The SQL of one column, or null when its kind has no SQL form here. */
function columnSql(c: ColumnInfo, p: ColumnPlan, x: string): ColumnSql | null {
  const referred: string[] = [];
  if (p.isKey) {
    if (c.dims > 0 || !KEY_TYPES.has(c.baseType) || (c.typtype !== 'b' && c.typtype !== 'd')) return null;
    if (c.baseType === 'numeric' && p.kind !== 'exact-number') return null;
    referred.push(`${x} is null`);
  }
  if (c.dims > 0) {
    // Arrays of the kinds whose elements row-values.ts passes as they are.
    if (p.kind === 'plain' || p.kind === 'float' || p.kind === 'ip') return { value: x, referred };
    if (p.kind !== 'text' || c.dims !== 1 || !(userStringType(c) || (c.baseType !== 'other' && STRING_TYPES.has(c.baseType)))) return null;
    referred.push(`array_ndims(${x}) <> 1`);
    // The array's text is longer than its strings together.
    if (p.indexedText) referred.push(overLimit(`${x}::text`));
    return { value: userStringType(c) ? `to_jsonb(${x})` : x, referred };
  }
  switch (p.kind) {
    case 'plain':
      return PLAIN_TYPES.has(c.baseType) ? { value: x, referred } : null;
    case 'ip':
      return { value: x, referred };
    case 'float':
      return { value: x, referred };
    case 'exact-number':
      return { value: `${x}::text`, referred };
    case 'text': {
      const numeric = c.baseType === 'numeric';
      if (!userStringType(c) && (c.typtype === 'c' || c.baseType === 'other' || (!numeric && !STRING_TYPES.has(c.baseType)))) return null;
      if (numeric && p.isKey) return null;
      // bpchar keeps its padding in the image; its cast to text would drop it
      const text = numeric ? `${x}::text` : c.baseType === 'bpchar' || c.baseType === 'text' || c.baseType === 'varchar' ? x : `${x}::text`;
      if (p.indexedText) referred.push(overLimit(text));
      return { value: numeric ? text : userStringType(c) ? `to_jsonb(${x})` : x, referred };
    }
    case 'timestamp':
      // As an image, a timestamp outside years 1–9999 (infinity, BC) is refused by row-values.ts.
      referred.push(`${x} < '0001-01-01'`, `${x} >= '10000-01-01'`);
      if (p.isKey && c.baseType !== 'date') referred.push(`${x} <> date_trunc('milliseconds', ${x})`);
      return { value: x, referred };
    case 'json-object': {
      const j = c.baseType === 'json' ? `${x}::jsonb` : x;
      referred.push(`jsonb_typeof(${j}) <> 'object'`);
      return { value: j, referred, matched: { text: `${j}::text`, value: x } };
    }
    default:
      return null;
  }
}

/**
 * The SQL that builds the parameter row of a row `alias` of the table, or null when a column has
 * no SQL form (then every row goes as its image). A table with a shape keeps its own path.
 */
export function copyRowSql(t: TableInfo, plan: TablePlan, alias: string): CopyRowSql | null {
  if (t.shape || plan.columns.length !== t.columns.length) return null;
  const values: string[] = [];
  const referred: string[] = [];
  const matched: { text: string; value: string }[] = [];
  for (let i = 0; i < t.columns.length; i++) {
    const c = t.columns[i];
    const p = plan.columns[i];
    if (p.source !== c.name) return null;
    const sql = columnSql(c, p, `${alias}.${quoteIdent(c.name)}`);
    if (sql === null) return null;
    values.push(sql.value);
    referred.push(...sql.referred);
    if (sql.matched) matched.push(sql.matched);
  }
  // A NULL condition (a NULL value) refers nothing: `or` is true as soon as one condition is.
  const out: CopyRowSql = { row: `json_build_array(${values.join(', ')})`, referred: referred.length > 0 ? referred.map((r) => `(${r})`).join(' or ') : 'false' };
  // Texts joined by a space (concat_ws leaves NULLs out); no match can span "} {", and one would only refer the row.
  if (matched.length > 0) {
    out.matched = {
      text: matched.length === 1 ? matched[0].text : `concat_ws(' ', ${matched.map((m) => m.text).join(', ')})`,
      pattern: OBJECT_NEEDS_PARSING,
      bytes: matched.map((m) => `coalesce(pg_column_size(${m.value}), 0)`).join(' + '),
    };
  }
  return out;
}
