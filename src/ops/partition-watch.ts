// The partition watch: gives each partition created or attached after its table was captured the
// capture triggers the others have, and sends what was written into it before that. Each pass first
// runs the key watch (key-watch.ts): tables whose key column was renamed are captured again.
//
// Postgres clones the guard row trigger onto a new partition in the statement that creates or
// attaches it (capture-install.ts), so from its first row on every key written into it is recorded
// in partition_writes, through whatever name. A leaf partition whose guard clone is still enabled,
// or a sub-partitioned one without the truncate trigger, has not been reached yet; for each, in one
// transaction:
//   1. lock it (SHARE ROW EXCLUSIVE, what CREATE TRIGGER takes anyway): every transaction that wrote
//      into it has ended, so every key it recorded is visible; no new writer starts until commit;
//   2. create its statement triggers and disable a leaf's guard clone: from the commit on, writes
//      through its name are captured like any other;
//   3. take the recorded keys, and for each send the table's current row through the outbox (or a
//      delete when there is none), read FOR SHARE as repair does (verify/repair.ts), so it lands
//      after every earlier change of that key; a delete locks no row, and the lock of step 1 does
//      not hold back a writer of the key through another partition (a configured key without the
//      partition key), so after the commit the deleted keys are sent again once the transactions
//      open by then have ended (resend.ts recheckDeletes);
//   4. a partition holding rows whose keys were never recorded came with them (ATTACH): the table is
//      copied again (an initial load), since nothing ever sent those rows.
// A table that carries the capture's triggers but left the tree (DETACH) has them dropped; its rows
// stay in the target (README: partitioned tables). Keys recorded for a partition that left before it
// was reached are sent as in step 3. The trade-off: a write through a new partition's own name
// reaches the target one watch interval later than others, and a TRUNCATE of it in that interval is
// seen through its recorded keys only.
import type pg from 'pg';
import { qualify, quoteIdent } from '../core/identifiers.js';
import type { Logger } from '../core/logger.js';
import { OUTPUT_SETTINGS, withOutputSettings } from '../core/pg-session.js';
import { recheckDeletes, resendSql } from '../resend.js';
import type { TableInfo } from '../core/change.js';
import type { KeyJson } from '../core/key-set.js';
import { scheduleBackfill } from '../capture/backfill-request.js';
import { capturePartition, type Partition } from '../capture/capture-install.js';
import { readCaptureState } from '../capture/capture-state.js';
import { triggerName } from '../capture/names.js';
import { TAKE_XID } from '../capture/outbox-bounds.js';
import { captureTargetOf, listTables, RegistryCatalog, type RegisteredTable } from '../capture/registry.js';
import { watchKeys } from './key-watch.js';
import { IDENTITY_INDEX_SHARE } from '../source/pgoutput/preflight.js';

const LOCK_TIMEOUT_MS = 2000;
const KEYS_PER_STATEMENT = 1000;

export interface PartitionWatchOptions {
  schema: string;
  stream: string;
  logger: Logger;
}

export interface PartitionWatchResult {
  /** partitions given their triggers */
  captured: number;
  /** keys whose current state was sent */
  keys: number;
  /** tables copied again because a partition came with rows */
  reloaded: number;
  /** relations that left a tree and had the capture's triggers dropped */
  released: number;
  /** tables captured again because a key column was renamed (key-watch.ts) */
  rekeyed: number;
}

interface Candidate extends Partition {
  tableId: number;
}

/** One pass over every captured partitioned table. Safe to run from several instances at once. */
export async function watchPartitions(pool: pg.Pool, opts: PartitionWatchOptions): Promise<PartitionWatchResult> {
  // First: a table whose capture names key columns that are gone fails the application's updates.
  const out: PartitionWatchResult = { captured: 0, keys: 0, reloaded: 0, released: 0, rekeyed: await watchKeys(pool, opts) };
  const s = opts.schema;
  const partitioned = await pool.query<{ n: number }>(
    `select count(*)::int as n from ${qualify(s, 'tables')} t join pg_class c on c.oid = t.relid where c.relkind = 'p'`,
  );
  const pending = await pool.query<{ n: number }>(`select count(*)::int as n from ${qualify(s, 'partition_writes')}`);
  if (partitioned.rows[0].n === 0 && pending.rows[0].n === 0) return out;
  const found = await pool.query<{ table_id: number; relid: string; schema: string; name: string; leaf: boolean }>(
    `select t.id as table_id, p.relid::oid::int8::text as relid, n.nspname as schema, c.relname as name, p.isleaf as leaf
       from ${qualify(s, 'tables')} t cross join lateral pg_partition_tree(t.relid) p
       join pg_class c on c.oid = p.relid join pg_namespace n on n.oid = c.relnamespace
      where p.relid <> t.relid::regclass
        and case when p.isleaf
                 then exists (select 1 from pg_trigger g where g.tgrelid = p.relid and g.tgname = $1 and g.tgenabled <> 'D')
                 else not exists (select 1 from pg_trigger g where g.tgrelid = p.relid and g.tgname = $2) end
      order by t.id, p.level`,
    [triggerName(s, 'g'), triggerName(s, 'b')],
  );
  await giveIdentity(pool, opts);
  for (const r of found.rows) {
    const done = await reachPartition(pool, opts, { tableId: r.table_id, relid: Number(r.relid), schema: r.schema, table: r.name, leaf: r.leaf });
    if (!done) continue;
    out.captured++;
    out.keys += done.keys;
    if (done.reloaded) out.reloaded++;
  }
  out.released = await releaseDetached(pool, opts);
  out.keys += await sendOrphanKeys(pool, opts);
  return out;
}

/**
 * PostgreSQL 14's walsender keeps the routing it cached for a partition after a DETACH, and goes
 * on sending the detached table's writes as the partitioned table's (15 drops it on the detach).
 * A change to the publication's own row drops every cached routing: set an option to the value it
 * has. Done before the triggers are dropped, so that a table without them is no longer sent.
 * Writes to the detached table before this pass still reach the target (README: PostgreSQL versions).
 */
async function refreshPublicationBefore15(pool: pg.Pool, opts: PartitionWatchOptions): Promise<void> {
  const { mode, publicationName } = await readCaptureState(pool, opts.schema, opts.stream);
  if (mode !== 'pgoutput' || !publicationName) return;
  const version = await pool.query<{ v: string }>(`select current_setting('server_version_num') as v`);
  if (Number(version.rows[0].v) >= 150000) return;
  await pool.query(`alter publication ${quoteIdent(publicationName)} set (publish_via_partition_root = true)`);
  opts.logger.info({ publication: publicationName }, 'touched the publication: PostgreSQL 14 sends a detached partition\'s writes until then');
}

/** Partitions whose missing identity was logged already (once per process each). */
const unidentified = new Set<string>();

/**
 * While the captured tables are published (any mode but trigger), a new leaf partition of a table
 * with REPLICA IDENTITY FULL gets FULL too, and one of a table identified by a unique index (USING
 * INDEX) gets USING INDEX on its share of that index: Postgres checks the identity of the partition
 * a row is in, and a partition created without it fails the application's UPDATEs and DELETEs once
 * its table is published (the switch refuses existing ones: preflight.ts checkPartitionIdentities).
 * A partitioned index reaches every partition, but a partition's identity stays DEFAULT. A table
 * identified by its primary key needs nothing: a partitioned primary key reaches every partition.
 * Each in its own short transaction; a busy partition is tried again on the next pass, and one
 * pg2crate may not alter (not its owner) is logged once with the statement to run.
 */
async function giveIdentity(pool: pg.Pool, opts: PartitionWatchOptions): Promise<void> {
  const { mode } = await readCaptureState(pool, opts.schema, opts.stream);
  if (mode === 'trigger') return;
  // `index`: the leaf's share of the table's replica identity index
  const res = await pool.query<{ relid: string; schema: string; name: string; root: string; index: string | null }>(
    `select p.relid::oid::int8::text as relid, n.nspname as schema, c.relname as name, t.source_schema || '.' || t.source_table as root, x.relname as index
       from ${qualify(opts.schema, 'tables')} t join pg_class r on r.oid = t.relid and r.relkind = 'p' and r.relreplident in ('f', 'i')
            cross join lateral pg_partition_tree(t.relid) p
            join pg_class c on c.oid = p.relid join pg_namespace n on n.oid = c.relnamespace
            left join lateral ${IDENTITY_INDEX_SHARE} x(relname) on true
      where p.isleaf and c.relreplident <> r.relreplident and (r.relreplident = 'f' or x.relname is not null)`,
  );
  for (const r of res.rows) {
    const identity = r.index === null ? 'FULL' : `USING INDEX ${quoteIdent(r.index)}`;
    const sql = `alter table ${qualify(r.schema, r.name)} replica identity ${identity}`;
    const client = await pool.connect();
    try {
      await client.query(`begin; set local lock_timeout = ${LOCK_TIMEOUT_MS}`);
      await client.query(sql);
      await client.query('commit');
      opts.logger.info({ table: r.root, partition: `${r.schema}.${r.name}` }, `gave the new partition REPLICA IDENTITY ${identity}, as its table has, so that its updates and deletes can be published`);
    } catch (err) {
      await client.query('rollback').catch(() => {});
      const code = (err as { code?: string }).code;
      if (code === '55P03') continue;
      if (unidentified.has(r.relid)) continue;
      unidentified.add(r.relid);
      opts.logger.error(
        { table: r.root, partition: `${r.schema}.${r.name}`, err: (err as Error).message },
        `the partition has no replica identity, so Postgres refuses the application's updates and deletes in it while the table is published: run ALTER TABLE ${qualify(r.schema, r.name)} REPLICA IDENTITY ${identity} as its owner`,
      );
    } finally {
      client.release();
    }
  }
}

/** Steps 1–4 for one partition; null when another run reached it first or its lock was busy. */
async function reachPartition(pool: pg.Pool, opts: PartitionWatchOptions, p: Candidate): Promise<{ keys: number; reloaded: boolean } | null> {
  const s = opts.schema;
  const client = await pool.connect();
  let broken = false;
  let sent: { keys: number; reloaded: boolean; deleted: KeyJson[]; info: TableInfo | null };
  try {
    await client.query(`begin; set local lock_timeout = ${LOCK_TIMEOUT_MS}; ${OUTPUT_SETTINGS}`);
    await client.query(TAKE_XID);
    try {
      await client.query(`lock table ${qualify(p.schema, p.table)} in share row exclusive mode`);
    } catch (err) {
      if ((err as { code?: string }).code !== '55P03') throw err;
      await client.query('rollback');
      opts.logger.debug({ partition: `${p.schema}.${p.table}` }, 'partition busy; the watch tries again next time');
      return null;
    }
    const still = await client.query(
      p.leaf ? `select 1 from pg_trigger where tgrelid = $1 and tgname = $2 and tgenabled <> 'D'` : `select 1 where not exists (select 1 from pg_trigger where tgrelid = $1 and tgname = $2)`,
      [p.relid, triggerName(s, p.leaf ? 'g' : 'b')],
    );
    const table = (await listTables(client, s)).find((t) => t.id === p.tableId);
    if (still.rows.length === 0 || !table) {
      await client.query('rollback');
      return null;
    }
    const { mode } = await readCaptureState(client, s, opts.stream);
    await capturePartition(client, s, { ...captureTargetOf(table), partitionRoot: table.relid }, p, mode !== 'pgoutput');
    const reloaded = p.leaf && (await cameWithRows(client, s, table, p));
    const { keys, deleted, info } = await sendRecordedKeys(client, s, table, `relid = ${p.relid}`);
    if (reloaded) await scheduleBackfill(client, s, table.id, true);
    await client.query('commit');
    opts.logger.info(
      { table: `${table.sourceSchema}.${table.sourceTable}`, partition: `${p.schema}.${p.table}`, keysSent: keys, reload: reloaded },
      reloaded ? 'new partition came with rows: captured it and copying the table again' : 'new partition captured',
    );
    sent = { keys, reloaded, deleted, info };
  } catch (err) {
    broken = await client.query('rollback').then(() => false, () => true);
    throw err;
  } finally {
    client.release(broken);
  }
  // A delete guards no row: a writer of the key that drew its outbox id before it and had not
  // committed would be applied first in the same window (resend.ts). Sent again once it has ended.
  if (sent.info) await recheckDeletes(pool, s, sent.info, sent.deleted, opts.logger);
  return { keys: sent.keys, reloaded: sent.reloaded };
}

/** Whether the partition holds a row whose key the guard never recorded (it was attached with rows). */
async function cameWithRows(db: pg.ClientBase, schema: string, t: RegisteredTable, p: Partition): Promise<boolean> {
  const root = qualify(t.sourceSchema, t.sourceTable);
  const same = t.keyColumns.map((c) => `k.${quoteIdent(c)} is not distinct from r.${quoteIdent(c)}`).join(' and ');
  const res = await db.query(
    `select 1 from only ${qualify(p.schema, p.table)} r
      where not exists (select 1 from ${qualify(schema, 'partition_writes')} w, jsonb_populate_record(null::${root}, w.key) k
                         where w.table_id = $1 and w.relid = $2 and ${same})
      limit 1`,
    [t.id, p.relid],
  );
  return res.rows.length > 0;
}

/**
 * Removes the recorded keys that match `where` and sends each key's current state. Returns how many
 * keys, and the key objects of the deletes written, for recheckDeletes once the transaction commits.
 */
async function sendRecordedKeys(db: pg.ClientBase, schema: string, t: RegisteredTable, where: string): Promise<{ keys: number; deleted: KeyJson[]; info: TableInfo | null }> {
  const res = await db.query<{ k: string }>(
    `with gone as (delete from ${qualify(schema, 'partition_writes')} where table_id = $1 and ${where} returning key)
     select distinct key::text as k from gone`,
    [t.id],
  );
  if (res.rows.length === 0) return { keys: 0, deleted: [], info: null };
  const deleted: KeyJson[] = [];
  const info = await new RegistryCatalog(db, schema).describe(t.id);
  const sql = resendSql(schema, info);
  for (let i = 0; i < res.rows.length; i += KEYS_PER_STATEMENT) {
    const keys = `[${res.rows.slice(i, i + KEYS_PER_STATEMENT).map((r) => r.k).join(',')}]`;
    await db.query(sql.upsert, [keys]);
    deleted.push(...(await db.query<{ k: string }>(`${sql.delete} returning data::text as k`, [keys])).rows.map((r) => ({ json: r.k })));
  }
  await db.query(sql.notify);
  return { keys: res.rows.length, deleted, info };
}

/** Drops the capture's triggers from relations that left their table's partition tree. */
async function releaseDetached(pool: pg.Pool, opts: PartitionWatchOptions): Promise<number> {
  const s = opts.schema;
  const res = await pool.query<{ rel: string; tgname: string }>(
    `select quote_ident(n.nspname) || '.' || quote_ident(c.relname) as rel, g.tgname
       from ${qualify(s, 'tables')} t
       join pg_proc f on f.pronamespace = $1::regnamespace and f.proname = 'capture_' || t.id
       join pg_trigger g on g.tgfoid = f.oid and g.tgparentid = 0
       join pg_class c on c.oid = g.tgrelid join pg_namespace n on n.oid = c.relnamespace
      where g.tgrelid <> t.relid and not exists (select 1 from pg_partition_tree(t.relid) p where p.relid = g.tgrelid::regclass)`,
    [quoteIdent(s)],
  );
  if (res.rows.length > 0) await refreshPublicationBefore15(pool, opts);
  for (const r of res.rows) {
    await pool.query(`drop trigger if exists ${quoteIdent(r.tgname)} on ${r.rel}`);
    opts.logger.info({ relation: r.rel, trigger: r.tgname }, 'dropped a capture trigger from a table that left its partitioned table');
  }
  return new Set(res.rows.map((r) => r.rel)).size;
}

/** Keys recorded for relations that are no partition of their table any more (detached or dropped before the watch reached them). */
async function sendOrphanKeys(pool: pg.Pool, opts: PartitionWatchOptions): Promise<number> {
  const s = opts.schema;
  const orphans = await pool.query<{ table_id: number }>(
    `select distinct w.table_id from ${qualify(s, 'partition_writes')} w join ${qualify(s, 'tables')} t on t.id = w.table_id
      where not exists (select 1 from pg_partition_tree(t.relid) p where p.relid = w.relid::regclass)`,
  );
  if (orphans.rows.length > 0) await refreshPublicationBefore15(pool, opts);
  let n = 0;
  for (const o of orphans.rows) {
    const table = (await listTables(pool, s)).find((t) => t.id === o.table_id);
    if (!table) continue;
    // the xid before the first outbox id (outbox-bounds.ts)
    const sent = await withOutputSettings(pool, async (client) => {
      await client.query(TAKE_XID);
      return sendRecordedKeys(client, s, table, `relid not in (select p.relid::oid from pg_partition_tree(${Number(table.relid)}::oid) p)`);
    }, true);
    n += sent.keys;
    // as in reachPartition: the deleted keys sent again once the writers open now have ended
    if (sent.info) await recheckDeletes(pool, s, sent.info, sent.deleted, opts.logger);
  }
  // keys of tables no longer registered have nobody to send them to
  await pool.query(`delete from ${qualify(s, 'partition_writes')} w where not exists (select 1 from ${qualify(s, 'tables')} t where t.id = w.table_id)`);
  return n;
}

/** Runs the watch every `intervalMs` until stopped; a failed pass is logged and tried again next time. */
export class PartitionWatcher {
  readonly #pool: pg.Pool;
  readonly #opts: PartitionWatchOptions & { intervalMs: number };
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;
  #stopped = true;

  constructor(pool: pg.Pool, opts: PartitionWatchOptions & { intervalMs: number }) {
    this.#pool = pool;
    this.#opts = opts;
  }

  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#running = watchPartitions(this.#pool, this.#opts).then(
        () => {},
        (err: unknown) => this.#opts.logger.warn({ err }, 'partition watch failed; trying again'),
      ).finally(() => {
        this.#running = null;
        this.#schedule(this.#opts.intervalMs);
      });
    }, ms);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
