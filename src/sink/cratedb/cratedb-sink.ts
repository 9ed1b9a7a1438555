// The CrateDB sink: applies pages over HTTP bulk requests, table by table (truncate, deletes by
// key, upserts), and keeps target tables in step with the source's columns.
//
// States per target table: unknown → ready (created or found, every source column present, its
// key checked) → stale (CrateDB answered unknown table/column: re-read once, then ready again or
// fatal for the table). The columns last read are cached; prepare() and a changed TableInfo
// (new columns) read information_schema again, since ALTER TABLE ADD COLUMN has no IF NOT EXISTS.
//
// Trade-offs: CrateDB has no transactions, so a page is not applied atomically; every write is
// idempotent (upsert by key, delete by key), and the drainer replays a page whole after a
// failure, which converges on the same state. Rows a value keeps out are returned as rejected,
// everything else is applied (bulk-writer.ts).
//
// A shaped table (table-shape.ts) gets the columns pg2crate adds, soft deletes as marks by key, and
// a history table beside it, written first (one row per change of the page): shape-sql.ts.
import type { Change, TableInfo } from '../../core/change.js';
import type { CrateOptions, TargetConfig } from '../../core/config.js';
import { classify, describe, TableError } from '../../core/errors.js';
import { displayName, qualify } from '../../core/identifiers.js';
import type { Logger } from '../../core/logger.js';
import { isBuiltRow, keyMismatchError, sameKey, type ApplyResult, type BuiltRow, type CopyRowSql, type Rejection, type Sink, type SinkTableBatch } from '../sink.js';
import { RequestSlots, writeBulk, type BulkItem, type BulkLimits } from './bulk-writer.js';
import { planTable, type ColumnPlan, type CrateFeatures, type TablePlan } from './column-types.js';
import { copyRowSql } from './copy-row-sql.js';
import { CrateClient } from './crate-client.js';
import { ParamRows } from './param-rows.js';
import { updateArgs, ValueRejected, writeDeleteArgs, writeUpsertArgs } from './row-values.js';
import { addColumnSql, COLUMNS_QUERY, createTableSql, deleteByKeySql, insertKeepingSql, PRIMARY_KEY_QUERY, TABLE_QUERY, truncateSql, updateColumnsSql, upsertSql } from './sql.js';
import {
  createHistorySql, extraColumnPlans, historyArgs, historyDay, historyInsertSql, historyPlan, shapedUpsertArgs, shapedUpsertSql, softDeleteArgs,
  softDeleteSql, softTruncate, withExtraColumns, type HistoryPlan,
} from './shape-sql.js';

export { crateColumnName, crateNameMappings, crateTargetName, type CrateNameMapping } from './names.js';
export { decodeJsonColumn } from './row-values.js';

interface TargetShape {
  columns: Set<string>;
  primaryKey: string[];
  /** routing and partition columns, which an upsert may not SET */
  fixed: Set<string>;
}

interface TargetTable {
  /** the TableInfo this was prepared for; another one (new columns) prepares again */
  info: TableInfo;
  plan: TablePlan;
  shape: TargetShape;
  upsert: { sql: string; doNothing: boolean };
  /** an initial load's insert into a table it found empty (sink.ts keepExisting) */
  insertKeeping: string;
  delete: string;
  /** shaped tables: upserts with the added columns, soft deletes, the history table */
  shaped?: { upsert: boolean; softDelete: string | null; history: { plan: HistoryPlan; insert: string } | null };
}

function versionAtLeast(version: string, major: number, minor: number): boolean {
  const [a, b] = version.split('.').map(Number);
  return a > major || (a === major && b >= minor);
}

const byKey = (a: Change, b: Change) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Writes one change's parameter row into `out`. */
type RowWriter = (out: ParamRows, plan: TablePlan, change: Change) => void;

/** A row built as a string by `build`, written as one. */
const fromText = (build: (p: TablePlan, c: Change) => string): RowWriter => (out, p, c) => out.text(build(p, c));

/** A table's parameter rows, built for one target (a target read again builds them again). */
class StagedRows {
  constructor(
    readonly target: TargetTable,
    readonly deletes: BulkItem[],
    readonly upserts: BulkItem[],
    /** partial images are among the upserts (built when written) */
    readonly partial: boolean,
    /** changes whose values CrateDB cannot hold */
    readonly rejected: Rejection[],
  ) {}
}

/** A CrateDB table's key in the sink's maps. */
function targetKey(schema: string, table: string): string {
  return `${schema}\u0000${table}`;
}

export class CrateSink implements Sink {
  readonly name = 'cratedb';
  readonly #client: CrateClient;
  readonly #opts: CrateOptions;
  readonly #limits: BulkLimits;
  readonly #log: Logger;
  /** by targetKey() */
  readonly #tables = new Map<string, TargetTable>();
  readonly #historyShapes = new Map<string, TargetShape>();
  #features: CrateFeatures | null = null;

  /** `tuning` is for benchmarks: requests in flight at once, instead of opts.requestsInFlight. */
  constructor(target: Extract<TargetConfig, { kind: 'cratedb' }>, opts: CrateOptions, logger: Logger, tuning: { parallel?: number } = {}) {
    this.#log = logger.child({ component: 'sink-cratedb' });
    this.#client = new CrateClient({ url: target.urls, username: target.username, password: target.password, timeoutMs: opts.requestTimeoutMs }, { log: this.#log });
    this.#opts = opts;
    // At least two requests in flight: CrateDB works on one while the next is serialised and sent.
    this.#limits = { maxRows: opts.maxRequestRows, maxBytes: opts.maxRequestBytes, parallel: tuning.parallel ?? opts.requestsInFlight };
  }

  /** Checks the connection and credentials; a CrateDB that is down is waited for by the drainer instead. */
  async start(): Promise<void> {
    try {
      await this.#detect();
    } catch (err) {
      if (classify(err) !== 'retryable') throw err;
      this.#log.warn({ err }, 'cratedb not reachable yet; the drainer will retry');
    }
  }

  async #detect(): Promise<CrateFeatures> {
    if (!this.#features) {
      const version = await this.#client.version();
      this.#features = { uuid: versionAtLeast(version, 6, 2) };
      this.#log.info({ version }, 'connected to cratedb');
    }
    return this.#features;
  }

  async prepare(t: TableInfo): Promise<void> {
    await this.#ensure(t, false);
  }

  /** Makes sure the target table exists with every source column; `reread` ignores the cache. */
  async #ensure(t: TableInfo, reread: boolean): Promise<TargetTable> {
    const known = this.#tables.get(targetKey(t.targetSchema, t.targetTable));
    if (known && known.info === t && !reread) return known;
    const features = await this.#detect();
    const base = planTable(t, this.#opts, features);
    // DDL sees the added columns too; values are built from the source's columns (base).
    const plan = t.shape ? withExtraColumns(base, t.shape) : base;
    let shape = known && !reread && plan.columns.every((c) => known.shape.columns.has(c.target)) ? known.shape : await this.#readShape(plan);
    const where = { table: `${plan.schema}.${plan.table}` };
    if (!shape) {
      await this.#ddl(plan, createTableSql(plan, this.#opts));
      this.#log.info(where, 'created target table');
      shape = await this.#readShape(plan);
      if (!shape) throw new TableError(`CrateDB table ${displayName(plan.schema, plan.table)} was created but cannot be found in information_schema`);
    }
    // Before any column is added. A cached shape that does not fit is read again: the operator may
    // have given the target the source's key meanwhile.
    if (!this.#keyFits(plan, shape) && known?.shape === shape) shape = (await this.#readShape(plan)) ?? shape;
    if (!this.#keyFits(plan, shape)) throw keyMismatchError(displayName(plan.schema, plan.table), t, shape.primaryKey, 'ALTER TABLE … RENAME COLUMN');
    for (const c of plan.columns) {
      if (shape.columns.has(c.target)) continue;
      try {
        await this.#ddl(plan, addColumnSql(plan, c));
        this.#log.info({ ...where, column: c.target }, 'added target column');
      } catch (err) {
        // Another instance may have added it a moment ago: only the column's absence is an error.
        const again = await this.#readShape(plan);
        if (!again?.columns.has(c.target)) throw err;
      }
      shape.columns.add(c.target);
    }
    const entry: TargetTable = { info: t, plan: base, shape, upsert: upsertSql(base, shape.fixed), insertKeeping: insertKeepingSql(base), delete: deleteByKeySql(base) };
    if (t.shape) {
      const extras = extraColumnPlans(t.shape).length > 0;
      if (extras) entry.upsert = { sql: shapedUpsertSql(base, t.shape, shape.fixed), doNothing: false };
      let history: { plan: HistoryPlan; insert: string } | null = null;
      if (t.shape.history) {
        const hp = historyPlan(t, t.shape.history, base, this.#opts, features);
        await this.#ensureHistory(hp, reread);
        history = { plan: hp, insert: historyInsertSql(hp) };
      }
      entry.shaped = { upsert: extras, softDelete: t.shape.deletes === 'soft' ? softDeleteSql(base, t.shape) : null, history };
    }
    this.#tables.set(targetKey(t.targetSchema, t.targetTable), entry);
    return entry;
  }

  /** The history table exists with every column of the plan (created partitioned by day). */
  async #ensureHistory(hp: HistoryPlan, reread: boolean): Promise<void> {
    const where = { table: `${hp.schema}.${hp.table}` };
    let shape = reread ? null : this.#historyShapes.get(targetKey(hp.schema, hp.table)) ?? null;
    if (shape && hp.columns.every((c) => shape!.columns.has(c.target))) return;
    shape = await this.#readShape(hp);
    if (!shape) {
      await this.#ddl(hp, createHistorySql(hp, this.#opts));
      this.#log.info(where, 'created history table');
      shape = await this.#readShape(hp);
      if (!shape) throw new TableError(`CrateDB history table ${displayName(hp.schema, hp.table)} was created but cannot be found in information_schema`);
    }
    for (const c of hp.columns) {
      if (shape.columns.has(c.target)) continue;
      try {
        await this.#ddl(hp, addColumnSql(hp, c));
        this.#log.info({ ...where, column: c.target }, 'added history column');
      } catch (err) {
        const again = await this.#readShape(hp);
        if (!again?.columns.has(c.target)) throw err;
      }
      shape.columns.add(c.target);
    }
    this.#historyShapes.set(targetKey(hp.schema, hp.table), shape);
  }

  /** DDL that CrateDB refuses for a reason other than its availability will not pass on a retry. */
  async #ddl(plan: TablePlan, stmt: string): Promise<void> {
    try {
      await this.#client.sql(stmt);
    } catch (err) {
      if (classify(err) === 'retryable') throw err;
      throw new TableError(`CrateDB refused to create or change table ${displayName(plan.schema, plan.table)}: ${describe(err)}`, { cause: err });
    }
  }

  async #readShape(plan: TablePlan): Promise<TargetShape | null> {
    const args = [plan.schema, plan.table];
    const table = await this.#client.sql(TABLE_QUERY, args);
    if (table.rows.length === 0) return null;
    const [clusteredBy, partitionedBy] = table.rows[0];
    const fixed = new Set<string>();
    if (typeof clusteredBy === 'string' && clusteredBy !== '_id') fixed.add(clusteredBy);
    if (Array.isArray(partitionedBy)) for (const p of partitionedBy) if (typeof p === 'string') fixed.add(p);
    const columns = (await this.#client.sql(COLUMNS_QUERY, args)).rows.map((r) => String(r[0])).filter((n) => !n.includes('['));
    const primaryKey = (await this.#client.sql(PRIMARY_KEY_QUERY, args)).rows.map((r) => String(r[0]));
    return { columns: new Set(columns), primaryKey, fixed };
  }

  /** Upserts name the source's key in ON CONFLICT, and deletes match by it: the target's primary key must be exactly that. */
  #keyFits(plan: TablePlan, shape: TargetShape): boolean {
    return sameKey(plan.keys.map((k) => k.target), shape.primaryKey);
  }

  apply(batches: SinkTableBatch[]): Promise<ApplyResult> {
    return this.#apply(batches, new RequestSlots(this.#limits.parallel ?? 1));
  }

  /**
   * The drainer's pages, which may overlap (Sink.applier): one bound on requests in flight for all
   * of them, so a page's first request takes the slot the page before it left free, and CrateDB
   * is not left with one request while a page is confirmed and the next one begins.
   */
  applier(): (batches: SinkTableBatch[]) => Promise<ApplyResult> {
    const slots = new RequestSlots(this.#limits.parallel ?? 1);
    return (batches) => this.#apply(batches, slots);
  }

  async #apply(batches: SinkTableBatch[], slots: RequestSlots): Promise<ApplyResult> {
    // The tables of a page are written at once: their rows are independent (CrateDB has neither
    // transactions nor foreign keys), and a page's requests are mostly waiting on CrateDB. Within
    // one table the order stays truncate, deletes, upserts. All are settled before the page is
    // confirmed or failed, so nothing of a failed attempt is still writing when it is replayed.
    // One bound on requests in flight for the whole page, or the pages of one applier (RequestSlots).
    const limits = { ...this.#limits, slots };
    const outcomes = await Promise.allSettled(batches.map((b) => this.#applyTable(b, limits)));
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;
    return { rejected: outcomes.flatMap((o) => (o.status === 'fulfilled' ? o.value : [])) };
  }

  /** Writes one table's part of a page; an unknown table or column re-reads the target once. */
  async #applyTable(b: SinkTableBatch, limits: BulkLimits): Promise<Rejection[]> {
    let target = await this.#ensure(b.table, false);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#write(target, b, limits);
      } catch (err) {
        if (classify(err) !== 'schema') throw err;
        const name = displayName(target.plan.schema, target.plan.table);
        if (attempt >= 2) {
          throw new TableError(
            `CrateDB table ${name} still does not match the source after re-reading its columns (${(err as Error).message}); ` +
              'check that nobody dropped or renamed it or its columns in CrateDB, or drop it to have it created again',
            { cause: err },
          );
        }
        this.#log.warn({ table: `${target.plan.schema}.${target.plan.table}`, code: (err as { code?: string }).code }, 'target table changed; re-reading it');
        target = await this.#ensure(b.table, true);
      }
    }
  }

  async #write(target: TargetTable, b: SinkTableBatch, limits: BulkLimits): Promise<Rejection[]> {
    const { plan } = target;
    const rejected: Rejection[] = [];
    const shape = b.table.shape;
    const history = target.shaped?.history;
    if (history && b.history && b.history.length > 0) rejected.push(...(await this.#writeHistory(history, b.history, limits)));
    if (b.truncate) {
      if (target.shaped?.softDelete && shape) {
        const soft = softTruncate(plan, shape, b.truncatedAt);
        await this.#client.sql(soft.refresh);
        await this.#client.sql(soft.update, soft.args);
      } else {
        for (const stmt of truncateSql(plan)) await this.#client.sql(stmt);
      }
    }
    // Every parameter row is built before the first request (or earlier, by stage()).
    const built = b.staged instanceof StagedRows && b.staged.target === target ? b.staged : this.#build(target, b);
    const { deletes, upserts, partial } = built;
    rejected.push(...built.rejected);
    const soft = target.shaped?.softDelete && shape ? target.shaped.softDelete : null;
    // Deletes, partial updates and upserts run at once: coalescing left each key in one of them
    // only, so they commute. All are settled before this returns or throws.
    const writes: Array<Promise<Rejection[]>> = [];
    if (deletes.length > 0) writes.push(writeBulk(this.#client, soft ?? target.delete, deletes, soft ? 'mark' : 'delete', limits).then((o) => o.rejected));
    if (partial) writes.push(this.#writePartial(target, b.upserts.filter((c) => c.partial), limits));
    if (upserts.length > 0) {
      // A shaped table (added columns, soft deletes, a history) keeps its own upsert.
      const keep = b.keepExisting === true && !target.shaped;
      const stmt = keep ? target.insertKeeping : target.upsert.sql;
      const mode = keep || target.upsert.doNothing ? 'upsert-do-nothing' : 'upsert';
      writes.push(writeBulk(this.#client, stmt, upserts, mode, limits).then((o) => o.rejected));
    }
    const outcomes = await Promise.allSettled(writes);
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) throw failed.reason;
    for (const o of outcomes) if (o.status === 'fulfilled') rejected.push(...o.value);
    if (rejected.length > 0) {
      const codes = [...new Set(rejected.map((r) => r.code ?? 'value'))];
      this.#log.warn({ table: `${plan.schema}.${plan.table}`, rows: rejected.length, codes }, 'cratedb refused rows');
    }
    return rejected;
  }

  /** The parameter rows of a table's deletes and upserts (partial images are built when written). */
  #build(target: TargetTable, b: SinkTableBatch): StagedRows {
    const { plan } = target;
    const shape = b.table.shape;
    const rejected: Rejection[] = [];
    // In key order: CrateDB looks every key up (a delete's row, an upsert's conflict), and keys in
    // order hit the same parts of its index one after another. The keys of a statement are distinct
    // (coalesced), so their order changes nothing else. Sorted before the rows are written, so that
    // a request's rows lie one after another in the buffer (param-rows.ts).
    const soft = target.shaped?.softDelete && shape ? shape : null;
    // A key CrateDB cannot hold (NULL, out of range) was never stored: nothing to delete.
    const deletes = this.#rows(plan, [...b.deletes].sort(byKey), soft ? fromText((p, c) => softDeleteArgs(p, soft, c)) : writeDeleteArgs, null);
    /** rows the source built (copyRowSql): an initial load's, already in the source's key order */
    const built: BuiltRow[] = [];
    const own: Change[] = [];
    let partial = false;
    for (const change of b.upserts) {
      if (change.partial) partial = true;
      else if (isBuiltRow(change)) {
        // The SQL was made from this very TableInfo, and a table's plan follows from it alone.
        if (change.built.table !== b.table || target.shaped) throw new Error(`a copied row of ${b.table.sourceSchema}.${b.table.sourceTable} was built for another description of its table`);
        built.push(change);
      } else own.push(change);
    }
    const write = target.shaped?.upsert && shape ? fromText((p, c) => shapedUpsertArgs(p, shape, c)) : writeUpsertArgs;
    const upserts = this.#rows(plan, own.sort(byKey), write, rejected);
    if (built.length > 0) {
      const rows = upserts.length > 0 ? upserts[0].rows : new ParamRows();
      for (const change of built) upserts.push({ change, ...rows.row(change.built.args) });
    }
    return new StagedRows(target, deletes, upserts, partial, rejected);
  }

  /**
   * Builds the parameter rows of batches ahead of apply() (the drainer does it for the next page
   * while this one is written), for tables already prepared for exactly that TableInfo; others are
   * built by apply(). Pure CPU work: no request, nothing written.
   */
  stage(batches: SinkTableBatch[]): void {
    for (const b of batches) {
      const target = this.#tables.get(targetKey(b.table.targetSchema, b.table.targetTable));
      if (target && target.info === b.table) b.staged = this.#build(target, b);
    }
  }

  /** Every change as a row of the history table, one request per day (partition): see shape-sql.ts. */
  async #writeHistory(history: { plan: HistoryPlan; insert: string }, changes: Change[], limits: BulkLimits): Promise<Rejection[]> {
    const days = new Map<string, BulkItem[]>();
    const rejected: Rejection[] = [];
    const write = fromText((p, c) => historyArgs(p as HistoryPlan, c));
    for (const item of this.#rows(history.plan, changes, write, rejected)) {
      const day = historyDay(item.change);
      let items = days.get(day);
      if (!items) days.set(day, (items = []));
      items.push(item);
    }
    for (const items of days.values()) rejected.push(...(await writeBulk(this.#client, history.insert, items, 'upsert-do-nothing', limits)).rejected);
    return rejected.map((r) => ({ ...r, history: true }));
  }

  /** Partial images (pgoutput, unchanged TOAST): one UPDATE of the columns they carry per set of columns. */
  async #writePartial(target: TargetTable, changes: Change[], limits: BulkLimits): Promise<Rejection[]> {
    const { plan, shape } = target;
    const keys = new Set(plan.keys.map((k) => k.source));
    const groups = new Map<string, { columns: ColumnPlan[]; changes: Change[] }>();
    const rejected: Rejection[] = [];
    for (const change of changes) {
      // Routing and partition columns cannot be SET, as in upserts.
      const columns = plan.columns.filter((c) => !keys.has(c.source) && !shape.fixed.has(c.target) && change.row?.[c.source] !== undefined);
      if (columns.length === 0) continue;
      const id = columns.map((c) => c.target).join('\u0000');
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { columns, changes: [] }));
      g.changes.push(change);
    }
    for (const g of groups.values()) {
      const items = this.#rows(plan, g.changes, fromText((p, c) => updateArgs(p, c, g.columns)), rejected);
      rejected.push(...(await writeBulk(this.#client, updateColumnsSql(plan, g.columns), items, 'update', limits)).rejected);
    }
    return rejected;
  }

  /**
   * The parameter rows of `changes`, in their order, written into one buffer; a change whose values
   * CrateDB cannot hold is left out, and reported in `rejected` where given.
   */
  #rows(plan: TablePlan, changes: readonly Change[], write: RowWriter, rejected: Rejection[] | null): BulkItem[] {
    const rows = new ParamRows(changes.reduce((n, c) => n + (c.raw?.length ?? 64), 64));
    const items: BulkItem[] = [];
    for (const change of changes) {
      const start = rows.begin();
      try {
        write(rows, plan, change);
      } catch (err) {
        if (!(err instanceof ValueRejected)) throw err;
        rows.cancel();
        rejected?.push({ change, code: undefined, message: err.message });
        continue;
      }
      items.push({ change, rows, start, end: rows.close() });
    }
    return items;
  }

  async copyRowSql(t: TableInfo, alias: string): Promise<CopyRowSql | null> {
    const { plan } = await this.#ensure(t, false);
    return copyRowSql(t, plan, alias);
  }

  async holdsRows(t: TableInfo): Promise<boolean> {
    const { plan } = await this.#ensure(t, false);
    // A search sees only refreshed rows: the refresh makes every confirmed write visible to it.
    const table = qualify(plan.schema, plan.table);
    await this.#client.sql(`REFRESH TABLE ${table}`);
    return (await this.#client.sql(`SELECT 1 FROM ${table} LIMIT 1`)).rows.length > 0;
  }

  /** Readiness: CrateDB answers a statement with these credentials. */
  async ping(): Promise<void> {
    await this.#client.sql('SELECT 1');
  }

  async stop(): Promise<void> {
    this.#client.close();
  }
}
