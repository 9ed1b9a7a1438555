// Drain rate: how fast a backlog of --events events reaches a Postgres target (or, with
// --target=cratedb and CRATEDB_URL, CrateDB: then each run also replays, right after the drain, the
// operations the sink applied as raw bulk_args requests into copies of the target tables, the honest
// reference of what CrateDB accepts for them: bench/crate-replay.ts).
//
// Two workloads (--workload):
//   - inserts (default): one 5-column table captured while empty, the backlog all inserts
//     (transactions of --txn-rows rows).
//   - mixed (issue 11): three tables of 10 columns of mixed types (bigint, int, numeric, float8,
//     text, boolean, timestamptz, date, jsonb), each holding rows before capture (copied by the
//     initial load). The backlog: transactions of 1,000 events on one table in turn, each 200
//     inserts, 700 updates (distinct rows within a statement, every row of the updatable range
//     changed about twice in the whole backlog) and 100 deletes: 20% / 70% / 10%. At the end the
//     target's tables are compared with the source's (count and an md5 over every row's text).
// Per run, on one throwaway cluster: fresh source and target databases, the tables captured, one
// short replicator run in this process so that the initial load is done and the target tables
// exist. Then the replicator to measure, `pg2crate start` in a child process as a user runs it
// (bench/cli-child.ts; --run=dist,tsx: compiled, and from source under tsx as `npm start`), starts
// as a standby while this process holds the stream; the backlog is written meanwhile, then ANALYZE
// of the outbox (what autovacuum would have done by then), CHECKPOINT. The stream is let go and
// the clock runs until caughtUp() (every event lies in a completed window), checked cheaply via the
// checkpoint's counter first. Page sizes (--pages, default 1000,5000,20000), replicators
// (--run, --checkouts=dir,dir?SETTING=value&… for a before → after) are interleaved round by round.
// --warmup=N (or WARMUP=N per replicator in --checkouts): the replicator first drains N events of
// tables of its own, and is stopped (SIGSTOP) while the measured backlog is written: the figures
// of one that has run a while.
// --command=catch-up runs `pg2crate catch-up` (the cron mode) instead: the backlog is written first,
// and the clock runs from the child's start to its exit.
// Reported: events/s, the replicator's CPU (from /proc, from the take-over to caught up) and the
// server's per 1k events (and of that, the replicator's drainer backend in the source and sink
// backends in the target), and the replicator's peak RSS (VmHWM, its whole life). Into CrateDB
// also: its JVM's CPU per 1k events (drain and replay) and drain / raw, the replay's seconds over
// the drain's, and the share of the drain's time with no request to CrateDB in flight and the
// requests in flight on average, from the child's own record of its requests (a preload:
// bench/request-meter.cjs). --node-flags='--cpu-prof --cpu-prof-dir=dir' profiles the replicators.
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { streamLockText } from '../src/capture/names.js';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { startCluster, type Cluster } from '../test/helpers/cluster.js';
import { caughtUp } from '../test/helpers/replication.js';
import { buildCheckout, CLI_MODES, peakRssMiB, removeBuild, rssMiB, spawnCli, stopChild, type CliCheckout, type CliMode } from './cli-child.js';
import { crateSql } from './crate-raw.js';
import { crateCpuSeconds, crateJvmPids } from './crate-meter.js';
import { checkCopies, coalescedPages, copyTargetTables, dropCopies, replaySeconds, type ReplayTable } from './crate-replay.js';
import { fmt, fmtSpread, note, printTable, sleep, spread, type BenchArgs } from './report.js';
import { clusterLogTail, postmasterPid, processCpuSeconds, serverCpuSeconds, threadCpuSeconds } from './server-cpu.js';

export const description = 'drain rate: a backlog of 1M events into a Postgres target (or CrateDB with --target=cratedb), by page size';

const TABLE = `create table public.items (
  id bigint primary key, k integer not null, v text not null, amount numeric(12,2), created timestamptz not null
)`;

type Workload = 'inserts' | 'mixed';
/** --warmup: tables of the same shape as the measured ones, which only the warm-up writes into */
const WARM_MIXED_TABLES = ['w1', 'w2', 'w3'];
const WARM_UPDATABLE = 10_000;
export const MIXED_TABLES = ['m1', 'm2', 'm3'];
/** per table: rows 1..UPDATABLE are updated, the next DELETABLE rows deleted in order */
export const UPDATABLE = 100_000;
export const mixedTable = (t: string) => `create table public.${t} (
  id bigint primary key, k integer not null, qty bigint, price numeric(12,2), ratio double precision,
  name text not null, flag boolean, created timestamptz not null, day date, attrs jsonb
)`;
export const mixedValues = (g: string, salt: string) =>
  `${g}, (${g} % 1000)::int, ${g} * 3 + ${salt}, ((${g} * 7 + ${salt}) % 100000) / 100.0, (${g} + ${salt}) / 7.0, md5((${g} + ${salt})::text), (${g} + ${salt}) % 2 = 0,
   timestamptz '2024-01-01' + (${g} + ${salt}) * interval '1.5 second', date '2024-01-01' + ((${g} + ${salt}) % 1000)::int,
   jsonb_build_object('n', ${g} + ${salt}, 's', 'x' || ${salt})`;

/**
 * Writes the mixed backlog: `events / 1000` transactions of 200 inserts, 700 updates, 100 deletes,
 * into `tables` (each holding rows 1..updatable + deletable).
 */
export async function writeMixedBacklog(src: pg.Pool, events: number, deletable: number, tables: readonly string[] = MIXED_TABLES, updatable = UPDATABLE): Promise<void> {
  const txns = Math.ceil(events / 1000);
  const perTable = tables.map(() => ({ nextId: updatable + deletable + 1, nextUpdate: 0, nextDelete: updatable + 1 }));
  const c = await src.connect();
  try {
    for (let i = 0; i < txns; i++) {
      const t = tables[i % tables.length];
      const s = perTable[i % tables.length];
      await c.query('begin');
      await c.query(`insert into ${t} select ${mixedValues('g', String(i))} from generate_series($1::int8, $2::int8) g`, [s.nextId, s.nextId + 199]);
      s.nextId += 200;
      // 700 distinct rows: a stride coprime with `updatable` (10^k) walks all of them before repeating one.
      await c.query(
        `update ${t} set qty = qty + 1, price = price + 0.01, ratio = ratio * 1.5, name = md5(name), flag = not flag, created = created + interval '1 ms', attrs = attrs || jsonb_build_object('u', $3::int)
          where id in (select ((j * 7919) % ${updatable}) + 1 from generate_series($1::int8, $2::int8) j)`,
        [s.nextUpdate, s.nextUpdate + 699, i],
      );
      s.nextUpdate += 700;
      await c.query(`delete from ${t} where id between $1 and $2`, [s.nextDelete, s.nextDelete + 99]);
      s.nextDelete += 100;
      await c.query('commit');
    }
  } finally {
    c.release();
  }
}

/** count and md5 of every row's text, per mixed table */
async function tableDigests(url: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const out: string[] = [];
    for (const t of MIXED_TABLES) {
      const r = await c.query<{ d: string }>(`select count(*) || ' ' || md5(string_agg(x::text, ',' order by id)) as d from ${t} x`);
      out.push(`${t}: ${r.rows[0].d}`);
    }
    return out;
  } finally {
    await c.end();
  }
}

interface CrateFigures {
  /** the raw replay of the same coalesced operations (bench/crate-replay.ts) */
  rawSeconds: number;
  /** drain seconds / raw seconds, inverted: the drain's rate as a share of the replay's */
  drainVsRaw: number;
  jvmCpuMsPer1k: number;
  rawJvmCpuMsPer1k: number;
  /** share of the drain's time with no request to CrateDB in flight, and requests in flight on average (bench/request-meter.cjs); absent when its log could not be read */
  idleShare?: number;
  meanInFlight?: number;
}

interface DrainRun {
  crate?: CrateFigures;
  /** which replicator drained (Variant.label) */
  variant: string;
  pageSize: number;
  events: number;
  backlogSeconds: number;
  seconds: number;
  eventsPerSecond: number;
  /** when the drainer's own counter reached the backlog (the rest is the caughtUp() check) */
  countedSeconds: number;
  nodeCpuMsPer1k: number;
  /** of it, the main thread's (JavaScript, and the garbage collection it does itself); the rest is V8's helper threads (parallel and concurrent GC, compilation) and libuv's */
  mainThreadCpuMsPer1k: number;
  serverCpuMsPer1k: number;
  /** CPU of the drainer's backend in the source (page reads, checkpoints) */
  sourceBackendCpuMsPer1k: number;
  /** CPU of the sink's backends in the target (applying pages) */
  targetBackendCpuMsPer1k: number;
  windows: number;
  /** the replicator's peak resident set (VmHWM: its whole life, start-up included) */
  peakRssMiB: number;
  /** its resident set when the drain started (started up, waiting as a standby) */
  startRssMiB: number;
}

const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', { write: (s: string) => { process.stderr.write(s); } });

const CRATE_SCHEMA = 'pg2crate_bench_drain';
const ROOT = fileURLToPath(new URL('../', import.meta.url));

const MIXED_REPLAY_COLUMNS = [['id', true], ['k', false], ['qty', true], ['price', true], ['ratio', false], ['name', false], ['flag', false], ['created', false], ['day', false], ['attrs', false]] as const;
const ITEMS_REPLAY_COLUMNS = [['id', true], ['k', false], ['v', false], ['amount', true], ['created', false]] as const;

/** The tables a raw replay writes (copies of), with their registry ids. */
async function replayTables(src: pg.Pool, mixed: boolean): Promise<ReplayTable[]> {
  const out: ReplayTable[] = [];
  for (const t of mixed ? MIXED_TABLES : ['items']) {
    const id = (await src.query<{ id: number }>(`select id from pg2crate.tables where source_schema = 'public' and source_table = $1`, [t])).rows[0].id;
    const columns = (mixed ? MIXED_REPLAY_COLUMNS : ITEMS_REPLAY_COLUMNS).map(([name, asText]) => ({ name, asText }));
    out.push({ table: t, tableId: id, key: 'id', columns });
  }
  return out;
}

/** What a copy and its drained table must agree on (exact aggregates over every changed column). */
const replayDigest = (t: ReplayTable) => t.table === 'items'
  ? 'count(*), sum(id), sum(k), sum(amount), max(created), min(v), max(v)'
  : 'count(*), sum(qty), sum(k), sum(price), max(created), min(name), max(name), sum(case when flag then 1 else 0 end), max(day)';

const REQUEST_METER = fileURLToPath(new URL('./request-meter.cjs', import.meta.url));

interface MeterLog {
  spans: Array<[number, number | null]>;
  cpuMicros: number;
  maxRssKiB: number;
}

/** A file for bench/request-meter.cjs to write to (PG2CRATE_BENCH_REQUEST_LOG); the caller removes it. */
const newMeterLog = () => join(tmpdir(), `pg2crate-bench-meter-${process.pid}-${Date.now()}.json`);

/** What bench/request-meter.cjs wrote at the child's exit, or null. */
function readMeter(log: string): MeterLog | null {
  try {
    return JSON.parse(readFileSync(log, 'utf8')) as MeterLog;
  } catch {
    return null;
  }
}

/**
 * From the request spans the child wrote (bench/request-meter.cjs), over [from, to] (epoch ms): the
 * share of that time with no request in flight, and the requests in flight on average. Empty when
 * the log is missing (the child did not exit cleanly).
 */
function requestsInFlight(log: string, from: number, to: number): { idleShare?: number; meanInFlight?: number } {
  const spans = readMeter(log)?.spans;
  if (!spans) return {};
  // +1 where a request begins, -1 where it ends, clipped to the window
  const steps: Array<[number, number]> = [];
  for (const [began, ended] of spans) {
    const a = Math.max(began, from);
    const b = Math.min(ended ?? to, to);
    if (b <= a) continue;
    steps.push([a, 1], [b, -1]);
  }
  steps.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let inFlight = 0;
  let at = from;
  let idle = 0;
  let area = 0;
  for (const [t, d] of steps) {
    if (inFlight === 0) idle += t - at;
    area += inFlight * (t - at);
    at = t;
    inFlight += d;
  }
  idle += to - at;
  const span = to - from;
  return span > 0 ? { idleShare: idle / span, meanInFlight: area / span } : {};
}

/** what the child runs: `start` (a standby that takes over) or `catch-up` (cron mode, until everything is applied) */
type DrainCommand = 'start' | 'catch-up';

interface CrateTarget {
  url: string;
  /** raw replay: rows per request, requests in flight */
  rawRows: number;
  rawParallel: number;
  /** the sink's settings (PG2CRATE_CRATE_MAX_ROWS, PG2CRATE_CRATE_IN_FLIGHT …), where given */
  sinkEnv: Record<string, string>;
}

/** One replicator to measure: a checkout, how its CLI runs, and settings of its own. */
interface Variant {
  label: string;
  checkout: CliCheckout;
  mode: CliMode;
  env: Record<string, string>;
  /** flags of this replicator's node (V8 flags that NODE_OPTIONS does not take) */
  nodeFlags: string[];
  /** events of the warm tables drained before the measured backlog (--warmup, or WARMUP=… in --checkouts) */
  warmup: number;
}

async function drainOnce(cluster: Cluster, pm: number, pageSize: number, events: number, txnRows: number, workload: Workload, variant: Variant, nodeFlags: string[], command: DrainCommand, crateTarget?: CrateTarget): Promise<DrainRun> {
  const crateUrl = crateTarget?.url;
  const warmup = variant.warmup;
  const [srcUrl, dstUrl] = [await cluster.createDatabase('drain_src'), await cluster.createDatabase('drain_dst')];
  const src = new pg.Pool({ connectionString: srcUrl, max: 2 });
  // An idle connection that the server ends must not crash the benchmark; say so and go on.
  src.on('error', (err) => process.stderr.write(`bench: idle source connection failed: ${err.message}; server log:\n${clusterLogTail(cluster.url(), 15)}\n`));
  const mixed = workload === 'mixed';
  const warmTables = warmup > 0 ? (mixed ? WARM_MIXED_TABLES : ['witems']) : [];
  const tables = [...(mixed ? MIXED_TABLES : ['items']), ...warmTables].map((t) => `public.${t}`).join(',');
  const target: Record<string, string> = crateUrl ? { CRATEDB_URL: crateUrl, PG2CRATE_TARGET_SCHEMA: CRATE_SCHEMA } : { TARGET_DATABASE_URL: dstUrl };
  const childEnv: Record<string, string> = { DATABASE_URL: srcUrl, ...target, ...crateTarget?.sinkEnv, PG2CRATE_TABLES: tables, PG2CRATE_PAGE_SIZE: String(pageSize), LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' };
  const config = loadConfig(childEnv);
  if (crateUrl) for (const t of [...MIXED_TABLES, 'items', ...warmTables]) await crateSql(crateUrl, `drop table if exists "${CRATE_SCHEMA}"."${t}"`);
  let replay: ReplayTable[] = [];
  // rows deleted by the mixed backlog, per table
  const deletable = Math.ceil(Math.ceil(events / 1000) / 3) * 100;
  const warmDeletable = Math.ceil(Math.ceil(warmup / 1000) / 3) * 100;
  let lastId = '0';

  /** The all-insert workload: rows 1..n of `table`, in transactions of txnRows. */
  const writeInserts = async (table: string, n: number): Promise<void> => {
    for (let from = 1; from <= n; from += txnRows) {
      await src.query(
        `insert into ${table} select g, g % 1000, md5(g::text), (g % 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 second' from generate_series($1::int8, $2::int8) g`,
        [from, Math.min(n, from + txnRows - 1)],
      );
    }
  };

  /** The warm-up's events, into the warm tables only (the replay and the checks never look at them). */
  const writeWarmup = async (): Promise<void> => {
    if (mixed) await writeMixedBacklog(src, warmup, warmDeletable, WARM_MIXED_TABLES, WARM_UPDATABLE);
    else await writeInserts('witems', warmup);
  };

  /** The backlog, written while the replicator waits as a standby; returns the seconds it took. */
  const writeBacklog = async (): Promise<number> => {
    const t0 = performance.now();
    if (mixed) await writeMixedBacklog(src, events, deletable);
    else await writeInserts('items', events);
    const written = Number((await src.query<{ n: string }>('select count(*) as n from pg2crate.outbox where op <> $1', ['B'])).rows[0].n);
    if (written < events) throw new Error(`the backlog holds ${written} events, expected ${events}`);
    const seconds = (performance.now() - t0) / 1000;
    // the backlog's events, kept for the raw replay (retention may remove them once applied)
    if (crateUrl) await src.query(`create table bench_events as select id, table_id, op, data from pg2crate.outbox where id > $1 and op <> 'B'`, [lastId]);
    await src.query('analyze pg2crate.outbox');
    await src.query('checkpoint');
    await sleep(300);
    return seconds;
  };

  /** CrateDB: every table holds as many rows as the source's; then the raw replay of the same operations beside it. */
  const crateReference = async (jvms: number[]): Promise<{ rawSeconds: number; rawJvmCpuMsPer1k: number }> => {
    for (const t of mixed ? MIXED_TABLES : ['items']) {
      await crateSql(crateUrl!, `refresh table "${CRATE_SCHEMA}"."${t}"`);
      const got = Number((await crateSql(crateUrl!, `select count(*) from "${CRATE_SCHEMA}"."${t}"`)).rows![0][0]);
      const want = Number((await src.query<{ n: string }>(`select count(*) as n from public.${t}`)).rows[0].n);
      if (got !== want) throw new Error(`CrateDB table ${t} holds ${got} rows, the source ${want}`);
    }
    const c = await src.connect();
    let pages;
    try {
      pages = await coalescedPages(c, 'bench_events', pageSize, CRATE_SCHEMA, replay);
    } finally {
      c.release();
    }
    const rawJvm0 = crateCpuSeconds(jvms);
    const rawSeconds = await replaySeconds(crateUrl!, pages, crateTarget!.rawRows, crateTarget!.rawParallel);
    const rawJvmCpu = crateCpuSeconds(jvms) - rawJvm0;
    await checkCopies(crateUrl!, CRATE_SCHEMA, replay, replayDigest);
    await dropCopies(crateUrl!, CRATE_SCHEMA, replay);
    return { rawSeconds, rawJvmCpuMsPer1k: (rawJvmCpu * 1e6) / events };
  };

  /**
   * After a drain of `seconds`: into CrateDB, its figures beside the raw replay (which checks the
   * row counts first), requests in flight over [from, to] from `log`; a Postgres target is checked
   * equal to the source.
   */
  const checkTarget = async (jvms: number[], seconds: number, jvmCpu: number, log: string | null, from: number, to: number): Promise<CrateFigures | undefined> => {
    if (!crateUrl) {
      await checkPostgresTarget();
      return undefined;
    }
    const ref = await crateReference(jvms);
    return { ...ref, drainVsRaw: ref.rawSeconds / seconds, jvmCpuMsPer1k: (jvmCpu * 1e6) / events, ...(log ? requestsInFlight(log, from, to) : {}) };
  };

  /** A Postgres target equals the source. */
  const checkPostgresTarget = async (): Promise<void> => {
    if (mixed) {
      const [want, got] = [await tableDigests(srcUrl), await tableDigests(dstUrl)];
      if (want.join() !== got.join()) throw new Error(`target differs from source: source ${want.join('; ')}, target ${got.join('; ')}`);
      return;
    }
    const dst = new pg.Client({ connectionString: dstUrl });
    await dst.connect();
    const n = Number((await dst.query<{ n: string }>('select count(*) as n from items')).rows[0].n);
    await dst.end();
    if (n !== events + 1) throw new Error(`target holds ${n} rows, expected ${events + 1}`);
  };

  /**
   * `pg2crate catch-up` (cron mode): the backlog is written first, then the clock runs from the
   * child's start to its exit, start-up included. Its CPU and peak RSS are its own, reported at its
   * exit (bench/request-meter.cjs), start-up included too.
   */
  const catchUpRun = async (): Promise<DrainRun> => {
    const backlogSeconds = await writeBacklog();
    const meterLog = newMeterLog();
    const jvms = crateUrl ? crateJvmPids() : [];
    const jvm0 = crateCpuSeconds(jvms);
    const cpu0 = serverCpuSeconds(pm);
    const start = performance.now();
    const startEpoch = performance.timeOrigin + start;
    const child = spawnCli(variant.checkout, variant.mode, ['catch-up'], { ...childEnv, ...variant.env, PG2CRATE_BENCH_REQUEST_LOG: meterLog }, ['--require', REQUEST_METER, ...nodeFlags, ...variant.nodeFlags]);
    try {
      const code = await new Promise<number | string>((r) => child.once('exit', (c, sig) => r(c ?? sig ?? 'unknown')));
      const end = performance.now();
      const seconds = (end - start) / 1000;
      const serverCpu = serverCpuSeconds(pm) - cpu0;
      const jvmCpu = crateCpuSeconds(jvms) - jvm0;
      if (code !== 0) throw new Error(`pg2crate catch-up exited ${code}`);
      if (!(await caughtUp(src))) throw new Error('pg2crate catch-up exited 0 with events not yet applied');
      const meter = readMeter(meterLog);
      const windows = Number((await src.query<{ n: string }>(`select windows::text as n from pg2crate.checkpoint where stream = 'main'`)).rows[0].n);
      const crate = await checkTarget(jvms, seconds, jvmCpu, meterLog, startEpoch, startEpoch + (end - start));
      return {
        crate, variant: variant.label,
        pageSize, events, backlogSeconds, seconds, eventsPerSecond: events / seconds, countedSeconds: seconds,
        nodeCpuMsPer1k: meter ? meter.cpuMicros / 1000 / (events / 1000) : NaN, mainThreadCpuMsPer1k: NaN, serverCpuMsPer1k: (serverCpu * 1e6) / events,
        sourceBackendCpuMsPer1k: NaN, targetBackendCpuMsPer1k: NaN,
        windows, peakRssMiB: meter ? meter.maxRssKiB / 1024 : NaN, startRssMiB: NaN,
      };
    } finally {
      if (child.exitCode === null && child.signalCode === null) await stopChild(child, 5_000);
      rmSync(meterLog, { force: true });
    }
  };

  const appliedEvents = async () => Number((await src.query<{ n: string }>(`select applied_events::text as n from pg2crate.checkpoint where stream = 'main'`)).rows[0].n);
  try {
    if (mixed) {
      for (const t of MIXED_TABLES) {
        await src.query(mixedTable(t));
        await src.query(`insert into ${t} select ${mixedValues('g', '0')} from generate_series(1, ${UPDATABLE + deletable}) g`);
        await src.query(`vacuum analyze ${t}`);
      }
    } else {
      await src.query(TABLE);
    }
    for (const t of warmTables) {
      if (mixed) {
        await src.query(mixedTable(t));
        await src.query(`insert into ${t} select ${mixedValues('g', '0')} from generate_series(1, ${WARM_UPDATABLE + warmDeletable}) g`);
        await src.query(`vacuum analyze ${t}`);
      } else {
        await src.query(TABLE.replace('public.items', `public.${t}`));
      }
    }
    // Capture; one short run (in this process) finishes the initial load and creates the target tables.
    const prime = new Runner(config, logger);
    await migrate(prime);
    const primed = prime.run();
    primed.catch(() => {});
    if (!mixed) await src.query(`insert into items values (0, 0, 'prime', 0, now())`);
    for (;;) {
      const pending = await src.query<{ n: string }>(`select count(*) as n from pg2crate.backfills where status <> 'done'`).catch(() => ({ rows: [{ n: '0' }] }));
      if (Number(pending.rows[0].n) === 0 && (await caughtUp(src))) break;
      await sleep(50);
    }
    await prime.close();
    await primed;
    if (crateUrl) {
      replay = await replayTables(src, mixed);
      await copyTargetTables(crateUrl, CRATE_SCHEMA, replay);
    }
    lastId = (await src.query<{ id: string }>('select coalesce(max(id), 0)::text as id from pg2crate.outbox')).rows[0].id;
    if (command === 'catch-up') return await catchUpRun();

    // The replicator, `pg2crate start` in a child process, waits as a standby while this holds the
    // stream: it starts (modules loaded, connections made) and the backlog is written off the
    // clock; it takes the stream within PG2CRATE_STANDBY_RETRY_MS once this lets go.
    const lock = new pg.Client({ connectionString: srcUrl });
    await lock.connect();
    await lock.query('select pg_advisory_lock(hashtextextended($1, 0))', [streamLockText('pg2crate', 'main')]);
    // Into CrateDB, the child records its requests (bench/request-meter.cjs): when nothing is in flight.
    const requestLog = crateUrl ? newMeterLog() : null;
    const meter: { env: Record<string, string>; flags: string[] } = requestLog ? { env: { PG2CRATE_BENCH_REQUEST_LOG: requestLog }, flags: ['--require', REQUEST_METER] } : { env: {}, flags: [] };
    const child = spawnCli(variant.checkout, variant.mode, ['start'], { ...childEnv, ...variant.env, ...meter.env, PG2CRATE_STANDBY_RETRY_MS: '20' }, [...meter.flags, ...nodeFlags, ...variant.nodeFlags]);
    const exited = new Promise<number | string>((r) => child.once('exit', (code, sig) => r(code ?? sig ?? 'unknown')));
    let stopped: number | string | undefined;
    let paused = false;
    try {
      const alive = async () => {
        const code = await Promise.race([exited, sleep(0).then(() => undefined)]);
        if (code !== undefined) throw new Error(`the replicator's process exited ${code} before the drain was done`);
      };
      for (const t0 = performance.now(); ; await sleep(20)) {
        await alive();
        const standby = await src.query(`select 1 from pg_stat_activity where application_name = 'pg2crate drainer' and datname = current_database()`);
        if (standby.rows.length > 0) break;
        if (performance.now() - t0 > 60_000) throw new Error('the replicator did not connect within 60 s');
      }
      // --warmup: the replicator first drains a backlog of the warm tables, then is stopped (SIGSTOP)
      // while the measured backlog is written, and continued (SIGCONT) as the clock starts. Its
      // figures are then those of a replicator that has run a while (its hot code compiled, its
      // heap grown), as one that replicates continuously has; without it, of one just started.
      if (warmup > 0) {
        await writeWarmup();
        await lock.query('select pg_advisory_unlock_all()');
        for (const t0 = performance.now(); !(await caughtUp(src)); await sleep(50)) {
          await alive();
          if (performance.now() - t0 > 10 * 60_000) throw new Error('the warm-up did not finish within 10 min');
        }
        await sleep(500); // its last confirm and its idle flag written
        process.kill(child.pid!, 'SIGSTOP');
        paused = true;
        lastId = (await src.query<{ id: string }>('select coalesce(max(id), 0)::text as id from pg2crate.outbox')).rows[0].id;
      }
      const backlogSeconds = await writeBacklog();
      const applied0 = await appliedEvents();
      const pid = child.pid!;
      const startRss = rssMiB(pid);
      // The replicator's own backends (its drainer and its sink connections): their CPU since they
      // started, read before they close, splits the server's share between source and target
      // (less what they spent before the clock started: the warm-up's).
      const backends = new Map<number, string>();
      const backend0 = new Map<number, number>();
      let lastLook = 0;
      const look = async () => {
        const res = await src.query<{ pid: number; app: string }>(`select pid, application_name as app from pg_stat_activity where application_name in ('pg2crate drainer', 'pg2crate sink')`);
        for (const r of res.rows) backends.set(r.pid, r.app);
      };
      if (warmup > 0) {
        await look();
        for (const p of backends.keys()) backend0.set(p, processCpuSeconds(p));
      }
      const jvms = crateUrl ? crateJvmPids() : [];
      const jvm0 = crateCpuSeconds(jvms);
      const cpu0 = serverCpuSeconds(pm);
      const node0 = processCpuSeconds(pid);
      const main0 = threadCpuSeconds(pid, pid);
      const start = performance.now();
      const startEpoch = performance.timeOrigin + start;
      if (paused) {
        process.kill(pid, 'SIGCONT');
        paused = false;
      } else {
        await lock.query('select pg_advisory_unlock_all()');
      }
      let countedAt = 0;
      for (;;) {
        await alive();
        if (performance.now() - lastLook > 250) {
          lastLook = performance.now();
          await look();
        }
        // the replicator's own counter (saved with each page's checkpoint) first: caughtUp() reads the outbox
        if ((await appliedEvents()) - applied0 >= events) {
          if (!countedAt) countedAt = performance.now();
          if (await caughtUp(src)) break;
        }
        await sleep(20);
        if (performance.now() - start > 30 * 60_000) throw new Error('the drain did not finish within 30 min');
      }
      const end = performance.now();
      const seconds = (end - start) / 1000;
      const nodeCpu = processCpuSeconds(pid) - node0;
      const mainCpu = threadCpuSeconds(pid, pid) - main0;
      const peakRss = peakRssMiB(pid);
      const serverCpu = serverCpuSeconds(pm) - cpu0;
      const jvmCpu = crateCpuSeconds(jvms) - jvm0;
      await look();
      const byApp = { drainer: 0, sink: 0 };
      for (const [p, app] of backends) byApp[app === 'pg2crate sink' ? 'sink' : 'drainer'] += processCpuSeconds(p) - (backend0.get(p) ?? 0);
      const windows = Number((await src.query<{ n: string }>(`select windows::text as n from pg2crate.checkpoint where stream = 'main'`)).rows[0].n);
      stopped = await stopChild(child);
      if (stopped !== 0) throw new Error(`the replicator's process exited ${stopped} on SIGTERM, not 0`);
      const crate = await checkTarget(jvms, seconds, jvmCpu, requestLog, startEpoch, startEpoch + (end - start));
      return {
        crate, variant: variant.label,
        pageSize, events, backlogSeconds, seconds, eventsPerSecond: events / seconds, countedSeconds: (countedAt - start) / 1000,
        nodeCpuMsPer1k: (nodeCpu * 1e6) / events, mainThreadCpuMsPer1k: (mainCpu * 1e6) / events, serverCpuMsPer1k: (serverCpu * 1e6) / events,
        sourceBackendCpuMsPer1k: (byApp.drainer * 1e6) / events, targetBackendCpuMsPer1k: (byApp.sink * 1e6) / events,
        windows, peakRssMiB: peakRss, startRssMiB: startRss,
      };
    } finally {
      if (paused) process.kill(child.pid!, 'SIGCONT');
      if (stopped === undefined) await stopChild(child, 5_000);
      if (requestLog) rmSync(requestLog, { force: true });
      await lock.end().catch(() => {});
    }
  } finally {
    await src.end();
    const admin = new pg.Client({ connectionString: cluster.url() });
    await admin.connect();
    for (const u of [srcUrl, dstUrl]) await admin.query(`drop database if exists "${new URL(u).pathname.slice(1)}" with (force)`);
    await admin.end();
  }
}

export async function run(args: BenchArgs): Promise<object> {
  const events = Number(args.events ?? 1_000_000);
  // --warmup=N: before the measured backlog, the replicator drains N events of tables of its own (start only)
  const warmup = Number(args.warmup ?? 0);
  const rounds = Number(args.rounds ?? 3);
  const txnRows = Number(args['txn-rows'] ?? 10_000);
  const pageSizes = (args.pages ?? '1000,5000,20000').split(',').map(Number);
  const workload = (args.workload ?? 'inserts') as Workload;
  const crateUrl = args.target === 'cratedb' ? (args.url ?? process.env.CRATEDB_URL) : undefined;
  if (args.target === 'cratedb' && !crateUrl) throw new Error('--target=cratedb needs CRATEDB_URL (e.g. CRATEDB_URL=http://127.0.0.1:4200)');
  if (workload !== 'inserts' && workload !== 'mixed') throw new Error('--workload is inserts or mixed');
  // --max-rows, --max-bytes, --in-flight: the sink's request size and requests in flight (else the defaults)
  const sinkEnv: Record<string, string> = {};
  for (const [arg, env] of [['max-rows', 'PG2CRATE_CRATE_MAX_ROWS'], ['max-bytes', 'PG2CRATE_CRATE_MAX_BYTES'], ['in-flight', 'PG2CRATE_CRATE_IN_FLIGHT']] as const) {
    if (args[arg] !== undefined) sinkEnv[env] = args[arg]!;
  }
  const crateTarget = crateUrl ? { url: crateUrl, rawRows: Number(args['raw-rows'] ?? 5000), rawParallel: Number(args['raw-parallel'] ?? 2), sinkEnv } : undefined;
  // --run=dist,tsx: how the CLI runs (compiled, as bin/pg2crate.js in the package; from source, as `npm start`).
  const modes = (args.run ?? CLI_MODES.join(',')).split(',') as CliMode[];
  const badMode = modes.find((m) => !CLI_MODES.includes(m));
  if (badMode) throw new Error(`--run takes ${CLI_MODES.join(' and/or ')}, comma-separated, not ${badMode}`);
  // --checkouts=dir,dir?SETTING=value&…: replicators from several checkouts (a before → after in one
  // run), each with settings of its own; NODE_FLAGS=… (space-separated) goes on its node's command
  // line, for V8 flags that NODE_OPTIONS refuses (--single-threaded-gc)
  const entries = (args.checkouts ?? ROOT).split(',').map((c) => {
    const [dir, query] = c.split('?');
    const { NODE_FLAGS: flags, WARMUP: warm, ...env } = Object.fromEntries(new URLSearchParams(query ?? ''));
    return { dir, env, nodeFlags: flags ? flags.split(/\s+/).filter(Boolean) : [], warmup: warm === undefined ? warmup : Number(warm), name: c };
  });
  // --node-flags='--cpu-prof --cpu-prof-dir=/tmp/prof': flags of every replicator's node (profiles are written when it stops)
  const nodeFlags = args['node-flags'] ? args['node-flags'].split(/\s+/).filter(Boolean) : [];
  // --command=catch-up: the cron mode instead of a running replicator (see catchUpRun)
  const command = (args.command ?? 'start') as DrainCommand;
  if (command !== 'start' && command !== 'catch-up') throw new Error(`--command takes start or catch-up, not ${String(args.command)}`);
  const badWarmup = entries.find((e) => !Number.isInteger(e.warmup) || e.warmup < 0);
  if (badWarmup) throw new Error(`--warmup and WARMUP= take a number of events (0 or more), not what ${badWarmup.name} gives`);
  if (entries.some((e) => e.warmup > 0) && command !== 'start') throw new Error('--warmup needs --command=start: a catch-up is measured from its start');
  const checkouts = new Map<string, CliCheckout>();
  const cluster = await startCluster();
  const runs: DrainRun[] = [];
  const variants: Variant[] = [];
  try {
    for (const e of entries) {
      let c = checkouts.get(e.dir);
      if (!c) checkouts.set(e.dir, (c = buildCheckout(e.dir)));
      for (const mode of modes) variants.push({ label: `${entries.length > 1 ? `${e.name} ` : ''}${mode}`, checkout: c, mode, env: e.env, nodeFlags: e.nodeFlags, warmup: e.warmup });
    }
    const admin = new pg.Client({ connectionString: cluster.url() });
    await admin.connect();
    const pm = await postmasterPid(admin);
    await admin.end();
    for (let r = 1; r <= rounds; r++) {
      for (const ps of pageSizes) {
        for (const v of variants) {
          const d = await drainOnce(cluster, pm, ps, events, txnRows, workload, v, nodeFlags, command, crateTarget).catch((err: unknown) => {
            process.stderr.write(`server log:\n${clusterLogTail(cluster.url())}\n`);
            throw err;
          });
          runs.push(d);
          // (catch-up: no take-over to time from, and no /proc once it exited: fewer figures)
          const more = command === 'catch-up'
            ? `node CPU ${fmt(d.nodeCpuMsPer1k, 1)} ms / 1k, start-up included; peak RSS ${fmt(d.peakRssMiB, 0)} MiB`
            : `counter reached at ${fmt(d.countedSeconds, 2)} s; node CPU ${fmt(d.nodeCpuMsPer1k, 1)} ms / 1k (main thread ${fmt(d.mainThreadCpuMsPer1k, 1)}); peak RSS ${fmt(d.peakRssMiB, 0)} MiB, ${fmt(d.startRssMiB, 0)} MiB at start`;
          note(`  round ${r}/${rounds} page ${String(ps).padStart(6)} ${v.label}: ${fmt(d.eventsPerSecond, 0)} events/s (${fmt(d.seconds, 2)} s; ${d.windows} windows; backlog written in ${fmt(d.backlogSeconds, 1)} s); ${more}`);
        }
      }
    }
  } finally {
    await cluster.stop();
    for (const c of checkouts.values()) removeBuild(c);
  }
  const cells = pageSizes.flatMap((ps) => variants.map((v) => ({ ps, label: v.label, runs: runs.filter((d) => d.pageSize === ps && d.variant === v.label) })));
  const figures = cells.map(({ ps, label, runs: of }) => ({
    pageSize: ps,
    variant: label,
    eventsPerSecond: spread(of.map((d) => d.eventsPerSecond)),
    seconds: spread(of.map((d) => d.seconds)),
    nodeCpuMsPer1k: spread(of.map((d) => d.nodeCpuMsPer1k)),
    mainThreadCpuMsPer1k: spread(of.map((d) => d.mainThreadCpuMsPer1k)),
    serverCpuMsPer1k: spread(of.map((d) => d.serverCpuMsPer1k)),
    sourceBackendCpuMsPer1k: spread(of.map((d) => d.sourceBackendCpuMsPer1k)),
    targetBackendCpuMsPer1k: spread(of.map((d) => d.targetBackendCpuMsPer1k)),
    peakRssMiB: spread(of.map((d) => d.peakRssMiB)),
  }));
  printTable(
    `drain of ${events.toLocaleString('en')} ${mixedTitle(workload, txnRows)} into ${crateUrl ? 'CrateDB' : 'a Postgres target'} by \`pg2crate ${command}\` in its own process${command === 'catch-up' ? ' (start-up included; its CPU and peak RSS from the process itself)' : ''}${warmup > 0 ? ` after a warm-up of ${warmup.toLocaleString('en')} events (peak RSS over both)` : ''}${entries.some((e) => e.warmup !== warmup) ? ' (WARMUP=… per replicator: events of a warm-up before the measured backlog, peak RSS over both)' : ''}, ${rounds} interleaved rounds (min / median / max)`,
    ['page size', 'replicator', 'events/s', 'seconds', 'node CPU ms / 1k events', '… main thread', 'server CPU ms / 1k events', '… of it drainer backend', '… sink backends', 'peak RSS MiB'],
    figures.map((f) => [
      String(f.pageSize), f.variant, fmtSpread(f.eventsPerSecond, 0), fmtSpread(f.seconds, 2), fmtSpread(f.nodeCpuMsPer1k, 1), fmtSpread(f.mainThreadCpuMsPer1k, 1), fmtSpread(f.serverCpuMsPer1k, 1),
      fmtSpread(f.sourceBackendCpuMsPer1k, 1), fmtSpread(f.targetBackendCpuMsPer1k, 1), fmtSpread(f.peakRssMiB, 0),
    ]),
  );
  note('source, target and replicator share the machine (server CPU covers both databases: one cluster). dist: node dist/cli.js (npm package, Docker image); tsx: node --import tsx src/cli.ts (npm start).');
  if (crateTarget) {
    const of = (runsOf: DrainRun[], f: (c: CrateFigures, d: DrainRun) => number) => spread(runsOf.map((d) => f(d.crate!, d)));
    printTable(
      `CrateDB: drain${Object.keys(sinkEnv).length > 0 ? ` (${Object.entries(sinkEnv).map(([k, v]) => `${k}=${v}`).join(', ')})` : ''} beside a raw replay of the same coalesced operations (${crateTarget.rawRows} rows per request, ${crateTarget.rawParallel} in flight), same round`,
      ['page size', 'replicator', 'raw events/s', 'drain / raw', 'CrateDB JVM CPU ms / 1k: drain', '… raw', 'drain: nothing in flight %', '… requests in flight, mean'],
      cells.map(({ ps, label, runs: r }) => [
        String(ps), label, fmtSpread(of(r, (c, d) => d.events / c.rawSeconds), 0), fmtSpread(of(r, (c) => c.drainVsRaw), 2),
        fmtSpread(of(r, (c) => c.jvmCpuMsPer1k), 1), fmtSpread(of(r, (c) => c.rawJvmCpuMsPer1k), 1),
        fmtSpread(of(r, (c) => (c.idleShare ?? NaN) * 100), 1), fmtSpread(of(r, (c) => c.meanInFlight ?? NaN), 2),
      ]),
    );
  }
  return {
    settings: {
      events, rounds, txnRows, pageSizes, workload, command, target: crateUrl ? 'cratedb' : 'postgres', modes, checkouts: entries.map((e) => e.name), nodeFlags,
      ...(crateTarget ? { rawRows: crateTarget.rawRows, rawParallel: crateTarget.rawParallel, sink: sinkEnv } : {}),
    },
    figures, runs,
  };
}

function mixedTitle(workload: Workload, txnRows: number): string {
  return workload === 'mixed'
    ? 'events (70% updates, 20% inserts, 10% deletes over 3 tables of 10 columns; transactions of 1,000 events)'
    : `insert events (transactions of ${txnRows.toLocaleString('en')} rows)`;
}
