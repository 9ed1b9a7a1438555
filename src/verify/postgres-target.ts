// The Postgres target of verify. Default form 'postgres-md5': every hash is computed in the target
// database with the same SQL and output settings as on the source, so a range costs one round trip
// and only 32-character hashes travel. The 'client' form (rows fetched and hashed here) exists to
// exercise the path a CrateDB target takes; in it, composite values the sink stored as text compare
// unequal (their text is Postgres's jsonb formatting), so it is not for production use.
//
// A target table that does not exist yet (the sink creates it with the first change) answers as an
// empty table; a source column it lacks compares as NULL (see pg-digest-sql.ts).
import pg from 'pg';
import type { Row, TableInfo } from '../core/change.js';
import type { Logger } from '../core/logger.js';
import { displayName } from '../core/identifiers.js';
import { md5Hex, normaliseColumns } from './canonical.js';
import { PgSide } from './pg-side.js';
import type { DigestForm, KeyRange, KeyRef, RowCounts, RowHash, TargetTableState, VerifyTarget } from './verify-target.js';
import { createPool } from '../core/pg-pool.js';

export interface PostgresVerifyTargetOptions {
  form?: 'postgres-md5' | 'client';
  logger?: Logger;
}

interface Known {
  exists: boolean;
  missing: Set<string>;
}

/** The canonical Row of a Postgres row in client form: the source's columns, values as they are. */
function pickSourceColumns(row: Row, table: TableInfo): Row {
  return normaliseColumns(row, table.columns, (_c, v) => v);
}

export function postgresVerifyTarget(connectionString: string, opts: PostgresVerifyTargetOptions = {}): VerifyTarget {
  return new PostgresVerifyTarget(connectionString, opts);
}

class PostgresVerifyTarget implements VerifyTarget {
  readonly name = 'postgres';
  readonly form: DigestForm;
  readonly #pool: pg.Pool;
  readonly #side: PgSide;
  readonly #known = new Map<string, Known>();

  constructor(connectionString: string, opts: PostgresVerifyTargetOptions) {
    this.form = opts.form === 'client' ? { kind: 'client', normaliseSourceRow: pickSourceColumns } : { kind: 'postgres-md5' };
    const log = opts.logger?.child({ component: 'verify' });
    this.#pool = createPool({ connectionString, max: 2, application_name: 'pg2crate verify' }, log, 'target');
    this.#side = new PgSide(this.#pool, 'target', this.form, {
      normalise: pickSourceColumns,
      missing: (t) => this.#known.get(id(t))?.missing ?? new Set(),
    });
  }

  async inspect(t: TableInfo): Promise<TargetTableState> {
    const res = await this.#pool.query<{ name: string }>(
      `select a.attname as name from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p') and a.attnum > 0 and not a.attisdropped`,
      [t.targetSchema, t.targetTable],
    );
    const have = new Set(res.rows.map((r) => r.name));
    const known: Known = { exists: have.size > 0, missing: new Set(t.columns.map((c) => c.name).filter((c) => !have.has(c))) };
    this.#known.set(id(t), known);
    const notes: string[] = [];
    if (!known.exists) notes.push(`target table ${displayName(t.targetSchema, t.targetTable)} does not exist; compared as empty`);
    else if (known.missing.size > 0) notes.push(`target lacks column(s) ${[...known.missing].join(', ')}; compared as NULL`);
    return { exists: known.exists, notes };
  }

  async #exists(t: TableInfo): Promise<boolean> {
    if (!this.#known.has(id(t))) await this.inspect(t);
    return this.#known.get(id(t))!.exists;
  }

  async refresh(): Promise<void> {
    // Postgres: what the sink committed is visible.
  }

  async count(t: TableInfo): Promise<RowCounts> {
    return (await this.#exists(t)) ? this.#side.count(t) : { rows: 0, nullKeys: 0 };
  }

  async rangeDigest(t: TableInfo, range: KeyRange): Promise<string> {
    return (await this.#exists(t)) ? this.#side.rangeDigest(t, range) : md5Hex('');
  }

  async rowHashes(t: TableInfo, range: KeyRange, limit: number): Promise<RowHash[]> {
    return (await this.#exists(t)) ? this.#side.rowHashes(t, range, limit) : [];
  }

  async rowHashesByKeys(t: TableInfo, keys: KeyRef[]): Promise<RowHash[]> {
    return (await this.#exists(t)) && keys.length > 0 ? this.#side.rowHashesByKeys(t, keys) : [];
  }

  async close(): Promise<void> {
    await this.#pool.end().catch(() => {});
  }
}

function id(t: TableInfo): string {
  return `${t.targetSchema}\u0000${t.targetTable}`;
}
