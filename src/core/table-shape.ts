// Analytics-shaped targets (issue 12): per-table options that change what a target table holds.
// Pure: parsing and validation of the options, and the resolved shape that the registry stores.
//
// Two halves, stored together in the registry (`tables.shape`):
// - capture side (the source writes less): column filters, hashed columns, a row predicate. The
//   triggers, the initial load, repair and verify read the source through them, so an excluded
//   column never leaves the source database.
// - target side (the sinks write more): soft deletes, metadata columns, an append-only history
//   table. These only change how a page is applied.
// The hash salt is kept apart (`tables.hash_salt`, read by SQL in the source database only): it never
// travels in a TableInfo, a log line or `tables list`.
//
// A table without any of these options has no shape (null), and every path behaves as before.
import { ConfigError } from './errors.js';

export interface MetadataColumns {
  /** when the change was made in the source (the writing transaction's start, `now()`) */
  sourceTime?: string;
  /** when the change was applied to the target (the target's clock) */
  appliedTime?: string;
  /** the operation: insert, update, delete, truncate or load (initial load, repair) */
  operation?: string;
}

/** The options of one configured table that shape its target (all optional; validated here). */
export interface ShapeOptions {
  deletes?: 'hard' | 'soft';
  deletedAtColumn?: string;
  metadata?: MetadataColumns;
  history?: boolean;
  historyTable?: string;
  includeColumns?: string[];
  excludeColumns?: string[];
  hashColumns?: string[];
  /** secret: never logged, never in TableShape */
  hashSalt?: string;
  where?: string;
}

/** The resolved shape of a registered table, as the registry stores it (no secret in it). */
export interface TableShape {
  /** only these columns leave the source (key columns always among them) */
  includeColumns?: string[];
  /** these columns never leave the source */
  excludeColumns?: string[];
  /** sent as hex SHA-256 of salt || value text, stored as text */
  hashColumns: string[];
  /** only rows for which this predicate is true are replicated */
  where?: string;
  deletes: 'hard' | 'soft';
  /** soft deletes: the column that holds the deletion time (NULL while the row lives) */
  deletedAtColumn: string;
  metadata: MetadataColumns;
  /** the append-only history table beside the target table, or null */
  history: HistoryShape | null;
}

export interface HistoryShape {
  schema: string;
  table: string;
  /** the event's position (outbox id): the row's identity and the per-key order */
  eventIdColumn: string;
  operationColumn: string;
  sourceTimeColumn: string;
}

export const DEFAULT_DELETED_AT = '_deleted_at';
export const HISTORY_EVENT_ID = '_event_id';
export const HISTORY_OPERATION = '_operation';
export const HISTORY_SOURCE_TIME = '_source_time';

export const SHAPE_KEYS = [
  'deletes', 'deletedAtColumn', 'metadata', 'history', 'historyTable', 'includeColumns', 'excludeColumns', 'hashColumns', 'hashSalt', 'where',
] as const;

const METADATA_KEYS = ['sourceTime', 'appliedTime', 'operation'] as const;

/** Whether the capture side writes the source time into the outbox for this table. */
export function capturesSourceTime(shape: TableShape | null | undefined): boolean {
  return !!shape && (shape.metadata.sourceTime !== undefined || shape.history !== null || shape.deletes === 'soft');
}

/** Whether rows leave the source in another form than to_jsonb of the whole row. */
export function shapesImage(shape: TableShape | null | undefined): boolean {
  return !!shape && (shape.includeColumns !== undefined || shape.excludeColumns !== undefined || shape.hashColumns.length > 0);
}

/** The operation as the metadata and history columns spell it. */
export function operationName(op: string): string {
  switch (op) {
    case 'I': return 'insert';
    case 'U': return 'update';
    case 'D': return 'delete';
    case 'T': return 'truncate';
    default: return 'load';
  }
}

function columnName(setting: string, raw: unknown): string {
  if (typeof raw !== 'string' || raw.length === 0 || Buffer.byteLength(raw) > 63 || raw.includes('\u0000')) {
    throw new ConfigError(setting, `expected a column name of 1 to 63 bytes, got ${JSON.stringify(raw)}`);
  }
  return raw;
}

function columnList(setting: string, raw: unknown): string[] {
  if (!Array.isArray(raw) || raw.length === 0) throw new ConfigError(setting, 'expected a non-empty list of column names');
  const out = raw.map((c, i) => columnName(`${setting}[${i}]`, c));
  const dup = out.find((c, i) => out.indexOf(c) !== i);
  if (dup !== undefined) throw new ConfigError(setting, `column ${JSON.stringify(dup)} is listed twice`);
  return out;
}

/**
 * Checks that a predicate is one SQL expression that cannot reach outside the parentheses it is
 * put in: quotes closed, parentheses balanced, no statement separator, comment or dollar quote.
 * Whether it means anything for the table is checked by the database at `tables add`.
 */
export function checkPredicateText(setting: string, pred: string): void {
  let depth = 0;
  for (let i = 0; i < pred.length; i++) {
    const ch = pred[i];
    if (ch === "'" || ch === '"') {
      // E'…' strings take backslash escapes; a doubled quote stands for itself in all quoted forms.
      const escapes = ch === "'" && /[eE]/.test(pred[i - 1] ?? '') && !/[\w$]/.test(pred[i - 2] ?? '');
      let j = i + 1;
      for (;;) {
        if (j >= pred.length) throw new ConfigError(setting, `unterminated ${ch === '"' ? 'quoted name' : 'string'} in the predicate`);
        if (escapes && pred[j] === '\\') { j += 2; continue; }
        if (pred[j] === ch) {
          if (pred[j + 1] === ch) { j += 2; continue; }
          break;
        }
        j++;
      }
      i = j;
      continue;
    }
    if (ch === ';') throw new ConfigError(setting, 'the predicate must be one expression, without ";"');
    if ((ch === '-' && pred[i + 1] === '-') || (ch === '/' && pred[i + 1] === '*')) throw new ConfigError(setting, 'the predicate must not contain comments');
    if (ch === '$') throw new ConfigError(setting, 'the predicate must not contain "$" (no parameters or dollar quotes)');
    if (ch === '(') depth++;
    if (ch === ')' && --depth < 0) throw new ConfigError(setting, 'unbalanced ")" in the predicate');
  }
  if (depth !== 0) throw new ConfigError(setting, 'unbalanced "(" in the predicate');
  if (pred.trim().length === 0) throw new ConfigError(setting, 'expected a SQL predicate such as "tenant_id = 42"');
}

/** Reads the shape options of one table object of the config file. `where` names it in messages. */
export function parseShapeOptions(o: Record<string, unknown>, where: string): ShapeOptions {
  const out: ShapeOptions = {};
  if (o.deletes !== undefined) {
    if (o.deletes !== 'hard' && o.deletes !== 'soft') throw new ConfigError(`${where}.deletes`, `expected "hard" or "soft", got ${JSON.stringify(o.deletes)}`);
    out.deletes = o.deletes;
  }
  if (o.deletedAtColumn !== undefined) {
    if (out.deletes !== 'soft') throw new ConfigError(`${where}.deletedAtColumn`, 'only with "deletes": "soft"');
    out.deletedAtColumn = columnName(`${where}.deletedAtColumn`, o.deletedAtColumn);
  }
  if (o.metadata !== undefined) {
    const m = o.metadata;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) {
      throw new ConfigError(`${where}.metadata`, 'expected an object like {"sourceTime": "_source_time", "appliedTime": "_applied_at", "operation": "_op"}');
    }
    const meta: MetadataColumns = {};
    for (const [k, v] of Object.entries(m)) {
      if (!(METADATA_KEYS as readonly string[]).includes(k)) throw new ConfigError(`${where}.metadata.${k}`, `unknown setting; expected one of ${METADATA_KEYS.join(', ')}`);
      meta[k as keyof MetadataColumns] = columnName(`${where}.metadata.${k}`, v);
    }
    out.metadata = meta;
  }
  if (o.history !== undefined) {
    if (typeof o.history !== 'boolean') throw new ConfigError(`${where}.history`, 'expected true or false');
    out.history = o.history;
  }
  if (o.historyTable !== undefined) {
    if (out.history !== true) throw new ConfigError(`${where}.historyTable`, 'only with "history": true');
    if (typeof o.historyTable !== 'string' || o.historyTable.length === 0) throw new ConfigError(`${where}.historyTable`, 'expected a non-empty table name');
    out.historyTable = o.historyTable;
  }
  if (o.includeColumns !== undefined) out.includeColumns = columnList(`${where}.includeColumns`, o.includeColumns);
  if (o.excludeColumns !== undefined) out.excludeColumns = columnList(`${where}.excludeColumns`, o.excludeColumns);
  if (out.includeColumns && out.excludeColumns) throw new ConfigError(`${where}.excludeColumns`, 'set includeColumns or excludeColumns, not both');
  if (o.hashColumns !== undefined) out.hashColumns = columnList(`${where}.hashColumns`, o.hashColumns);
  if (o.hashSalt !== undefined) {
    // The value stays out of the message: it is a secret.
    if (typeof o.hashSalt !== 'string' || o.hashSalt.length === 0 || o.hashSalt.includes('\u0000')) throw new ConfigError(`${where}.hashSalt`, 'expected a non-empty string');
    out.hashSalt = o.hashSalt;
  }
  for (const c of out.hashColumns ?? []) {
    if (out.excludeColumns?.includes(c)) throw new ConfigError(`${where}.hashColumns`, `column ${JSON.stringify(c)} is excluded; a column is either excluded or hashed`);
    if (out.includeColumns && !out.includeColumns.includes(c)) throw new ConfigError(`${where}.hashColumns`, `column ${JSON.stringify(c)} is not in includeColumns; list it there too`);
  }
  if (o.where !== undefined) {
    if (typeof o.where !== 'string') throw new ConfigError(`${where}.where`, 'expected a SQL predicate such as "tenant_id = 42"');
    checkPredicateText(`${where}.where`, o.where);
    out.where = o.where.trim();
  }
  const names = addedColumns(out);
  const dup = names.find((c, i) => names.indexOf(c) !== i);
  if (dup !== undefined) throw new ConfigError(`${where}.metadata`, `column name ${JSON.stringify(dup)} is used twice among the deletion, metadata and history columns`);
  return out;
}

/** Whether a configured table asks for any shaping at all. */
export function hasShape(o: ShapeOptions): boolean {
  return SHAPE_KEYS.some((k) => k !== 'hashSalt' && o[k] !== undefined && !(k === 'deletes' && o[k] === 'hard') && !(k === 'history' && o[k] === false));
}

/** Names of the columns the target tables get besides the source's (for collision checks). */
export function addedColumns(o: ShapeOptions): string[] {
  const out: string[] = [];
  if (o.deletes === 'soft') out.push(o.deletedAtColumn ?? DEFAULT_DELETED_AT);
  for (const k of METADATA_KEYS) if (o.metadata?.[k] !== undefined) out.push(o.metadata[k]!);
  if (o.history) {
    out.push(HISTORY_EVENT_ID);
    // History reuses the metadata names when set, so one name is enough for both tables.
    if (o.metadata?.operation === undefined) out.push(HISTORY_OPERATION);
    if (o.metadata?.sourceTime === undefined) out.push(HISTORY_SOURCE_TIME);
  }
  return out;
}

/**
 * The shape to register: null when nothing is shaped. `historyTarget` is where the history table
 * lands (the caller maps its name with the target's naming rules).
 */
export function resolveShape(o: ShapeOptions, historyTarget: { schema: string; table: string } | null): TableShape | null {
  if (!hasShape(o)) return null;
  const shape: TableShape = {
    hashColumns: o.hashColumns ?? [],
    deletes: o.deletes ?? 'hard',
    deletedAtColumn: o.deletedAtColumn ?? DEFAULT_DELETED_AT,
    metadata: { ...o.metadata },
    history: o.history && historyTarget
      ? {
        ...historyTarget,
        eventIdColumn: HISTORY_EVENT_ID,
        operationColumn: o.metadata?.operation ?? HISTORY_OPERATION,
        sourceTimeColumn: o.metadata?.sourceTime ?? HISTORY_SOURCE_TIME,
      }
      : null,
  };
  if (o.includeColumns) shape.includeColumns = [...o.includeColumns];
  if (o.excludeColumns) shape.excludeColumns = [...o.excludeColumns];
  if (o.where !== undefined) shape.where = o.where;
  return shape;
}

/** The columns a sink adds to the current-state table, in this order. */
export function stateExtraColumns(shape: TableShape): { name: string; kind: 'timestamp' | 'text' }[] {
  const out: { name: string; kind: 'timestamp' | 'text' }[] = [];
  if (shape.deletes === 'soft') out.push({ name: shape.deletedAtColumn, kind: 'timestamp' });
  if (shape.metadata.sourceTime !== undefined) out.push({ name: shape.metadata.sourceTime, kind: 'timestamp' });
  if (shape.metadata.appliedTime !== undefined) out.push({ name: shape.metadata.appliedTime, kind: 'timestamp' });
  if (shape.metadata.operation !== undefined) out.push({ name: shape.metadata.operation, kind: 'text' });
  return out;
}
