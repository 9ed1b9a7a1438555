// What the capture-cost scenarios share (bench/capture.ts, bench/capture-partitioned.ts): the
// 10-column mixed-type bulk table and its bulk statements, capturing tables through pg2crate's own
// code path (the migrate and tables add commands), and one measured run (a bulk statement, or
// pgbench) with the server's CPU from /proc and the WAL it wrote.
import { spawnSync } from 'node:child_process';
import pg from 'pg';
import type { TableSpec } from '../src/core/config.js';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { addTables } from '../src/commands/tables.js';
import { runPgbench } from './pgbench.js';
import { sleep } from './report.js';
import { serverCpuSeconds } from './server-cpu.js';

const BULK_COLUMNS = `id bigint primary key, k integer not null, v text not null, amount numeric(12,2), created timestamptz not null,
  flag boolean not null, ratio double precision, day date, tags text[], doc jsonb`;

/** The bulk table, plain (autovacuum off, so that no vacuum runs inside a measurement). */
export const BULK_TABLE = `create table bulk (
  ${BULK_COLUMNS}
) with (autovacuum_enabled = false)`;

/**
 * The same table partitioned by range on id into `partitions` partitions bulk_p1 … bulk_pN, of
 * `rows / partitions` ids each (from 1), the first open below and the last open above; autovacuum
 * off on each (a partitioned table takes no storage parameters).
 */
export function partitionedBulkTableSql(rows: number, partitions: number): string[] {
  const bound = (i: number) => (i === 0 ? 'minvalue' : i === partitions ? 'maxvalue' : String(Math.floor((rows * i) / partitions) + 1));
  return [
    `create table bulk (\n  ${BULK_COLUMNS}\n) partition by range (id)`,
    ...Array.from({ length: partitions }, (_, i) =>
      `create table bulk_p${i + 1} partition of bulk for values from (${bound(i)}) to (${bound(i + 1)}) with (autovacuum_enabled = false)`),
  ];
}

/** The values of the bulk table's row number `g` (an SQL expression: a column, or a pgbench variable). */
export const bulkRowSql = (g: string) => `${g}, ${g} % 1000, md5(${g}::text), (${g} % 100000) / 100.0, timestamptz '2024-01-01' + ${g} * interval '1 second',
         ${g} % 2 = 0, ${g} / 7.0, date '2024-01-01' + (${g} % 365)::int, array['a' || (${g} % 10), 'b'], jsonb_build_object('g', ${g}, 's', md5(${g}::text))`;

export const bulkInsert = (rows: number) => `insert into bulk
  select ${bulkRowSql('g')}
  from generate_series(1, ${rows}) g`;
export const BULK_UPDATE = 'update bulk set k = k + 1, amount = amount + 1';
export const BULK_DELETE = 'delete from bulk';

/**
 * The outbox a user could write by hand in ten lines (bench/capture.ts names it `handmade`; the
 * ladder of bench/capture-variants.ts starts from it): one row-level plpgsql trigger writing tg_op and
 * to_jsonb of the row into a table with a bigserial primary key and the writer's xid.
 */
export const HANDMADE_SQL = [
  `create table handmade_outbox (id bigserial primary key, xid xid8 not null default pg_current_xact_id(), tbl text not null, op text not null, data jsonb)`,
  `create function handmade_capture() returns trigger language plpgsql as $$
begin
  insert into handmade_outbox (tbl, op, data)
    values (tg_table_name, tg_op, case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end);
  return null;
end $$`,
];
export const handmadeTrigger = (table: string) => `create trigger handmade_capture after insert or update or delete on ${table} for each row execute function handmade_capture()`;

/** Sum of pg_total_relation_size over a table and everything that inherits from it (partitions, PgQ's rotating tables). */
export const treeBytesSql = (regclass: string) => `with recursive tree(oid) as (
    select '${regclass}'::regclass::oid union all select i.inhrelid from pg_inherits i join tree t on i.inhparent = t.oid
  ) select (select count(*) from ${regclass}) as n, coalesce(sum(pg_total_relation_size(oid)), 0)::bigint as bytes from tree`;

/** Migrates pg2crate into the database at `url` and captures `tables` as `tables add` does (nothing drains). */
export async function captureWithPg2crate(url: string, targetUrl: string, tables: TableSpec[]): Promise<void> {
  const logger = createLogger('warn', { write: (s: string) => { process.stderr.write(s); } });
  const runner = new Runner(loadConfig({ DATABASE_URL: url, TARGET_DATABASE_URL: targetUrl }), logger);
  try {
    await migrate(runner);
    await addTables(runner, tables);
  } finally {
    await runner.close();
  }
}

/** pg2crate's event tables in a database it was migrated into: the outbox and its partitions. */
export function pg2crateOutbox(db: pg.Client): Pick<Measured, 'events' | 'empty'> {
  return {
    events: async () => { const r = (await db.query<{ n: string; bytes: string }>(treeBytesSql('pg2crate.outbox'))).rows[0]; return { n: Number(r.n), bytes: Number(r.bytes) }; },
    empty: async () => { await db.query('truncate pg2crate.outbox'); },
  };
}

/** The server's WAL insert position in bytes. */
export async function walNow(admin: pg.Client): Promise<bigint> {
  return BigInt((await admin.query<{ b: string }>(`select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::text as b`)).rows[0].b.split('.')[0]);
}

/** A database to measure in, and its capture's event tables. */
export interface Measured {
  db: pg.Client;
  /** events written so far and the bytes their tables take */
  events(): Promise<{ n: number; bytes: number }>;
  empty(): Promise<void>;
}

export interface BulkStep { seconds: number; cpuSeconds: number; walMB: number; events: number; bytesPerEvent: number }

/** Runs one bulk statement after emptying the event tables and a CHECKPOINT; `pm` is the postmaster's pid. */
export async function bulkStep(admin: pg.Client, pm: number, v: Measured, sql: string): Promise<BulkStep> {
  await v.empty();
  await admin.query('checkpoint');
  await sleep(300);
  const cpu0 = serverCpuSeconds(pm);
  const wal0 = await walNow(admin);
  const t0 = performance.now();
  await v.db.query(sql);
  const seconds = (performance.now() - t0) / 1000;
  await sleep(100);
  const cpuSeconds = serverCpuSeconds(pm) - cpu0;
  const walMB = Number((await walNow(admin)) - wal0) / 1e6;
  const ev = await v.events();
  return { seconds, cpuSeconds, walMB, events: ev.n, bytesPerEvent: ev.n ? ev.bytes / ev.n : 0 };
}

export interface BulkRun { insert: BulkStep; update: BulkStep; delete: BulkStep }

/** One round of the bulk part on an emptied table: INSERT … SELECT of `rows` rows, UPDATE of all, DELETE of all, a VACUUM ANALYZE between. */
export async function bulkRound(admin: pg.Client, pm: number, v: Measured, rows: number): Promise<BulkRun> {
  await v.db.query('truncate bulk');
  const insert = await bulkStep(admin, pm, v, bulkInsert(rows));
  await v.db.query('vacuum analyze bulk');
  const update = await bulkStep(admin, pm, v, BULK_UPDATE);
  await v.db.query('vacuum analyze bulk');
  const del = await bulkStep(admin, pm, v, BULK_DELETE);
  return { insert, update, delete: del };
}

export interface PgbenchRun { out: string; cpuSeconds: number; walBytes: number }

/** Runs pgbench with `args` after `prepare`, a CHECKPOINT and a pause; the server's CPU and WAL over the run. */
export async function pgbenchStep(admin: pg.Client, pm: number, prepare: () => Promise<void>, args: string[]): Promise<PgbenchRun> {
  await prepare();
  await admin.query('checkpoint');
  await sleep(500);
  const cpu0 = serverCpuSeconds(pm);
  const wal0 = await walNow(admin);
  const out = await runPgbench(args);
  await sleep(300); // let the postmaster reap the backends, so that their CPU is in its cutime
  const cpuSeconds = serverCpuSeconds(pm) - cpu0;
  const walBytes = Number((await walNow(admin)) - wal0);
  return { out, cpuSeconds, walBytes };
}

/** The PgQ queue the capture benches write into (nothing consumes it). */
export const PGQ_QUEUE = 'bench';

/**
 * Makes the pgq extension available on this server, installing the Debian package when it is
 * missing. Returns null when it is available, else the reason it is not.
 */
export async function ensurePgq(admin: pg.Client, say: (text: string) => void): Promise<string | null> {
  const available = async () => (await admin.query(`select 1 from pg_available_extensions where name = 'pgq'`)).rowCount === 1;
  if (await available()) return null;
  const major = (await admin.query<{ v: string }>(`select current_setting('server_version_num')::int / 10000 as v`)).rows[0].v;
  const pkg = `postgresql-${major}-pgq3`;
  const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).stdout.trim() !== '';
  if (!hasApt) return `the pgq extension is not installed and apt-get is not available to install ${pkg}`;
  if (process.getuid?.() !== 0) return `the pgq extension is not installed and installing ${pkg} with apt-get needs root`;
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', pkg], { encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  say(`PgQ: the pgq extension is missing; running: apt-get install -y --no-install-recommends ${pkg}`);
  let res = install();
  if (res.status !== 0) {
    say('PgQ: that failed; running: apt-get update, then the install again');
    spawnSync('apt-get', ['update'], { encoding: 'utf8' });
    res = install();
  }
  if (res.status !== 0) return `apt-get install ${pkg} failed: ${(res.stderr || res.stdout).trim().split('\n').slice(-3).join(' / ')}`;
  say(`PgQ: installed ${pkg}`);
  return (await available()) ? null : `${pkg} is installed but this server (Postgres ${major}) does not list the pgq extension`;
}

/** Creates the pgq extension and the queue; returns the queue's event table (a parent, with the rotating tables PgQ writes into as children). */
export async function createPgqQueue(db: pg.Client): Promise<string> {
  await db.query('create extension if not exists pgq');
  await db.query('select pgq.create_queue($1)', [PGQ_QUEUE]);
  return (await db.query<{ pfx: string }>('select queue_data_pfx as pfx from pgq.queue where queue_name = $1', [PGQ_QUEUE])).rows[0].pfx;
}

/** PgQ's own JSON trigger on a table, one event per row; `pkey` names the key of a table without a primary key. */
export const pgqTrigger = (table: string, pkey?: string) =>
  `create trigger pgq_capture after insert or update or delete on ${table} for each row execute function pgq.jsontriga(${[`'${PGQ_QUEUE}'`, ...(pkey ? [`'pkey=${pkey}'`] : [])].join(', ')})`;
