// The PostgreSQL sink: Postgres → Postgres without replication rights.
//
// A page is applied in one target transaction (truncate, deletes, upserts per table), so the
// target moves from one page boundary to the next. When a statement fails on a row's value
// (SQLSTATE class 22/23), the page is rolled back and applied again with a savepoint around each
// statement, halving the rows of a failing statement until the rows at fault are isolated; those
// are returned as rejected and everything else is applied. A fenced page (a direct load's chunk)
// checks the fence first in that transaction (fence.ts). A partial image (pgoutput: unchanged
// TOASTed columns absent) updates only the columns it carries. A shaped table (soft deletes,
// metadata, history: table-shape.ts) is applied with the statements of shape-sql.ts, in the same
// transaction; its history rows are written first, every change of the page one row.
import pg from 'pg';
import type { Change, TableInfo } from '../../core/change.js';
import { classify, describe, TableError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { keyMismatchError, sameKey, type ApplyResult, type Fence, type Rejection, type Sink, type SinkTableBatch } from '../sink.js';
import { checkFence, raiseFence } from './fence.js';
import { addColumnSql, createSchemaSql, createTableSql, deleteSql, groupPartial, truncateSql, updateColumnsSql, upsertSql } from './sql.js';
import { createPool } from '../../core/pg-pool.js';
import {
  addExtraColumnSql, createHistorySql, historyColumns, historyInsertSql, historyRowJson, shapedUpsertSql, softDeleteSql, softTruncateSql, stateExtras, stateRowJson,
} from './shape-sql.js';

type RowJson = (c: Change) => string;
const rawJson: RowJson = (c) => c.raw ?? 'null';

function rowsParam(changes: Change[], json: RowJson): string {
  return `[${changes.map(json).join(',')}]`;
}

export class PostgresSink implements Sink {
  readonly name = 'postgres';
  readonly #pool: pg.Pool;
  readonly #log: Logger;
  /** target columns per target table, as last read */
  readonly #known = new Map<string, Set<string>>();
  /** the unique keys of target tables, as last read */
  readonly #keys = new Map<string, string[][]>();

  constructor(connectionString: string, logger: Logger) {
    this.#log = logger.child({ component: 'sink-postgres' });
    this.#pool = createPool({ connectionString, max: 2, application_name: 'pg2crate sink', keepAlive: true }, this.#log, 'target');
  }

  async start(): Promise<void> {
    const c = await this.#pool.connect();
    c.release();
  }

  async prepare(t: TableInfo): Promise<void> {
    const id = `${t.targetSchema}\u0000${t.targetTable}`;
    let cols = this.#known.get(id);
    if (!cols || t.columns.some((c) => !cols!.has(c.name))) {
      cols = await this.#targetColumns(t);
      if (cols.size === 0) {
        await this.#refuseNullableKeyBefore15(t);
        await this.#create(createSchemaSql(t));
        await this.#create(createTableSql(t));
        this.#log.info({ table: `${t.targetSchema}.${t.targetTable}` }, 'created target table');
        cols = await this.#targetColumns(t);
      }
      // Before any column is added: a table keyed otherwise gets nothing of this description.
      await this.#checkKey(t, id);
      for (const c of t.columns) {
        if (!cols.has(c.name)) {
          await this.#pool.query(addColumnSql(t, c));
          this.#log.info({ table: `${t.targetSchema}.${t.targetTable}`, column: c.name }, 'added target column');
          cols.add(c.name);
        }
      }
      this.#known.set(id, cols);
    } else {
      await this.#checkKey(t, id);
    }
    if (t.shape) await this.#prepareShape(t, cols);
  }

  /**
   * The target must have a unique index on exactly the source's key columns: the upsert's ON CONFLICT
   * names them, and a delete by them would otherwise match nothing and be lost without a trace (a key
   * column renamed in the source, the primary key changed). The keys read are cached, and read again
   * when they do not fit (the operator may have fixed the target meanwhile).
   */
  async #checkKey(t: TableInfo, id: string): Promise<void> {
    let keys = this.#keys.get(id);
    if (keys && keys.some((k) => sameKey(k, t.keyColumns))) return;
    keys = await this.#targetKeys(t);
    this.#keys.set(id, keys);
    if (keys.some((k) => sameKey(k, t.keyColumns))) return;
    throw keyMismatchError(`${t.targetSchema}.${t.targetTable}`, t, keys[0] ?? [], 'ALTER TABLE … RENAME COLUMN');
  }

  /** Every unique index ON CONFLICT can use as arbiter (valid, immediate, on plain columns, no predicate), the primary key first. */
  async #targetKeys(t: TableInfo): Promise<string[][]> {
    const res = await this.#pool.query<{ cols: string[] }>(
      `select array_agg(a.attname::text order by k.ord) as cols
         from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
        cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
         left join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
        where n.nspname = $1 and c.relname = $2 and i.indisunique and i.indisvalid and i.indimmediate and i.indpred is null and i.indexprs is null
        group by i.indexrelid, i.indisprimary
        order by i.indisprimary desc, i.indexrelid`,
      [t.targetSchema, t.targetTable],
    );
    return res.rows.map((r) => r.cols);
  }

  /**
   * Runs a CREATE … IF NOT EXISTS. The drainer and an initial load may create the same table at once,
   * and IF NOT EXISTS does not serialise them: the later one fails on a catalog index (23505) or
   * finds the relation made meanwhile (42P06, 42P07). Either way what it was to create is there.
   */
  async #create(sql: string): Promise<void> {
    try {
      await this.#pool.query(sql);
    } catch (err) {
      if (!['23505', '42P06', '42P07'].includes((err as { code?: string }).code ?? '')) throw err;
    }
  }

  /** A key that may hold NULL is kept by UNIQUE NULLS NOT DISTINCT (sql.ts), which PostgreSQL has from 15 on. */
  async #refuseNullableKeyBefore15(t: TableInfo): Promise<void> {
    const nullable = t.keyColumns.filter((k) => !t.columns.find((c) => c.name === k)?.notNull);
    if (nullable.length === 0) return;
    const v = Number((await this.#pool.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0].v);
    if (v >= 150000) return;
    throw new TableError(
      `${t.targetSchema}.${t.targetTable}: its key column${nullable.length > 1 ? 's' : ''} ${nullable.join(', ')} may hold NULL, which a PostgreSQL target ` +
        `keeps apart only with UNIQUE NULLS NOT DISTINCT, from PostgreSQL 15 on (the target runs ${Math.floor(v / 10000)}.${v % 10000}): ` +
        `declare ${nullable.length > 1 ? 'them' : 'it'} NOT NULL in the source table, or replicate into PostgreSQL 15 or later`,
    );
  }

  /** The columns pg2crate adds (deletion time, metadata) and the history table with every column. */
  async #prepareShape(t: TableInfo, cols: Set<string>): Promise<void> {
    const shape = t.shape!;
    for (const c of stateExtras(shape)) {
      if (cols.has(c.name)) continue;
      await this.#pool.query(addExtraColumnSql(t.targetSchema, t.targetTable, c));
      cols.add(c.name);
    }
    const h = shape.history;
    if (!h) return;
    const id = `${h.schema}\u0000${h.table}`;
    let have = this.#known.get(id);
    const want = historyColumns(h, t.columns);
    if (have && want.every((c) => have!.has(c.name))) return;
    have = await this.#targetColumns({ targetSchema: h.schema, targetTable: h.table });
    if (have.size === 0) {
      for (const stmt of createHistorySql(h, t.columns)) await this.#pool.query(stmt);
      this.#log.info({ table: `${h.schema}.${h.table}` }, 'created history table');
      have = await this.#targetColumns({ targetSchema: h.schema, targetTable: h.table });
    }
    for (const c of want) {
      if (have.has(c.name)) continue;
      await this.#pool.query(addExtraColumnSql(h.schema, h.table, c));
      have.add(c.name);
    }
    this.#known.set(id, have);
  }

  async #targetColumns(t: Pick<TableInfo, 'targetSchema' | 'targetTable'>): Promise<Set<string>> {
    const res = await this.#pool.query<{ name: string }>(
      `select a.attname as name from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped`,
      [t.targetSchema, t.targetTable],
    );
    return new Set(res.rows.map((r) => r.name));
  }

  async raiseFence(fence: Fence): Promise<void> {
    await raiseFence(this.#pool, fence);
  }

  async apply(batches: SinkTableBatch[], fence?: Fence): Promise<ApplyResult> {
    const client = await this.#pool.connect();
    let broken = false;
    try {
      try {
        await client.query('begin');
        if (fence) await checkFence(client, fence);
        for (const b of batches) await this.#applyTable(client, b, null);
        await client.query('commit');
        return { rejected: [] };
      } catch (err) {
        await client.query('rollback').catch(() => {});
        if (classify(err) !== 'data') throw err;
        this.#log.warn({ code: (err as { code?: string }).code }, 'a value failed; isolating the rows at fault');
      }
      const rejected: Rejection[] = [];
      await client.query('begin');
      if (fence) await checkFence(client, fence);
      for (const b of batches) await this.#applyTable(client, b, rejected);
      await client.query('commit');
      return { rejected };
    } catch (err) {
      broken = classify(err) === 'retryable';
      await client.query('rollback').catch(() => {});
      throw err;
    } finally {
      client.release(broken);
    }
  }

  async #applyTable(client: pg.PoolClient, b: SinkTableBatch, rejected: Rejection[] | null): Promise<void> {
    const t = b.table;
    const shape = t.shape ?? null;
    if (shape?.history && b.history && b.history.length > 0) {
      const h = shape.history;
      await this.#run(client, historyInsertSql(h, t.columns), b.history, rejected, (c) => historyRowJson(h, c), true);
    }
    const soft = shape?.deletes === 'soft' ? { ...t, shape } : null;
    const shaped = shape !== null && stateExtras(shape).length > 0 ? { ...t, shape } : null;
    if (b.truncate) {
      if (soft) await client.query(softTruncateSql(soft), [b.truncatedAt ?? null]);
      else await client.query(truncateSql(t));
    }
    const nullableKey = t.keyColumns.some((k) => !t.columns.find((c) => c.name === k)?.notNull);
    if (b.deletes.length > 0) {
      if (soft) await this.#run(client, softDeleteSql(soft, nullableKey), b.deletes, rejected, (c) => stateRowJson(soft.shape, c));
      else await this.#run(client, deleteSql(t, nullableKey), b.deletes, rejected);
    }
    const full = b.upserts.filter((c) => !c.partial);
    if (full.length > 0) {
      if (shaped) await this.#run(client, shapedUpsertSql(shaped), full, rejected, (c) => stateRowJson(shaped.shape, c));
      else await this.#run(client, upsertSql(t), full, rejected);
    }
    // Partial images (pgoutput, unchanged TOAST): update only the columns they carry.
    if (full.length < b.upserts.length) {
      for (const g of groupPartial(t, b.upserts.filter((c) => c.partial))) await this.#run(client, updateColumnsSql(t, g.columns, nullableKey), g.changes, rejected);
    }
  }

  /** Runs one statement; in careful mode (rejected given) isolates failing rows by halving. */
  async #run(client: pg.PoolClient, sql: string, rows: Change[], rejected: Rejection[] | null, json: RowJson = rawJson, history = false): Promise<void> {
    if (rejected === null) {
      await client.query(sql, [rowsParam(rows, json)]);
      return;
    }
    await client.query('savepoint pg2crate_rows');
    try {
      await client.query(sql, [rowsParam(rows, json)]);
      await client.query('release savepoint pg2crate_rows');
    } catch (err) {
      await client.query('rollback to savepoint pg2crate_rows');
      await client.query('release savepoint pg2crate_rows');
      if (classify(err) !== 'data') throw err;
      if (rows.length === 1) {
        rejected.push({ change: rows[0], code: (err as { code?: string }).code, message: describe(err), ...(history ? { history } : {}) });
        return;
      }
      const mid = rows.length >> 1;
      await this.#run(client, sql, rows.slice(0, mid), rejected, json, history);
      await this.#run(client, sql, rows.slice(mid), rejected, json, history);
    }
  }

  async ping(): Promise<void> {
    await this.#pool.query('select 1');
  }

  async stop(): Promise<void> {
    await this.#pool.end().catch(() => {});
  }
}
