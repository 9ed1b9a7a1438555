// SQL that verify runs on Postgres, on the source and on a Postgres target alike (pure).
//
// Row hash ('postgres-md5' form): md5 of the jsonb text of an object holding exactly the SOURCE's
// current columns. jsonb text is canonical (sorted keys, one number form), and with the same output
// settings on both servers (pg-session.ts) equal values give equal text. The object is built with
// jsonb_build_object in chunks of 50 columns joined by `||` (the function takes at most 100
// arguments). Per column:
// - source, type the target holds as is: the column.
// - source, user-defined type (enum, composite, range …): the Postgres sink stores it as text, made
//   by jsonb_populate_record from the JSON the trigger wrote; `to_jsonb(c) #>> '{}'` gives the same
//   text (a JSON string's content, any other JSON as its text). Arrays of them: the same per element
//   (one dimension; deeper arrays of user-defined types are compared as they come and may differ).
// - target: the column, or NULL when the target lacks it (no change has carried it yet), so a
//   column added in the source with NULLs everywhere compares equal, and one added with a default
//   does not.
// Columns the target keeps from a dropped source column are ignored.
//
// Range digest: md5 over the row hashes concatenated in key order; md5('') for an empty range.
//
// Shaped tables (table-shape.ts): the source side reads only rows that pass the table's predicate,
// and its hashed columns as the capture writes them (row-image.ts), so a filtered or hashed copy
// compares equal; a target with soft deletes compares only its live rows (deletion time NULL). The
// columns pg2crate adds to a target are not among TableInfo.columns, so they are never compared.
import type { ColumnInfo, TableInfo } from '../core/change.js';
import { qualify, quoteIdent, quoteLiteral } from '../core/identifiers.js';
import { pgColumnType } from '../sink/postgres/sql.js';
import { rowFilterSql, rowImageSql, type RowImageSql } from '../capture/row-image.js';
import { anyNullKeySql, orderBySql, pgKeySetCondition, pgRangeCondition, type PgKeyTable, type SqlPart } from './key-range.js';
import type { KeyRange, KeyRef } from './verify-target.js';

const CHUNK = 50;

export interface PgVerifyTable extends PgKeyTable {
  side: 'source' | 'target';
  /** the source's columns, in order */
  columns: readonly ColumnInfo[];
  /** target side: source columns the target table lacks */
  missing: ReadonlySet<string>;
  /** the rows that count, on alias t: the source's predicate, a soft-deleting target's live rows */
  filter: string;
  /** the row's JSON as the capture writes it (client form) */
  image: RowImageSql;
  /** source side: hashed columns and the expression of the salt */
  hashed: ReadonlySet<string>;
  salt: string;
}

export function pgVerifyTable(t: TableInfo, side: 'source' | 'target', missing: ReadonlySet<string> = new Set()): PgVerifyTable {
  const qualified = side === 'source' ? qualify(t.sourceSchema, t.sourceTable) : qualify(t.targetSchema, t.targetTable);
  const nullableKey = t.keyColumns.some((k) => !t.columns.find((c) => c.name === k)?.notNull);
  const shape = t.shape ?? null;
  const source = side === 'source';
  const hashed = new Set(source ? shape?.hashColumns ?? [] : []);
  if (hashed.size > 0 && t.toolSchema === undefined) throw new TypeError('verifying hashed columns needs the tool schema (TableInfo.toolSchema)');
  const toolSchema = t.toolSchema ?? '';
  const filter = source
    ? rowFilterSql(shape)
    : shape?.deletes === 'soft' ? `t.${quoteIdent(shape.deletedAtColumn)} is null` : 'true';
  return {
    qualified, keyColumns: t.keyColumns, nullableKey, side, columns: t.columns, missing, filter, hashed,
    image: source ? rowImageSql(toolSchema, t, 't') : { expr: 'to_jsonb(t.*)', lateral: '' },
    salt: hashed.size > 0 ? `(select s.hash_salt from ${qualify(toolSchema, 'tables')} s where s.id = ${Number(t.id)})` : 'null',
  };
}

/** True when the Postgres sink stores this column as text (a type the target may not have). */
export function storedAsText(c: ColumnInfo): boolean {
  return pgColumnType(c) !== (c.dims > 0 ? `${c.baseFormatted}[]` : c.baseFormatted);
}

function columnValueSql(p: PgVerifyTable, c: ColumnInfo, alias: string): string {
  const col = `${alias}.${quoteIdent(c.name)}`;
  if (p.side === 'target') return p.missing.has(c.name) ? 'null::text' : col;
  // as the capture hashes it (row-image.ts)
  if (p.hashed.has(c.name)) return `encode(pg_catalog.sha256(convert_to(${p.salt} || (to_jsonb(${alias}.*) ->> ${quoteLiteral(c.name)}), 'UTF8')), 'hex')`;
  if (!storedAsText(c)) return col;
  if (c.dims === 0) return `(to_jsonb(${col}) #>> '{}')`;
  return `(case when ${col} is null then null else coalesce((select jsonb_agg(e #>> '{}' order by o) from jsonb_array_elements(to_jsonb(${col})) with ordinality as x(e, o)), '[]'::jsonb) end)`;
}

/** The canonical jsonb of a row on this side. */
export function rowJsonSql(p: PgVerifyTable, alias = 't'): string {
  const chunks: string[] = [];
  for (let i = 0; i < p.columns.length; i += CHUNK) {
    const pairs = p.columns.slice(i, i + CHUNK).map((c) => `${quoteLiteral(c.name)}, ${columnValueSql(p, c, alias)}`);
    chunks.push(`jsonb_build_object(${pairs.join(', ')})`);
  }
  return chunks.length === 1 ? chunks[0] : `(${chunks.join(' || ')})`;
}

export function rowHashSql(p: PgVerifyTable, alias = 't'): string {
  return `md5(${rowJsonSql(p, alias)}::text)`;
}

/** The key object as JSON text (the same shape the capture trigger writes for a delete). */
export function keyJsonSql(keyColumns: readonly string[], alias = 't', names: readonly string[] = keyColumns): string {
  return `jsonb_build_object(${keyColumns.map((c, i) => `${quoteLiteral(c)}, ${alias}.${quoteIdent(names[i])}`).join(', ')})::text`;
}

const keyAlias = (i: number) => `k${i}`;

/**
 * Source walk, one statement per range: the next `limit` rows after `after` in key order; answers
 * n (rows), digest, and last (the last key's JSON, null for an empty range).
 */
export function nextRangeSql(p: PgVerifyTable, after: KeyRef | null, limit: number): SqlPart {
  const cond = pgRangeCondition(p, { after, upTo: null }, 1);
  const aliases = p.keyColumns.map((_, i) => keyAlias(i));
  const keySel = p.keyColumns.map((c, i) => `t.${quoteIdent(c)} as ${aliases[i]}`).join(', ');
  const order = aliases.map((a) => `r.${a}`).join(', ');
  const desc = aliases.map((a) => `x.${a} desc`).join(', ');
  return {
    sql: `with r as materialized (
  select ${keySel}, ${rowHashSql(p)} as h from ${p.qualified} t where ${cond.sql} and ${p.filter} order by ${orderBySql(p.keyColumns)} limit $${cond.params.length + 1}
)
select count(*)::int as n, md5(coalesce(string_agg(r.h, '' order by ${order}), '')) as digest,
       (select ${keyJsonSql(p.keyColumns, 'x', aliases)} from r x order by ${desc} limit 1) as last
from r`,
    params: [...cond.params, limit],
  };
}

export function rangeDigestSql(p: PgVerifyTable, range: KeyRange): SqlPart {
  const cond = pgRangeCondition(p, range, 1);
  const aliases = p.keyColumns.map((_, i) => keyAlias(i));
  const keySel = p.keyColumns.map((c, i) => `t.${quoteIdent(c)} as ${aliases[i]}`).join(', ');
  return {
    sql: `select md5(coalesce(string_agg(r.h, '' order by ${aliases.map((a) => `r.${a}`).join(', ')}), '')) as digest
from (select ${keySel}, ${rowHashSql(p)} as h from ${p.qualified} t where ${cond.sql} and ${p.filter}) r`,
    params: cond.params,
  };
}

/** (k, h) of a range in key order, at most `limit`; with `rows`, the row's JSON (as captured) as r instead of h. */
export function rowHashesSql(p: PgVerifyTable, range: KeyRange, limit: number, rows = false): SqlPart {
  const cond = pgRangeCondition(p, range, 1);
  const value = rows ? `(${p.image.expr})::text as r` : `${rowHashSql(p)} as h`;
  return {
    sql: `select ${keyJsonSql(p.keyColumns)} as k, ${value} from ${p.qualified} t${rows ? p.image.lateral : ''} where ${cond.sql} and ${p.filter} order by ${orderBySql(p.keyColumns)} limit $${cond.params.length + 1}`,
    params: [...cond.params, limit],
  };
}

export function rowHashesByKeysSql(p: PgVerifyTable, keys: readonly KeyRef[], rows = false): SqlPart {
  const cond = pgKeySetCondition(p, keys, 1);
  const value = rows ? `(${p.image.expr})::text as r` : `${rowHashSql(p)} as h`;
  return { sql: `select ${keyJsonSql(p.keyColumns)} as k, ${value} from ${p.qualified} t${rows ? p.image.lateral : ''} where ${cond.sql} and ${p.filter}`, params: cond.params };
}

export function countSql(p: PgVerifyTable): string {
  const nullKeys = p.nullableKey ? `count(*) filter (where ${anyNullKeySql(p.keyColumns)})` : '0';
  return `select count(*)::int8::text as rows, (${nullKeys})::int8::text as null_keys from ${p.qualified} t where ${p.filter}`;
}
