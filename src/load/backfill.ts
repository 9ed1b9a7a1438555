// The initial load: copies a table's existing rows into the change stream, chunk by chunk.
//
// Each chunk is one short transaction that reads the next rows in key order and writes them into
// the outbox as 'B' events: no snapshot is held open for longer than a chunk, and the rows reach the
// target through the same drainer, sink and checkpoint as every other change.
//
// Why a chunk can never overwrite a newer change: the chunk reads its rows FOR SHARE. A writer
// that changed one of those rows and has not committed holds the row lock, so the chunk waits for
// it and (READ COMMITTED re-check) copies the version it committed; a writer that comes after the
// chunk waits for the chunk's transaction to end. For each row the chunk therefore behaves like a
// writer that changes nothing: its event comes after every earlier writer's event and before every
// later one's, in commit order and in id order, which is the order the drainer applies. Rows a
// concurrent transaction inserts are captured by the triggers (installed before the copy starts);
// rows it deletes are either copied before the delete (then deleted after) or not copied at all.
// The price: writers of the rows of a chunk wait for that chunk's statement (milliseconds).
//
// Resumable: the chunk's events and the job's last key are written in one transaction, so after a
// crash the copy resumes after the last committed chunk, neither losing nor repeating one. The job
// row is advanced only from the last key this copier read (optimistic check), so two copiers
// overlapping during a failover cannot both write the same chunk.
// Bounded: at most `inflight` chunks wait in the outbox; the copier waits for the drainer to have
// applied older ones (their transaction is visible in the checkpoint's prev_snapshot).
//
// pgoutput mode: the outbox is published, so a chunk's events arrive through the slot at its
// commit, in commit order with the row changes; the FOR SHARE argument above holds for commit
// order as it does for id order, and concurrent inserts come through the slot instead of the
// triggers. The outbox checkpoint only trails the slot there, so a chunk counts as applied once
// the slot's confirmed position passed a logical message emitted right after its commit. Waiting matters:
// a slot applies no backpressure on writers, and without it the copy would run ahead of the
// target by the whole table, held as WAL.
import type pg from 'pg';
import { describeColumns, type RegisteredTable } from '../capture/registry.js';
import { rowFilterSql, rowImageSql, sourceTimeSql } from '../capture/row-image.js';
import { qualify, quoteIdent } from '../core/identifiers.js';
import type { Logger } from '../core/logger.js';
import { emitWaitMark, slotPassed } from '../source/catch-up-state.js';
import { sleep } from '../core/sleep.js';
import { TAKE_XID } from '../capture/outbox-bounds.js';
import { backoffDelay, classify, describe, TargetKeyError } from '../core/errors.js';
import { backOffAfter } from '../sink/sink.js';
import { runDirectLoad, type DirectLoadDeps } from './direct-load.js';
import { estimateRows, etaSeconds } from './row-estimate.js';

export interface BackfillProgress {
  table: string;
  /** pending (not started), running, done (copied; `applied` says whether it reached the target) */
  status: string;
  rowsCopied: number;
  /** the planner's estimate when the copy started (row-estimate.ts) */
  rowsEstimate: number | null;
  /** since the copy started (a restart's pause included) */
  rowsPerSecond: number;
  /** null when unknown, and once copied */
  etaSeconds: number | null;
  done: boolean;
}

export interface BackfillOptions {
  schema: string;
  stream: string;
  chunkRows: number;
  /** chunks that may wait in the outbox, unapplied */
  inflight: number;
  pollMs: number;
  logger: Logger;
  /** only the instance that holds the stream copies; the others leave pending jobs to it */
  isLeader: () => boolean;
  /** pgoutput mode: the slot whose confirmed position says a chunk is applied */
  slot?: string;
  /** trigger mode: copy straight into the sink instead of through the outbox (direct-load.ts) */
  direct?: DirectLoadDeps;
}

const LOCK_TIMEOUT_MS = 200;
const MIN_CHUNK_ROWS = 50;
/** how long a load whose target table is keyed otherwise waits before it tries again */
const KEY_WAIT_MS = 5000;

/** Settings that make to_jsonb() give the same text as the capture trigger (see triggers.ts). */
const SAME_OUTPUT_AS_TRIGGER = [
  `set local timezone = 'UTC'`, `set local datestyle = 'ISO, YMD'`, `set local intervalstyle = 'postgres'`,
  `set local extra_float_digits = 1`, `set local bytea_output = 'hex'`,
];

/**
 * The statement that copies one chunk: $1 the previous chunk's last key (text values) or null, $2 the
 * chunk size. A shaped table's chunk reads only rows that pass its predicate and writes the same
 * image as its trigger (row-image.ts); the predicate sits beside the key bound, so the walk by key
 * still ends.
 */
export function chunkSql(schema: string, t: RegisteredTable, keyTypes: string[]): string {
  const table = qualify(t.sourceSchema, t.sourceTable);
  const keys = t.keyColumns.map((k) => `t.${quoteIdent(k)}`);
  const after = `(${keys.join(', ')}) > (${keyTypes.map((ty, i) => `($1::jsonb ->> ${i})::${ty}`).join(', ')})`;
  const upTo = `(${keys.join(', ')}) <= (${keyTypes.map((ty, i) => `($3::jsonb ->> ${i})::${ty}`).join(', ')})`;
  const lastKey = `jsonb_build_array(${t.keyColumns.map((k) => `c.${quoteIdent(k)}::text`).join(', ')})`;
  const image = rowImageSql(schema, t, 'c');
  const at = sourceTimeSql(t.shape);
  const filter = t.shape?.where !== undefined ? ` and ${rowFilterSql(t.shape)}` : '';
  return `with chunk as (
  select t.* from ${table} t
   where ($1::jsonb is null or ${after}) and ($3::jsonb is null or ${upTo})${filter}
   order by ${keys.join(', ')}
   limit $2
   for share of t
), copied as (
  insert into ${qualify(schema, 'outbox')} (table_id, op, data${at.column}) select ${t.id}, 'B', ${image.expr}${at.value} from chunk c${image.lateral} returning 1
)
select (select count(*) from copied)::int as n,
       (select ${lastKey} from chunk c order by ${t.keyColumns.map((k) => `c.${quoteIdent(k)} desc`).join(', ')} limit 1) as last_key,
       pg_current_xact_id()::text as xid`;
}

export class Backfiller {
  readonly #pool: pg.Pool;
  readonly #opts: BackfillOptions;
  readonly #log: Logger;
  #abort = new AbortController();
  #loop: Promise<void> | null = null;

  constructor(pool: pg.Pool, opts: BackfillOptions) {
    this.#pool = pool;
    this.#opts = opts;
    this.#log = opts.logger.child({ component: 'backfill' });
  }

  /** Copies pending tables until none is left; with `forever`, keeps watching for new ones. */
  start(forever: boolean): Promise<void> {
    if (!this.#loop) {
      this.#abort = new AbortController();
      this.#loop = this.#run(forever).finally(() => { this.#loop = null; });
    }
    return this.#loop;
  }

  async stop(): Promise<void> {
    this.#abort.abort();
    await this.#loop?.catch(() => {});
  }

  async #run(forever: boolean): Promise<void> {
    const s = this.#opts.schema;
    let failures = 0;
    /** jobs whose target table is keyed otherwise, by table id: when to try again */
    const waiting = new Map<number, number>();
    while (!this.#abort.signal.aborted) {
      const now = Date.now();
      const next = await this.#pool.query(
        `select t.id, t.relid::int8 as relid, t.source_schema, t.source_table, t.key_columns, t.key_origin, t.target_schema, t.target_table, t.shape
           from ${qualify(s, 'backfills')} b join ${qualify(s, 'tables')} t on t.id = b.table_id
          where b.status <> 'done' and not (t.id = any($1::int[])) order by t.id limit 1`,
        [[...waiting].filter(([, at]) => at > now).map(([id]) => id)],
      );
      if (next.rows.length === 0 || !this.#opts.isLeader()) {
        if (!forever) return;
        // A job waiting for this instance to hold the stream (it is acquiring at start) is looked at soon.
        await sleep(next.rows.length === 0 ? this.#opts.pollMs * 5 : this.#opts.pollMs, this.#abort.signal);
        continue;
      }
      const r = next.rows[0];
      try {
        await this.#copy({
          id: Number(r.id), relid: Number(r.relid), sourceSchema: r.source_schema, sourceTable: r.source_table, keyColumns: r.key_columns,
          keyOrigin: r.key_origin, targetSchema: r.target_schema, targetTable: r.target_table, shape: r.shape ?? null,
        });
        failures = 0;
      } catch (err) {
        if (err instanceof TargetKeyError) {
          // A key column renamed in the source (the copy after it, column-watch.ts): the target needs
          // the operator, who is told once; the other tables' copies go on meanwhile.
          const id = Number(r.id);
          if (!waiting.has(id)) this.#log.error({ table: `${r.source_schema}.${r.source_table}` }, `initial load waits for its target table: ${err.message}`);
          waiting.set(id, Date.now() + KEY_WAIT_MS);
          continue;
        }
        // A dropped connection or a restart must not stop replication: the copy resumes from its
        // job row after a pause. Anything else (the table is gone, a bug) is reported and stops.
        if (classify(err) !== 'retryable') throw err;
        const delay = backoffDelay(failures++, 500, 30_000);
        const table = `${r.source_schema}.${r.source_table}`;
        this.#log.warn({ err, table, retryInMs: delay }, `initial load interrupted (${describe(err)}); resuming`);
        // As the drainer does: a target back from an outage is written to at once.
        const saved = await backOffAfter(err, delay, this.#opts.direct?.sink ?? {}, (ms) => sleep(ms, this.#abort.signal), () => this.#abort.signal.aborted);
        if (saved > 0) this.#log.info({ table, skippedMs: saved }, 'the target answers again; resuming the initial load now');
      }
    }
  }

  async #copy(t: RegisteredTable): Promise<void> {
    const s = this.#opts.schema;
    const name = `${t.sourceSchema}.${t.sourceTable}`;
    const columns = await describeColumns(this.#pool, t.relid);
    const keyTypes = t.keyColumns.map((k) => columns.find((c) => c.name === k)?.type ?? 'text');
    const sql = chunkSql(s, t, keyTypes);
    const estimate = await estimateRows(this.#pool, t);
    // A history keeps every change as a row, so its initial load keeps to the stream (one 'B' event per row).
    if (this.#opts.direct && !this.#opts.slot && !t.shape?.history) {
      await runDirectLoad({
        pool: this.#pool, schema: s, stream: this.#opts.stream, chunkRows: this.#opts.chunkRows, pollMs: this.#opts.pollMs, logger: this.#log,
        signal: this.#abort.signal, isLeader: this.#opts.isLeader, deps: this.#opts.direct, keyTypes,
        rowsEstimate: estimate, upperKeyOf: () => upperKeyOf(this.#pool, t),
        applied: (xid) => chunkApplied(this.#pool, s, this.#opts.stream, xid),
      }, t);
      return;
    }
    const job = await this.#pool.query<{ last_key: unknown; rows_copied: string; upper_key: unknown }>(
      // A direct load left half done (the setting changed since) starts over: its chunks went
      // around the outbox, and only its own end re-sends what changed meanwhile.
      `update ${qualify(s, 'backfills')} set status = 'running', rows_estimate = $2, started_at = coalesce(started_at, now()), updated_at = now(),
              last_key = case when snapshot is null then last_key end, upper_key = case when snapshot is null then upper_key end,
              rows_copied = case when snapshot is null then rows_copied else 0 end, chunks = case when snapshot is null then chunks else 0 end,
              snapshot = null, copy_done = false
        where table_id = $1 returning last_key, rows_copied::text, upper_key`,
      [t.id, estimate],
    );
    let lastKey: unknown = job.rows[0]?.last_key ?? null;
    let copied = Number(job.rows[0]?.rows_copied ?? 0);
    let upperKey: unknown = job.rows[0]?.upper_key ?? null;
    if (upperKey === null && lastKey === null) {
      // A fresh copy: fix its end at the largest key now, written with the trigger's text settings.
      upperKey = await upperKeyOf(this.#pool, t);
      if (upperKey === null) upperKey = []; // empty table: the first chunk finds nothing and ends the copy
      await this.#pool.query(`update ${qualify(s, 'backfills')} set upper_key = $2 where table_id = $1`, [t.id, JSON.stringify(upperKey)]);
    }
    const pending: string[] = [];
    const started = Date.now();
    const copiedAtStart = copied;
    let lastReport = 0;
    let chunkRows = this.#opts.chunkRows;
    let lockWaits = 0;
    this.#log.info({ table: name, estimate, resumeAfterRows: copied }, 'initial load started');
    for (;;) {
      if (this.#abort.signal.aborted || !this.#opts.isLeader()) return;
      // Keep at most `inflight` chunks unapplied in the outbox.
      while (pending.length >= this.#opts.inflight) {
        if (await this.#applied(pending[0])) pending.shift();
        else await sleep(this.#opts.pollMs, this.#abort.signal);
        if (this.#abort.signal.aborted) return;
      }
      const client = await this.#pool.connect();
      let res: { n: number; last_key: unknown; xid: string };
      try {
        await client.query('begin');
        // Locking the chunk's rows gives the transaction its xid before the insert draws ids; taken
        // explicitly so that no plan shape can reorder it (outbox-bounds.ts).
        await client.query(TAKE_XID);
        for (const stmt of SAME_OUTPUT_AS_TRIGGER) await client.query(stmt);
        // Never make the application wait long, and never let it be the deadlock victim: the chunk
        // gives up a row lock it cannot get quickly (before the deadlock detector would pick a
        // victim) and is tried again, smaller.
        await client.query(`set local lock_timeout = ${LOCK_TIMEOUT_MS}`);
        try {
          res = (await client.query(sql, [lastKey === null ? null : JSON.stringify(lastKey), chunkRows, upperKey === null ? null : JSON.stringify(upperKey)])).rows[0];
        } catch (err) {
          const code = (err as { code?: string }).code;
          if (code !== '55P03' && code !== '40P01') throw err;
          await client.query('rollback');
          chunkRows = Math.max(MIN_CHUNK_ROWS, chunkRows >> 1);
          lockWaits++;
          await sleep(backoffDelay(Math.min(lockWaits, 6), 20, 2000), this.#abort.signal);
          continue;
        }
        chunkRows = Math.min(this.#opts.chunkRows, chunkRows * 2);
        // Only an empty chunk ends the copy: FOR SHARE skips rows deleted while it waited for their
        // lock, so a chunk in the middle of the table may come back short.
        const done = res.n === 0;
        const moved = await client.query(
          `update ${qualify(s, 'backfills')}
              set last_key = coalesce($2::jsonb, last_key), rows_copied = rows_copied + $3, chunks = chunks + 1, last_xid = $6::xid8,
                  status = case when $4 then 'done' else status end, finished_at = case when $4 then now() end, updated_at = now()
            where table_id = $1 and status <> 'done' and last_key is not distinct from $5::jsonb`,
          [t.id, res.last_key === null ? null : JSON.stringify(res.last_key), res.n, done, lastKey === null ? null : JSON.stringify(lastKey), res.xid],
        );
        if (moved.rowCount !== 1) {
          // Another copier moved this job (or it was restarted): drop this chunk and start over from the job row.
          await client.query('rollback');
          this.#log.info({ table: name }, 'initial load moved elsewhere; re-reading its position');
          return;
        }
        await client.query('commit');
      } catch (err) {
        await client.query('rollback').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
      copied += res.n;
      if (res.last_key !== null) lastKey = res.last_key;
      // pgoutput mode: a point after the chunk's commit that the slot's confirmed position must pass.
      pending.push(this.#opts.slot ? await emitWaitMark(this.#pool) : res.xid);
      const secs = Math.max((Date.now() - started) / 1000, 0.001);
      if (res.n === 0) {
        this.#log.info({ table: name, rows: copied, seconds: Math.round(secs * 10) / 10 }, 'initial load copied; the drainer applies the last chunks');
        return;
      }
      if (Date.now() - lastReport > 10_000) {
        lastReport = Date.now();
        const rate = (copied - copiedAtStart) / secs;
        this.#log.info({ table: name, rows: copied, estimate, rowsPerSecond: Math.round(rate), etaSeconds: etaSeconds(copied, estimate, rate) }, 'initial load progress');
      }
    }
  }

  /** `chunk`: the chunk's xid, or in pgoutput mode the LSN of the mark emitted after its commit */
  async #applied(chunk: string): Promise<boolean> {
    if (this.#opts.slot) return slotPassed(this.#pool, this.#opts.slot, chunk);
    const xid = chunk;
    return chunkApplied(this.#pool, this.#opts.schema, this.#opts.stream, xid);
  }
}

/** The table's largest key as text values (the chunk's last-key form), or null for an empty table. */
async function upperKeyOf(db: pg.Pool, t: RegisteredTable): Promise<unknown> {
  const client = await db.connect();
  try {
    await client.query('begin');
    for (const stmt of SAME_OUTPUT_AS_TRIGGER) await client.query(stmt);
    const keys = t.keyColumns.map((k) => `t.${quoteIdent(k)}`);
    const res = await client.query<{ k: unknown }>(
      `select jsonb_build_array(${keys.map((k) => `${k}::text`).join(', ')}) as k from ${qualify(t.sourceSchema, t.sourceTable)} t order by ${keys.map((k) => `${k} desc`).join(', ')} limit 1`,
    );
    await client.query('commit');
    return res.rows[0]?.k ?? null;
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

/** A chunk is applied once its transaction lies in a completed window of the stream. */
export async function chunkApplied(db: pg.Pool, schema: string, stream: string, xid: string): Promise<boolean> {
  const res = await db.query<{ ok: boolean }>(
    `select coalesce(pg_visible_in_snapshot($2::xid8, prev_snapshot), false) as ok from ${qualify(schema, 'checkpoint')} where stream = $1`,
    [stream, xid],
  );
  return res.rows[0]?.ok ?? false;
}

/** Progress of the named jobs as the database has it; `applied` once the last chunk reached the target. */
export async function backfillState(db: pg.Pool, schema: string, stream: string, tableIds: number[]): Promise<(BackfillProgress & { applied: boolean })[]> {
  const res = await db.query(
    `select t.source_schema || '.' || t.source_table as name, b.status, b.rows_copied::text as copied, b.rows_estimate::text as estimate,
            extract(epoch from (coalesce(b.finished_at, now()) - b.started_at)) as secs,
            b.status = 'done' and (b.last_xid is null or coalesce(pg_visible_in_snapshot(b.last_xid, c.prev_snapshot), false)) as applied
       from ${qualify(schema, 'backfills')} b join ${qualify(schema, 'tables')} t on t.id = b.table_id
       left join ${qualify(schema, 'checkpoint')} c on c.stream = $1
      where b.table_id = any($2::int[]) order by t.id`,
    [stream, tableIds],
  );
  return res.rows.map((r) => {
    const copied = Number(r.copied);
    const secs = r.secs === null ? 0 : Number(r.secs);
    const estimate = r.estimate === null ? null : Number(r.estimate);
    const rate = secs > 0 ? copied / secs : 0;
    const done = r.status === 'done';
    return {
      table: r.name, status: r.status, rowsCopied: copied, rowsEstimate: estimate, rowsPerSecond: rate,
      etaSeconds: done ? null : etaSeconds(copied, estimate, rate), done, applied: r.applied,
    };
  });
}

