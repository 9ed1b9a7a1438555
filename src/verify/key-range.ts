// Conditions that select a key range (after, upTo] or a set of keys, as SQL text plus parameters.
// Pure. Key values never appear in the text; they travel as parameters.
//
// Postgres compares whole keys with row comparison, `(t.a, t.b) > (x.a, x.b)`, which a btree on the
// key serves as one index range scan. The bound's values come from a JSON key object expanded by
// jsonb_populate_record against the table's own row type, so each value keeps its column's type
// (numeric, timestamptz, enum …) with no JavaScript number or type name in between; the planner
// treats the expression as a constant of the statement.
//
// CrateDB has no row-value comparison: lexicographicCondition() spells it out
// (a >= ? AND (a > ? OR (a = ? AND b > ?))), the leading `a >= ?` letting the engine narrow on the
// first column.
import { quoteIdent } from '../core/identifiers.js';
import { keyInSetSql, keysJsonArray } from '../core/key-set.js';
import type { KeyRange, KeyRef } from './verify-target.js';

export interface SqlPart {
  sql: string;
  params: unknown[];
}

export interface PgKeyTable {
  /** the qualified, quoted table name; its row type types the bounds */
  qualified: string;
  keyColumns: readonly string[];
  /** configured keys may hold NULL; ranges then skip those rows (counted apart) */
  nullableKey: boolean;
}

function row(alias: string, cols: readonly string[]): string {
  return `(${cols.map((c) => `${alias}.${quoteIdent(c)}`).join(', ')})`;
}

function bound(t: PgKeyTable, param: number): string {
  const rec = `jsonb_populate_record(null::${t.qualified}, $${param}::jsonb)`;
  return `(${t.keyColumns.map((c) => `(${rec}).${quoteIdent(c)}`).join(', ')})`;
}

/** `where` text for a range on alias `t`; parameters numbered from `firstParam`. */
export function pgRangeCondition(t: PgKeyTable, range: KeyRange, firstParam: number): SqlPart {
  const parts: string[] = [];
  const params: unknown[] = [];
  const keys = row('t', t.keyColumns);
  if (range.after) {
    params.push(range.after.json);
    parts.push(`${keys} > ${bound(t, firstParam + params.length - 1)}`);
  }
  if (range.upTo) {
    params.push(range.upTo.json);
    parts.push(`${keys} <= ${bound(t, firstParam + params.length - 1)}`);
  }
  if (t.nullableKey) parts.push(notNullKeySql(t.keyColumns));
  return { sql: parts.length > 0 ? parts.join(' and ') : 'true', params };
}

export function notNullKeySql(keyColumns: readonly string[], alias = 't'): string {
  return keyColumns.map((c) => `${alias}.${quoteIdent(c)} is not null`).join(' and ');
}

export function anyNullKeySql(keyColumns: readonly string[], alias = 't'): string {
  return keyColumns.map((c) => `${alias}.${quoteIdent(c)} is null`).join(' or ');
}

/** `where` text for "the key is one of these" on alias `t`; one parameter, a JSON array of key objects. */
export function pgKeySetCondition(t: PgKeyTable, keys: readonly KeyRef[], param: number): SqlPart {
  return { sql: keyInSetSql('t', t.keyColumns, t.qualified, `$${param}`), params: [keysJsonArray(keys)] };
}

export function orderBySql(keyColumns: readonly string[], alias = 't', direction = ''): string {
  return keyColumns.map((c) => `${alias}.${quoteIdent(c)}${direction}`).join(', ');
}

/**
 * `(a, b, c) op (x, y, z)` without row comparison, for op one of > >= < <=. `values` are the bound's
 * values in key order; `placeholder(i)` renders the i-th parameter (0-based), `?` by default. `quote`
 * renders a column (default: Postgres/CrateDB double quotes).
 */
export function lexicographicCondition(
  columns: readonly string[],
  op: '>' | '>=' | '<' | '<=',
  values: readonly unknown[],
  opts: { placeholder?: (i: number) => string; quote?: (c: string) => string; alias?: string } = {},
): SqlPart {
  if (columns.length === 0 || columns.length !== values.length) throw new TypeError('a key bound needs one value per key column');
  const ph = opts.placeholder ?? (() => '?');
  const col = (c: string) => (opts.alias ? `${opts.alias}.` : '') + (opts.quote ?? quoteIdent)(c);
  const params: unknown[] = [];
  const p = (v: unknown) => { params.push(v); return ph(params.length - 1); };
  const strict = op === '>' || op === '>=' ? '>' : '<';
  // A leading bound on the first column lets the engine narrow before the OR (rendered first, so
  // that positional `?` parameters stay in order).
  const lead = columns.length > 1 ? `${col(columns[0])} ${strict}= ${p(values[0])} AND ` : '';
  const alternatives: string[] = [];
  for (let i = 0; i < columns.length; i++) {
    const last = i === columns.length - 1;
    const eqs = columns.slice(0, i).map((c, j) => `${col(c)} = ${p(values[j])}`);
    eqs.push(`${col(columns[i])} ${last ? op : strict} ${p(values[i])}`);
    alternatives.push(eqs.length > 1 ? `(${eqs.join(' AND ')})` : eqs[0]);
  }
  const expanded = alternatives.length > 1 ? `(${alternatives.join(' OR ')})` : alternatives[0];
  return { sql: lead ? `(${lead}${expanded})` : expanded, params };
}
