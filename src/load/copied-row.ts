// A row of a direct load whose parameter row the source built (Sink.copyRowSql). Such a row has no
// image and no key text: a chunk needs only its last row's key (the position), and the rare paths
// that need a row's key (a late chunk sent again, a rejected row looked up to be parked) read it
// from the parameter row, whose values are in the TableInfo's column order.
import type pg from 'pg';
import { LosslessNumber, parse as losslessParse, stringify as losslessStringify } from 'lossless-json';
import type { Change, JsonValue, TableInfo } from '../core/change.js';
import { qualify, quoteIdent } from '../core/identifiers.js';
import { querySettled } from '../core/pg-session.js';
import { rowImageSql } from '../capture/row-image.js';
import { isBuiltRow, type BuiltRow, type Rejection } from '../sink/sink.js';

export class CopiedRow implements BuiltRow {
  readonly id = 0;
  readonly op = 'B';
  readonly row = null;
  readonly raw = null;
  readonly built: { table: TableInfo; args: string };

  constructor(readonly tableId: number, table: TableInfo, args: string) {
    this.built = { table, args };
  }

  /** Asked for only on rare paths (logs, rejections): the key values as JSON text. */
  get key(): string {
    return JSON.stringify(keyTexts(this.built.table, this.built.args));
  }
}

/** A key value as the text its column type reads back (a JSON string's text, a number's digits). */
function keyText(v: JsonValue | undefined): string | null {
  if (v === null || v === undefined) return null;
  return typeof v === 'string' ? v : v instanceof LosslessNumber ? v.value : String(v);
}

function parseExact(text: string): JsonValue {
  return losslessParse(text) as JsonValue;
}

/** The key values of a parameter row (values in TableInfo.columns order), in key order. */
function argsKey(t: TableInfo, args: JsonValue[]): (JsonValue | undefined)[] {
  return t.keyColumns.map((k) => args[t.columns.findIndex((c) => c.name === k)]);
}

/** The key of a row as text values in key order, from its parameter row (`[`) or its image (`{`). */
export function keyTexts(t: TableInfo, text: string): (string | null)[] {
  const v = parseExact(text);
  if (Array.isArray(v)) return argsKey(t, v).map(keyText);
  const row = v as Record<string, JsonValue>;
  return t.keyColumns.map((k) => keyText(row[k]));
}

/**
 * The key object of a change ({"k": value}, what the fix-up's key sets hold): from a built row's
 * parameter row, whose key values jsonb_populate_recordset casts to the key's types like an
 * image's; an image is returned whole (its other members are ignored).
 */
export function keyObjectText(t: TableInfo, c: Change): string {
  if (c.raw !== null) return c.raw;
  const args = (c as Partial<BuiltRow>).built?.args;
  if (args === undefined) return 'null';
  const values = argsKey(t, parseExact(args) as JsonValue[]);
  const key: Record<string, JsonValue> = {};
  t.keyColumns.forEach((k, i) => { key[k] = values[i] ?? null; });
  return losslessStringify(key) ?? 'null';
}

/**
 * The image of each rejected row, as a dead letter keeps it: a built row's is read again by its key
 * (null when the row is gone from the source by now: it was deleted after its chunk was read, so
 * the fix-up sends its delete).
 */
export async function rejectedImages(pool: pg.Pool, schema: string, t: TableInfo, rejected: readonly Rejection[]): Promise<(string | null)[]> {
  const images: (string | null)[] = rejected.map((r) => r.change.raw);
  const built = rejected.flatMap((r, i) => (isBuiltRow(r.change) ? [i] : []));
  if (built.length === 0) return images;
  const table = qualify(t.sourceSchema, t.sourceTable);
  const same = t.keyColumns.map((k) => `c.${quoteIdent(k)} = k.${quoteIdent(k)}`).join(' and ');
  const image = rowImageSql(schema, t, 'c');
  const rows = await querySettled<{ i: number; data: string }>(
    pool,
    `select e.i::int as i, (${image.expr})::text as data
       from jsonb_array_elements($1::jsonb) with ordinality e(k, i)
      cross join lateral jsonb_populate_record(null::${table}, e.k) k
       join ${table} c on ${same}${image.lateral}`,
    [`[${built.map((i) => keyObjectText(t, rejected[i].change)).join(',')}]`],
  );
  for (const i of built) images[i] = null;
  for (const r of rows) images[built[r.i - 1]] = r.data;
  return images;
}
