// The fast path of a direct initial load into a Postgres target (source/direct-load.ts): a chunk
// travels as COPY's binary format from the source straight into the target table; once a chunk
// meets a key the target has already, the table's later chunks go into a temporary table and one
// INSERT … ON CONFLICT merges each into the target. No JSON is built, parsed or transmitted, and
// nothing passes through Node but opaque buffers.
//
// Binary COPY carries each value in its type's binary form, so it is used only when every column
// has the same built-in type on both sides (an enum, domain or composite has its own oid per
// database, and the sink stores those as text). Any other table, and any chunk the merge refuses
// (a value the target's type or constraints reject), goes through the sink's JSON path instead,
// which isolates the rows at fault and parks them.
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { TableInfo } from '../../core/change.js';
import { qualify, quoteIdent } from '../../core/identifiers.js';
import type { Logger } from '../../core/logger.js';
import type { Fence } from '../sink.js';
import { checkFence } from './fence.js';
import { createPool } from '../../core/pg-pool.js';

/** Built-in types have oids below this (FirstNormalObjectId). */
const FIRST_USER_OID = 16384;

export interface StagedChunk {
  rows: number;
  /** moves the staged rows into the target table and commits */
  merge(): Promise<void>;
  /** rolls the staged rows back */
  discard(): Promise<void>;
}

export class PgCopyLoader {
  readonly #pool: pg.Pool;
  readonly #log: Logger;
  /** tables whose chunks met rows already in the target: staged and upserted from then on */
  readonly #merging = new Set<number>();

  constructor(targetUrl: string, logger: Logger) {
    this.#log = logger.child({ component: 'copy-load' });
    this.#pool = createPool({ connectionString: targetUrl, max: 2, application_name: 'pg2crate initial load', keepAlive: true }, this.#log, 'target');
  }

  /**
   * True when `table` can be copied in binary: a plain copy (no shape) whose every column has the
   * same built-in type in the source (`source`, a connection to it) and in the target table, into a
   * target database where this role may create temporary tables.
   */
  async usable(source: pg.ClientBase | pg.Pool, table: TableInfo): Promise<boolean> {
    if (table.shape) return false;
    const typesOf = async (db: pg.ClientBase | pg.Pool, schema: string, name: string) => {
      const res = await db.query<{ name: string; oid: number; typmod: number }>(
        `select a.attname as name, a.atttypid::int8 as oid, a.atttypmod as typmod
           from pg_catalog.pg_attribute a join pg_catalog.pg_class c on c.oid = a.attrelid join pg_catalog.pg_namespace n on n.oid = c.relnamespace
          where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped`,
        [schema, name],
      );
      return new Map(res.rows.map((r) => [r.name, { oid: Number(r.oid), typmod: r.typmod }]));
    };
    // The staging table is a temporary one.
    const temp = await this.#pool.query<{ ok: boolean }>(`select has_database_privilege(current_database(), 'TEMPORARY') as ok`);
    if (!temp.rows[0].ok) return false;
    const [src, dst] = await Promise.all([typesOf(source, table.sourceSchema, table.sourceTable), typesOf(this.#pool, table.targetSchema, table.targetTable)]);
    return table.columns.every((c) => {
      const a = src.get(c.name);
      const b = dst.get(c.name);
      return a !== undefined && b !== undefined && a.oid < FIRST_USER_OID && a.oid === b.oid && a.typmod === b.typmod;
    });
  }

  /**
   * Streams `copyOut` (a `COPY (select …) TO STDOUT (FORMAT binary)` of the table's columns in
   * `table.columns` order) from the `source` connection into a temporary table of the target, in a
   * target transaction left open: `merge()` then moves the rows into the target table and commits,
   * `discard()` rolls back. Staging the next chunk while the previous one merges keeps both
   * databases busy. Throws what either side throws (the target's transaction is rolled back then).
   * The fence is checked first in that transaction (fence.ts), and held until the merge commits.
   */
  async stage(source: pg.ClientBase, copyOut: string, table: TableInfo, fence: Fence): Promise<StagedChunk> {
    const target = qualify(table.targetSchema, table.targetTable);
    const staging = quoteIdent(`pg2crate_load_${table.id}`);
    const names = table.columns.map((c) => quoteIdent(c.name));
    const keys = new Set(table.keyColumns);
    const rest = table.columns.filter((c) => !keys.has(c.name)).map((c) => `${quoteIdent(c.name)} = excluded.${quoteIdent(c.name)}`);
    const action = rest.length > 0 ? `do update set ${rest.join(', ')}` : 'do nothing';
    const client = await this.#pool.connect();
    let released = false;
    // After a failed COPY the connection may still be in the middle of its COPY protocol, where a
    // ROLLBACK would wait forever behind it: such a connection is closed, which rolls back.
    const end = async (err?: unknown): Promise<void> => {
      if (released) return;
      released = true;
      client.release(err === undefined ? undefined : true);
    };
    try {
      await client.query('begin');
      await checkFence(client, fence);
      if (!this.#merging.has(table.id)) {
        // Straight into the target table, as a plain COPY would. That fails (unique violation) only
        // where the target has one of the keys already: the drainer applied a change of it, or the
        // table is copied again. The caller then sends that chunk through the sink, and the rest of
        // this table's load goes through a staging table and an upsert.
        const direct = client.query(copyFrom(`copy ${target} (${names.join(', ')}) from stdin (format binary)`));
        try {
          await pipeline(source.query(copyTo(copyOut)), direct);
        } catch (err) {
          if ((err as { code?: string }).code === '23505') this.#merging.add(table.id);
          throw err;
        }
        return { rows: direct.rowCount ?? 0, merge: async () => { try { await client.query('commit'); await end(); } catch (err) { await end(err); throw err; } }, discard: () => end(new Error('discarded')) };
      }
      // Temporary: no WAL; made afresh for each chunk (the target may have gained columns since).
      await client.query(`create temp table ${staging} (like ${target}) on commit drop`);
      const into = client.query(copyFrom(`copy ${staging} (${names.join(', ')}) from stdin (format binary)`));
      await pipeline(source.query(copyTo(copyOut)), into);
      const rows = into.rowCount ?? 0;
      const upsert = `insert into ${target} (${names.join(', ')}) select ${names.join(', ')} from ${staging}
        on conflict (${table.keyColumns.map(quoteIdent).join(', ')}) ${action}`;
      return {
        rows,
        merge: async () => {
          try {
            await client.query(upsert);
            await client.query('commit');
            await end();
          } catch (err) {
            await end(err);
            throw err;
          }
        },
        discard: () => end(new Error('discarded')),
      };
    } catch (err) {
      await end(err);
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.#pool.end().catch(() => {});
  }
}
