// The row image of a shaped table as SQL (pure): what every writer of row images into the outbox
// (capture triggers, initial load, repair) and the source side of verify use, so that all of them
// send exactly the same JSON for the same row.
//
// - excluded columns: `to_jsonb(r.*) - array[…]`. New columns are sent, as for any table.
// - included columns: `to_jsonb(r.*) - <every other column>`, the other columns read from the
//   catalog once per statement (an uncorrelated subquery). Naming the included columns in the SQL
//   instead would make the capture function fail, and with it the application's writes, as soon as
//   one of them is dropped; this way a dropped column simply stops arriving, and a column added
//   later is not sent.
// - hashed columns: the value's text in the image (`->>`: for text and numbers the value itself,
//   for other types to_jsonb's text) replaced by hex SHA-256 of salt || text, with Postgres's own
//   sha256() (no extension). A NULL stays NULL. The image is computed once per row in a LATERAL
//   subquery (OFFSET 0 keeps the planner from copying the expression into every use).
//   The salt is read from the registry by the SQL itself: it never appears in a function's source.
// - the predicate: `where (pred)`, with the row's columns the only names in scope (besides the
//   LATERAL's pg2crate_image). checkPredicateText
//   (table-shape.ts) has made sure that it cannot reach outside its parentheses.
import { capturesSourceTime, type TableShape } from '../core/table-shape.js';
import { qualify, quoteLiteral } from '../core/identifiers.js';
import { RENAMED_SHAPE_COLUMNS } from './column-watch.js';

export interface ImageTable {
  /** registry id (for the salt) */
  id: number;
  relid: number;
  shape?: TableShape | null;
}

export interface RowImageSql {
  /** the jsonb expression */
  expr: string;
  /** a FROM item to add after the row's FROM item ('' when none is needed) */
  lateral: string;
}

function textArray(names: readonly string[]): string {
  return `array[${names.map(quoteLiteral).join(', ')}]::text[]`;
}

/**
 * The jsonb image of the row `alias.*` of table `t`, in the tool schema `schema`. `guarded`: the
 * caller refuses to write while an excluded or hashed column has been renamed (the capture
 * function: triggers.ts); every other caller (loads, repair, verify) gets an image that leaves
 * such a column out under its new name as well (RENAMED_SHAPE_COLUMNS, read once per statement),
 * until the watch has followed the rename.
 */
export function rowImageSql(schema: string, t: ImageTable, alias: string, guarded = false): RowImageSql {
  const shape = t.shape;
  const whole = `to_jsonb(${alias}.*)`;
  if (!shape || (!shape.includeColumns && !shape.excludeColumns && shape.hashColumns.length === 0)) return { expr: whole, lateral: '' };
  const hashing = shape.hashColumns.length > 0;
  const img = `${alias}_img`;
  const base = hashing ? `${img}.pg2crate_image` : whole;
  let expr = base;
  if (shape.excludeColumns) expr = `(${expr} - ${textArray(shape.excludeColumns)})`;
  if (!guarded && (shape.excludeColumns || hashing)) {
    const renamed = `(select coalesce(array_agg(r.now), '{}'::text[]) from ${qualify(schema, 'tables')} t cross join lateral (${RENAMED_SHAPE_COLUMNS}) r where t.id = ${Number(t.id)})`;
    expr = `(${expr} - ${renamed})`;
  }
  if (shape.includeColumns) {
    const others = `(select coalesce(array_agg(a.attname::text), '{}'::text[]) from pg_catalog.pg_attribute a
        where a.attrelid = ${Number(t.relid)}::oid and a.attnum > 0 and not a.attisdropped and a.attname::text <> all(${textArray(shape.includeColumns)}))`;
    expr = `(${expr} - ${others})`;
  }
  if (hashing) {
    const salt = `(select s.hash_salt from ${qualify(schema, 'tables')} s where s.id = ${Number(t.id)})`;
    for (const h of shape.hashColumns) {
      const hashed = `encode(pg_catalog.sha256(convert_to(${salt} || (${base} ->> ${quoteLiteral(h)}), 'UTF8')), 'hex')`;
      expr = `jsonb_set(${expr}, array[${quoteLiteral(h)}], coalesce(to_jsonb(${hashed}), 'null'::jsonb), false)`;
    }
  }
  return { expr, lateral: hashing ? ` cross join lateral (select ${whole} as pg2crate_image offset 0) ${img}` : '' };
}

/** The row predicate as a condition (`true` when the table has none). */
export function rowFilterSql(shape: TableShape | null | undefined): string {
  return shape?.where !== undefined ? `(${shape.where})` : 'true';
}

/**
 * The `source_time` column of an outbox insert: now() (the transaction's start) for a table whose
 * target wants it, nothing for every other table (the column stays NULL and costs no bytes).
 */
export function sourceTimeSql(shape: TableShape | null | undefined): { column: string; value: string } {
  return capturesSourceTime(shape) ? { column: ', source_time', value: ', now()' } : { column: '', value: '' };
}
