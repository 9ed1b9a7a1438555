// Creates and upgrades the tool's schema in the source database with kysely's Migrator, over the
// numbered SQL files in migrations/. The Migrator serialises concurrent runs under its lock; a
// database that has seen migrations this build does not know is refused before anything runs.
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Kysely, Migrator, PostgresDialect, sql, type Migration, type MigrationProvider } from 'kysely';
import type pg from 'pg';
import { SchemaVersionError } from '../core/errors.js';
import { quoteIdent, quoteLiteral } from '../core/identifiers.js';

const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));
export const MIGRATION_TABLE = 'migrations';

class SqlFileProvider implements MigrationProvider {
  constructor(readonly schema: string) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const names = await bundledMigrationNames();
    const out: Record<string, Migration> = {};
    for (const name of names) {
      const text = await readFile(`${MIGRATIONS_DIR}${name}.sql`, 'utf8');
      const body = text.replaceAll('__SCHEMA__', quoteIdent(this.schema)).replaceAll('__SCHEMA_LITERAL__', quoteLiteral(this.schema));
      out[name] = { up: async (db) => { await sql.raw(body).execute(db); } };
    }
    return out;
  }
}

export async function bundledMigrationNames(): Promise<string[]> {
  const files = await readdir(MIGRATIONS_DIR);
  return files.filter((f) => /^\d{6}_[a-z0-9_]+\.sql$/.test(f)).map((f) => f.slice(0, -4)).sort();
}

/** Names of migrations the database has run; empty when the schema does not exist yet. */
export async function appliedMigrations(client: pg.ClientBase | pg.Pool, schema: string): Promise<string[]> {
  const exists = await client.query<{ ok: boolean }>(
    `select to_regclass($1) is not null as ok`,
    [`${quoteIdent(schema)}.${quoteIdent(MIGRATION_TABLE)}`],
  );
  if (!exists.rows[0].ok) return [];
  const res = await client.query<{ name: string }>(`select name from ${quoteIdent(schema)}.${quoteIdent(MIGRATION_TABLE)} order by name`);
  return res.rows.map((r) => r.name);
}

/** Throws unless the database's schema is exactly at this build's latest migration. */
export async function assertSchemaCurrent(pool: pg.Pool, schema: string): Promise<void> {
  const [bundled, applied] = await Promise.all([bundledMigrationNames(), appliedMigrations(pool, schema)]);
  const unknown = applied.filter((n) => !bundled.includes(n));
  if (unknown.length > 0) {
    throw new SchemaVersionError(
      `schema ${schema} was migrated by a newer pg2crate (it has ${unknown.join(', ')}); run a pg2crate release that knows it`,
    );
  }
  const pending = bundled.filter((n) => !applied.includes(n));
  if (pending.length > 0) {
    throw new SchemaVersionError(`schema ${schema} is not migrated to this build (pending: ${pending.join(', ')}); run \`npm run migrate\` first`);
  }
}

/** Runs pending migrations. Returns the names it ran. */
export async function migrate(pool: pg.Pool, schema: string): Promise<string[]> {
  const [bundled, applied] = await Promise.all([bundledMigrationNames(), appliedMigrations(pool, schema)]);
  const unknown = applied.filter((n) => !bundled.includes(n));
  if (unknown.length > 0) {
    throw new SchemaVersionError(
      `schema ${schema} is newer than this build (it has ${unknown.join(', ')}, this build knows up to ${bundled.at(-1)}); upgrade pg2crate instead of migrating`,
    );
  }
  // The pool belongs to the caller: a Kysely over it must not end it.
  const db = new Kysely<unknown>({
    dialect: new PostgresDialect({ pool: { connect: () => pool.connect(), end: async () => {} } as unknown as pg.Pool }),
  });
  try {
    const migrator = new Migrator({
      db,
      provider: new SqlFileProvider(schema),
      migrationTableSchema: schema,
      migrationTableName: MIGRATION_TABLE,
      migrationLockTableName: `${MIGRATION_TABLE}_lock`,
    });
    const { error, results } = await migrator.migrateToLatest();
    if (error) {
      const failed = results?.find((r) => r.status === 'Error');
      throw new SchemaVersionError(`migration ${failed?.migrationName ?? ''} failed: ${(error as Error).message ?? String(error)}`.replace('  ', ' '), {
        cause: error,
      } as never);
    }
    return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  } finally {
    await db.destroy();
  }
}
