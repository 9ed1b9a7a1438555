// "The key is one of these": the condition verify, repair and every re-send use, kept in one place.
// The keys travel as one parameter, a JSON array of key objects, expanded by
// jsonb_populate_recordset against the table's own row type, so each value keeps its column's type
// and no key value ever appears in the SQL text.
import { quoteIdent } from './identifiers.js';

/** A key as a JSON object of its key columns' values. */
export interface KeyJson {
  json: string;
}

/** `(alias.k1, …) in (…)` for the keys in parameter `param` (keysJsonArray()) of table `rowType`. */
export function keyInSetSql(alias: string, keyColumns: readonly string[], rowType: string, param: string): string {
  const cols = keyColumns.map((c) => quoteIdent(c));
  return `(${cols.map((c) => `${alias}.${c}`).join(', ')}) in (select ${cols.map((c) => `k.${c}`).join(', ')} from jsonb_populate_recordset(null::${rowType}, ${param}::jsonb) as k)`;
}

/** The parameter keyInSetSql() reads. */
export function keysJsonArray(keys: readonly KeyJson[]): string {
  return `[${keys.map((k) => k.json).join(',')}]`;
}
