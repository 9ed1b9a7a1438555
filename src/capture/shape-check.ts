// A table's shape against its catalog: checked once at `tables add` (every named column exists,
// the key stays whole and readable, added columns do not collide, the predicate works), and
// applied whenever the table is described (the columns that reach the target).
import type pg from 'pg';
import type { ColumnInfo } from '../core/change.js';
import { TableError } from '../core/errors.js';
import { qualify } from '../core/identifiers.js';
import { addedColumns, type ShapeOptions, type TableShape } from '../core/table-shape.js';

/** The columns that reach the target: filtered, hashed ones as text. Throws when an added column collides. */
export function shapedColumns(columns: ColumnInfo[], shape: TableShape | null | undefined, name: string): ColumnInfo[] {
  if (!shape) return columns;
  let out = columns;
  if (shape.includeColumns) out = out.filter((c) => shape.includeColumns!.includes(c.name));
  if (shape.excludeColumns) out = out.filter((c) => !shape.excludeColumns!.includes(c.name));
  const hashed = new Set(shape.hashColumns);
  out = out.map((c) => (hashed.has(c.name) ? { ...c, type: 'text', baseType: 'text', baseFormatted: 'text', dims: 0, typtype: 'b' } : c));
  const added = addedColumns({
    deletes: shape.deletes, deletedAtColumn: shape.deletedAtColumn, metadata: shape.metadata, history: shape.history !== null,
  });
  const clash = out.find((c) => added.includes(c.name));
  if (clash) {
    throw new TableError(
      `column "${clash.name}" of ${name} has the name of a column pg2crate adds to the target (deletion time, metadata or history); ` +
        'name that column differently in the configuration ("deletedAtColumn", "metadata") or exclude it, then run `pg2crate tables add` again',
    );
  }
  return out;
}

/** Checks a configured shape against the table; throws a TableError that says what to change. */
export async function checkShape(db: pg.ClientBase, o: ShapeOptions, table: { schema: string; table: string; name: string }, columns: ColumnInfo[], keyColumns: string[]): Promise<void> {
  const { name } = table;
  const have = new Set(columns.map((c) => c.name));
  for (const setting of ['includeColumns', 'excludeColumns', 'hashColumns'] as const) {
    const missing = (o[setting] ?? []).filter((c) => !have.has(c));
    if (missing.length > 0) throw new TableError(`${setting} of ${name} names column(s) the table does not have: ${missing.join(', ')}`);
  }
  for (const k of keyColumns) {
    if (o.excludeColumns?.includes(k)) throw new TableError(`key column "${k}" of ${name} cannot be excluded: rows are matched in the target by their key`);
    if (o.includeColumns && !o.includeColumns.includes(k)) throw new TableError(`key column "${k}" of ${name} must be in includeColumns: rows are matched in the target by their key`);
    if (o.hashColumns?.includes(k)) throw new TableError(`key column "${k}" of ${name} cannot be hashed: deletes and verify find rows by the key's value`);
  }
  for (const c of addedColumns(o)) {
    if (have.has(c)) {
      throw new TableError(
        `${name} has a column "${c}", the name of a column pg2crate would add to the target (deletion time, metadata or history); ` +
          'choose another name with "deletedAtColumn" or "metadata" in the configuration',
      );
    }
  }
  if (o.where !== undefined) await checkPredicate(db, o.where, table);
}

/**
 * Runs the predicate once against the table, with nothing on the search path but pg_catalog (as
 * the capture function runs it), in a savepoint of the caller's transaction so that a failure is
 * reported here and not as a broken transaction. LIMIT 0 reads no row. Also run by the key watch
 * after a key column was renamed (ops/key-watch.ts).
 */
export async function checkPredicate(db: pg.ClientBase, where: string, table: { schema: string; table: string; name: string }): Promise<void> {
  await db.query('savepoint pg2crate_predicate');
  try {
    await db.query(`set local search_path = pg_catalog, pg_temp`);
    await db.query(`select 1 from ${qualify(table.schema, table.table)} where (${where}) limit 0`);
  } catch (err) {
    throw new TableError(
      `the row filter ("where") of ${table.name} does not work as a predicate on the table: ${(err as Error).message}; ` +
        'it must be a boolean SQL expression over the table\'s columns, with functions outside pg_catalog schema-qualified',
      { cause: err },
    );
  } finally {
    // also undoes the search_path
    await db.query('rollback to savepoint pg2crate_predicate');
  }
}
