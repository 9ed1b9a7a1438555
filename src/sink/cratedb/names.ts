// Names in CrateDB (pure). Postgres allows nearly anything in a quoted name; CrateDB does not, and
// a name it refuses would stop the table at CREATE TABLE. So names it cannot hold are mapped,
// deterministically (the same source name always gives the same target name, in every process and
// on every run) and with a hash of the original appended, so that two different source names
// never land on the same target name ("a b" and "a_b" stay apart). Names CrateDB can hold are kept
// as they are, case included (everything we generate is quoted).
//
// Rules (CrateDB 6.4.3 source: IndexName.validate, RelationName, ColumnIdent, SysColumns):
// - schema and table: no \ / * ? " < > | , # . nor whitespace; `:` is deprecated in index names,
//   so it is mapped too; an index name must not start with - or +; `_all` is refused; sys,
//   information_schema and pg_catalog are read-only and blob holds blob tables. The index name
//   ("schema.table") is limited to 255 bytes, so a part over 120 bytes is shortened.
// - column: no `.`, `[`, tab, CR or LF (`]` is mapped as well: it reads as a subscript), and not
//   one of the system column names.
import { createHash } from 'node:crypto';

const ILLEGAL_RELATION_CHARS = /[\\/*?"<>|,#.:\s]/gu;
const RESERVED_SCHEMAS = new Set(['sys', 'information_schema', 'pg_catalog', 'blob']);
const MAX_PART_BYTES = 120;

const ILLEGAL_COLUMN_CHARS = /[.[\]\t\r\n]/g;
/** CrateDB's system columns (SysColumns.Names); a user column may not have these names. */
export const SYSTEM_COLUMNS: ReadonlySet<string> = new Set([
  '_id', '_version', '_score', '_uid', '_doc', '_raw', '_seq_no', '_primary_term', '_tombstone', '_fetchid', '_docid',
]);

/** 8 hex digits of SHA-256 of the original name: stable, short, and apart for different names. */
function hashSuffix(original: string): string {
  return createHash('sha256').update(original, 'utf8').digest('hex').slice(0, 8);
}

function cutToBytes(s: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > maxBytes) break;
    out += ch;
    bytes += n;
  }
  return out;
}

function relationPart(name: string, isSchema: boolean): string {
  let out = name.replace(ILLEGAL_RELATION_CHARS, '_');
  if (out.startsWith('-') || out.startsWith('+')) out = `_${out.slice(1)}`;
  const reserved = name.toLowerCase() === '_all' || (isSchema && RESERVED_SCHEMAS.has(name));
  const tooLong = Buffer.byteLength(out) > MAX_PART_BYTES;
  if (out === name && !reserved && !tooLong) return name;
  if (tooLong) out = cutToBytes(out, MAX_PART_BYTES - 9);
  return `${out}_${hashSuffix(name)}`;
}

/**
 * Where a table lands in CrateDB: the names as given where CrateDB can hold them, otherwise with
 * the illegal characters replaced by `_` and a hash of the original name appended
 * (`"Order Items"` → `Order_Items_1f0c…`).
 */
export function crateTargetName(schema: string, table: string): { schema: string; table: string } {
  return { schema: relationPart(schema, true), table: relationPart(table, false) };
}

/**
 * The CrateDB name of a source column: kept when legal; a system column name gets a `pg` prefix
 * (`_id` → `pg_id_…`), illegal characters become `_`, and either way the hash of the original is
 * appended (`a.b` → `a_b_…`).
 */
export function crateColumnName(name: string): string {
  const system = SYSTEM_COLUMNS.has(name);
  const replaced = name.replace(ILLEGAL_COLUMN_CHARS, '_');
  if (!system && replaced === name && name.length > 0) return name;
  return `${system ? `pg${replaced}` : replaced}_${hashSuffix(name)}`;
}

export interface CrateNameMapping {
  kind: 'schema' | 'table' | 'column';
  /** the name asked for (source column, or the configured/derived target schema and table) */
  from: string;
  /** the name used in CrateDB */
  to: string;
  reason: string;
}

function relationReason(name: string, isSchema: boolean): string {
  if (name.toLowerCase() === '_all') return '"_all" is reserved in CrateDB';
  if (isSchema && RESERVED_SCHEMAS.has(name)) return `schema ${name} is reserved in CrateDB`;
  if (Buffer.byteLength(name) > MAX_PART_BYTES) return `longer than ${MAX_PART_BYTES} bytes`;
  return 'CrateDB names cannot contain \\ / * ? " < > | , # . : or whitespace, nor start with - or +';
}

/**
 * The names that `tables add` should report for a CrateDB target: every schema, table and column
 * name that does not arrive as it is, with the reason. `intended` is the target schema and table
 * before mapping (the configured target names, or the source names); `columns` the source columns.
 * An empty list means every name is kept.
 */
export function crateNameMappings(intended: { schema: string; table: string }, columns: readonly string[]): CrateNameMapping[] {
  const out: CrateNameMapping[] = [];
  const target = crateTargetName(intended.schema, intended.table);
  if (target.schema !== intended.schema) out.push({ kind: 'schema', from: intended.schema, to: target.schema, reason: relationReason(intended.schema, true) });
  if (target.table !== intended.table) out.push({ kind: 'table', from: intended.table, to: target.table, reason: relationReason(intended.table, false) });
  for (const c of columns) {
    const to = crateColumnName(c);
    if (to === c) continue;
    const reason = SYSTEM_COLUMNS.has(c) ? `${c} is a CrateDB system column` : 'CrateDB column names cannot contain . [ ] tab or newline';
    out.push({ kind: 'column', from: c, to, reason });
  }
  return out;
}
