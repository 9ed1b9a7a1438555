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
// short replicator run so that the initial load is done and the target tables exist, then the
// backlog written with no replicator running, ANALYZE of the outbox (what autovacuum would have
// done by then), CHECKPOINT. Then a Runner starts in this process (as `pg2crate start` would,
// listener and all) and the clock runs until caughtUp() (every event lies in a completed window),
// checked cheaply via the drainer's counters first. Page sizes (--pages, default 1000,5000,20000)
// are interleaved round by round.
// Reported: events/s, the CPU of this process (drainer + sink) and of the server per 1k events (and of
// that, the replicator's drainer backend in the source and sink backends in the target), and the
// largest RSS of this process sampled while draining (after a full garbage collection of what the
// benchmark itself left before the drain). Into CrateDB also: its JVM's CPU per 1k events
// (drain and replay), the time with no request to CrateDB in flight and the mean number in flight
// (bench/crate-meter.ts), and drain / raw, the replay's seconds over the drain's. --cpu-prof=file
// writes a CPU profile of this process during each drain (file-<round>-<page size>.cpuprofile).
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import v8 from 'node:v8';
import vm from 'node:vm';
import pg from 'pg';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { startCluster, type Cluster } from '../test/helpers/cluster.js';
import { caughtUp } from '../test/helpers/replication.js';
import { crateSql } from './crate-raw.js';
import { crateCpuSeconds, crateJvmPids, InFlightMeter } from './crate-meter.js';
import { checkCopies, coalescedPages, copyTargetTables, dropCopies, replaySeconds, type ReplayTable } from './crate-replay.js';
import { fmt, fmtSpread, note, printTable, sleep, spread, type BenchArgs } from './report.js';
import { clusterLogTail, postmasterPid, processCpuSeconds, serverCpuSeconds } from './server-cpu.js';

export const description = 'drain rate: a backlog of 1M events into a Postgres target (or CrateDB with --target=cratedb), by page size';

const TABLE = `create table public.items (
  id bigint primary key, k integer not null, v text not null, amount numeric(12,2), created timestamptz not null
)`;

type Workload = 'inserts' | 'mixed';
const MIXED_TABLES = ['m1', 'm2', 'm3'];
/** per table: rows 1..UPDATABLE are updated, the next DELETABLE rows deleted in order */
const UPDATABLE = 100_000;
const mixedTable = (t: string) => `create table public.${t} (
  id bigint primary key, k integer not null, qty bigint, price numeric(12,2), ratio double precision,
  name text not null, flag boolean, created timestamptz not null, day date, attrs jsonb
)`;
const mixedValues = (g: string, salt: string) =>
  `${g}, (${g} % 1000)::int, ${g} * 3 + ${salt}, ((${g} * 7 + ${salt}) % 100000) / 100.0, (${g} + ${salt}) / 7.0, md5((${g} + ${salt})::text), (${g} + ${salt}) % 2 = 0,
   timestamptz '2024-01-01' + (${g} + ${salt}) * interval '1.5 second', date '2024-01-01' + ((${g} + ${salt}) % 1000)::int,
   jsonb_build_object('n', ${g} + ${salt}, 's', 'x' || ${salt})`;

/** Writes the mixed backlog: `events / 1000` transactions of 200 inserts, 700 updates, 100 deletes. */
async function writeMixedBacklog(src: pg.Pool, events: number, deletable: number): Promise<void> {
  const txns = Math.ceil(events / 1000);
  const perTable = MIXED_TABLES.map(() => ({ nextId: UPDATABLE + deletable + 1, nextUpdate: 0, nextDelete: UPDATABLE + 1 }));
  const c = await src.connect();
  try {
    for (let i = 0; i < txns; i++) {
      const t = MIXED_TABLES[i % 3];
      const s = perTable[i % 3];
      await c.query('begin');
      await c.query(`insert into ${t} select ${mixedValues('g', String(i))} from generate_series($1::int8, $2::int8) g`, [s.nextId, s.nextId + 199]);
      s.nextId += 200;
      // 700 distinct rows: a stride coprime with UPDATABLE walks all of them before repeating one.
      await c.query(
        `update ${t} set qty = qty + 1, price = price + 0.01, ratio = ratio * 1.5, name = md5(name), flag = not flag, created = created + interval '1 ms', attrs = attrs || jsonb_build_object('u', $3::int)
          where id in (select ((j * 7919) % ${UPDATABLE}) + 1 from generate_series($1::int8, $2::int8) j)`,
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
  /** seconds of the drain with no request to CrateDB in flight */
  idleSeconds: number;
  meanInFlight: number;
  requests: number;
}

interface DrainRun {
  crate?: CrateFigures;
  pageSize: number;
  events: number;
  backlogSeconds: number;
  seconds: number;
  eventsPerSecond: number;
  /** when the drainer's own counter reached the backlog (the rest is the caughtUp() check) */
  countedSeconds: number;
  nodeCpuMsPer1k: number;
  serverCpuMsPer1k: number;
  /** CPU of the drainer's backend in the source (page reads, checkpoints) */
  sourceBackendCpuMsPer1k: number;
  /** CPU of the sink's backends in the target (applying pages) */
  targetBackendCpuMsPer1k: number;
  pages: number;
  windows: number;
  peakRssMiB: number;
  /** RSS when the drain started (the benchmark's own share) */
  startRssMiB: number;
}

const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', { write: (s: string) => { process.stderr.write(s); } });

const CRATE_SCHEMA = 'pg2crate_bench_drain';

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

interface CrateTarget {
  url: string;
  /** raw replay: rows per request, requests in flight */
  rawRows: number;
  rawParallel: number;
  /** the sink's settings (PG2CRATE_CRATE_MAX_ROWS, PG2CRATE_CRATE_IN_FLIGHT …), where given */
  sinkEnv: Record<string, string>;
}

/** A full garbage collection now (V8 then gives the freed memory back). */
function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

/** Profiles this process's CPU until the returned function is called, which writes the profile (.cpuprofile, for DevTools). */
async function cpuProfile(path: string): Promise<() => Promise<void>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async () => {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(path, JSON.stringify(profile));
    session.disconnect();
  };
}

async function drainOnce(cluster: Cluster, pm: number, pageSize: number, events: number, txnRows: number, workload: Workload, crateTarget?: CrateTarget, profilePath?: string): Promise<DrainRun> {
  const crateUrl = crateTarget?.url;
  const [srcUrl, dstUrl] = [await cluster.createDatabase('drain_src'), await cluster.createDatabase('drain_dst')];
  const src = new pg.Pool({ connectionString: srcUrl, max: 2 });
  // An idle connection that the server ends must not crash the benchmark; say so and go on.
  src.on('error', (err) => process.stderr.write(`bench: idle source connection failed: ${err.message}; server log:\n${clusterLogTail(cluster.url(), 15)}\n`));
  const mixed = workload === 'mixed';
  const tables = mixed ? MIXED_TABLES.map((t) => `public.${t}`).join(',') : 'public.items';
  const target = crateUrl ? { CRATEDB_URL: crateUrl, PG2CRATE_TARGET_SCHEMA: CRATE_SCHEMA } : { TARGET_DATABASE_URL: dstUrl };
  const config = loadConfig({ DATABASE_URL: srcUrl, ...target, ...crateTarget?.sinkEnv, PG2CRATE_TABLES: tables, PG2CRATE_PAGE_SIZE: String(pageSize) });
  if (crateUrl) for (const t of [...MIXED_TABLES, 'items']) await crateSql(crateUrl, `drop table if exists "${CRATE_SCHEMA}"."${t}"`);
  let crate: CrateFigures | undefined;
  let replay: ReplayTable[] = [];
  // rows deleted by the mixed backlog, per table
  const deletable = Math.ceil(Math.ceil(events / 1000) / 3) * 100;
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
    // Capture; one short run finishes the initial load and creates the target tables.
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
    const lastId = (await src.query<{ id: string }>('select coalesce(max(id), 0)::text as id from pg2crate.outbox')).rows[0].id;

    // The backlog, written with nobody draining.
    const t0 = performance.now();
    if (mixed) await writeMixedBacklog(src, events, deletable);
    else {
      for (let from = 1; from <= events; from += txnRows) {
        const to = Math.min(events, from + txnRows - 1);
        await src.query(
          `insert into items select g, g % 1000, md5(g::text), (g % 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 second' from generate_series($1::int8, $2::int8) g`,
          [from, to],
        );
      }
    }
    const written = Number((await src.query<{ n: string }>('select count(*) as n from pg2crate.outbox where op <> $1', ['B'])).rows[0].n);
    if (written < events) throw new Error(`the backlog holds ${written} events, expected ${events}`);
    const backlogSeconds = (performance.now() - t0) / 1000;
    // the backlog's events, kept for the raw replay (retention may remove them once applied)
    if (crateUrl) await src.query(`create table bench_events as select id, table_id, op, data from pg2crate.outbox where id > $1 and op <> 'B'`, [lastId]);
    await src.query('analyze pg2crate.outbox');
    await src.query('checkpoint');
    await sleep(300);

    // The benchmark's own garbage (the initial load's run, the replay of the round before) is
    // collected first, so that the RSS measured is the drain's, not what this process held before.
    collectGarbage();
    const runner = new Runner(config, logger);
    const stopProfile = profilePath ? await cpuProfile(profilePath) : null;
    const jvms = crateUrl ? crateJvmPids() : [];
    const meter = crateUrl ? new InFlightMeter(crateUrl.split(',')) : null;
    const jvm0 = crateCpuSeconds(jvms);
    meter?.start();
    const cpu0 = serverCpuSeconds(pm);
    const node0 = process.cpuUsage();
    const start = performance.now();
    const running = runner.run();
    running.catch(() => {});
    // The replicator's own backends (its drainer and its sink connections): their CPU since they
    // started, read before they close, splits the server's share between source and target.
    const backends = new Map<number, string>();
    let lastLook = 0;
    const look = async () => {
      const res = await src.query<{ pid: number; app: string }>(`select pid, application_name as app from pg_stat_activity where application_name in ('pg2crate drainer', 'pg2crate sink')`);
      for (const r of res.rows) backends.set(r.pid, r.app);
    };
    let countedAt = 0;
    const startRss = process.memoryUsage.rss();
    let peakRss = startRss;
    for (;;) {
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
      if (performance.now() - lastLook > 250) {
        lastLook = performance.now();
        await look();
      }
      const applied = runner.drainer?.stats.appliedEvents ?? 0;
      if (applied >= events) {
        if (!countedAt) countedAt = performance.now();
        if (await caughtUp(src)) break;
        await sleep(20);
      } else {
        await sleep(5);
      }
      if (performance.now() - start > 30 * 60_000) throw new Error('the drain did not finish within 30 min');
    }
    const seconds = (performance.now() - start) / 1000;
    const nodeCpu = process.cpuUsage(node0);
    await stopProfile?.();
    const serverCpu = serverCpuSeconds(pm) - cpu0;
    const jvmCpu = crateCpuSeconds(jvms) - jvm0;
    const flight = meter?.stop();
    await look();
    const byApp = { drainer: 0, sink: 0 };
    for (const [pid, app] of backends) byApp[app === 'pg2crate sink' ? 'sink' : 'drainer'] += processCpuSeconds(pid);
    const stats = { ...runner.drainer!.stats };
    await runner.close();
    await running;

    if (crateUrl) {
      // CrateDB: every table holds as many rows as the source's, and the raw replay beside it.
      for (const t of mixed ? MIXED_TABLES : ['items']) {
        await crateSql(crateUrl, `refresh table "${CRATE_SCHEMA}"."${t}"`);
        const got = Number((await crateSql(crateUrl, `select count(*) from "${CRATE_SCHEMA}"."${t}"`)).rows![0][0]);
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
      const rawSeconds = await replaySeconds(crateUrl, pages, crateTarget!.rawRows, crateTarget!.rawParallel);
      const rawJvmCpu = crateCpuSeconds(jvms) - rawJvm0;
      await checkCopies(crateUrl, CRATE_SCHEMA, replay, replayDigest);
      await dropCopies(crateUrl, CRATE_SCHEMA, replay);
      crate = {
        rawSeconds, drainVsRaw: rawSeconds / seconds, jvmCpuMsPer1k: (jvmCpu * 1e6) / events, rawJvmCpuMsPer1k: (rawJvmCpu * 1e6) / events,
        idleSeconds: flight!.idleSeconds, meanInFlight: flight!.meanInFlight, requests: meter!.requests,
      };
    } else if (mixed) {
      const [want, got] = [await tableDigests(srcUrl), await tableDigests(dstUrl)];
      if (want.join() !== got.join()) throw new Error(`target differs from source: source ${want.join('; ')}, target ${got.join('; ')}`);
    } else {
      const dst = new pg.Client({ connectionString: dstUrl });
      await dst.connect();
      const n = Number((await dst.query<{ n: string }>('select count(*) as n from items')).rows[0].n);
      await dst.end();
      if (n !== events + 1) throw new Error(`target holds ${n} rows, expected ${events + 1}`);
    }
    return {
      crate,
      pageSize, events, backlogSeconds, seconds, eventsPerSecond: events / seconds, countedSeconds: (countedAt - start) / 1000,
      nodeCpuMsPer1k: ((nodeCpu.user + nodeCpu.system) / 1000 / events) * 1000, serverCpuMsPer1k: (serverCpu * 1000 * 1000) / events,
      sourceBackendCpuMsPer1k: (byApp.drainer * 1000 * 1000) / events, targetBackendCpuMsPer1k: (byApp.sink * 1000 * 1000) / events,
      pages: stats.pages, windows: stats.windows, peakRssMiB: peakRss / 2 ** 20, startRssMiB: startRss / 2 ** 20,
    };
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
  const cluster = await startCluster();
  const runs: DrainRun[] = [];
  try {
    const admin = new pg.Client({ connectionString: cluster.url() });
    await admin.connect();
    const pm = await postmasterPid(admin);
    await admin.end();
    for (let r = 1; r <= rounds; r++) {
      for (const ps of pageSizes) {
        const profilePath = args['cpu-prof'] ? `${args['cpu-prof'].replace(/\.cpuprofile$/, '')}-${r}-${ps}.cpuprofile` : undefined;
        const d = await drainOnce(cluster, pm, ps, events, txnRows, workload, crateTarget, profilePath).catch((err: unknown) => {
          process.stderr.write(`server log:\n${clusterLogTail(cluster.url())}\n`);
          throw err;
        });
        runs.push(d);
        note(`  round ${r}/${rounds} page ${String(ps).padStart(6)}: ${fmt(d.eventsPerSecond, 0)} events/s (${fmt(d.seconds, 2)} s; counter reached at ${fmt(d.countedSeconds, 2)} s; ${d.pages} pages, ${d.windows} windows; backlog written in ${fmt(d.backlogSeconds, 1)} s; peak RSS ${fmt(d.peakRssMiB, 0)} MiB, ${fmt(d.startRssMiB, 0)} MiB at start)`);
      }
    }
  } finally {
    await cluster.stop();
  }
  const by = (ps: number) => runs.filter((d) => d.pageSize === ps);
  const figures = pageSizes.map((ps) => ({
    pageSize: ps,
    eventsPerSecond: spread(by(ps).map((d) => d.eventsPerSecond)),
    seconds: spread(by(ps).map((d) => d.seconds)),
    nodeCpuMsPer1k: spread(by(ps).map((d) => d.nodeCpuMsPer1k)),
    serverCpuMsPer1k: spread(by(ps).map((d) => d.serverCpuMsPer1k)),
    sourceBackendCpuMsPer1k: spread(by(ps).map((d) => d.sourceBackendCpuMsPer1k)),
    targetBackendCpuMsPer1k: spread(by(ps).map((d) => d.targetBackendCpuMsPer1k)),
    peakRssMiB: spread(by(ps).map((d) => d.peakRssMiB)),
  }));
  printTable(
    `drain of ${events.toLocaleString('en')} ${mixedTitle(workload, txnRows)} into ${crateUrl ? 'CrateDB' : 'a Postgres target'}, ${rounds} interleaved rounds (min / median / max)`,
    ['page size', 'events/s', 'seconds', 'node CPU ms / 1k events', 'server CPU ms / 1k events', '… of it drainer backend', '… sink backends', 'peak RSS MiB'],
    figures.map((f) => [
      String(f.pageSize), fmtSpread(f.eventsPerSecond, 0), fmtSpread(f.seconds, 2), fmtSpread(f.nodeCpuMsPer1k, 1), fmtSpread(f.serverCpuMsPer1k, 1),
      fmtSpread(f.sourceBackendCpuMsPer1k, 1), fmtSpread(f.targetBackendCpuMsPer1k, 1), fmtSpread(f.peakRssMiB, 0),
    ]),
  );
  note('source, target and replicator share the machine (server CPU covers both databases: one cluster).');
  if (crateTarget) {
    const of = (ps: number, f: (c: CrateFigures, d: DrainRun) => number) => spread(by(ps).map((d) => f(d.crate!, d)));
    printTable(
      `CrateDB: drain${Object.keys(sinkEnv).length > 0 ? ` (${Object.entries(sinkEnv).map(([k, v]) => `${k}=${v}`).join(', ')})` : ''} beside a raw replay of the same coalesced operations (${crateTarget.rawRows} rows per request, ${crateTarget.rawParallel} in flight), same round`,
      ['page size', 'raw events/s', 'drain / raw', 'CrateDB JVM CPU ms / 1k: drain', '… raw', 'nothing in flight, s', '… share of the drain', 'mean requests in flight'],
      pageSizes.map((ps) => [
        String(ps), fmtSpread(of(ps, (c, d) => d.events / c.rawSeconds), 0), fmtSpread(of(ps, (c) => c.drainVsRaw), 2),
        fmtSpread(of(ps, (c) => c.jvmCpuMsPer1k), 1), fmtSpread(of(ps, (c) => c.rawJvmCpuMsPer1k), 1),
        fmtSpread(of(ps, (c) => c.idleSeconds), 2), fmtSpread(of(ps, (c, d) => c.idleSeconds / d.seconds), 2), fmtSpread(of(ps, (c) => c.meanInFlight), 2),
      ]),
    );
  }
  return { settings: { events, rounds, txnRows, pageSizes, workload, target: crateUrl ? 'cratedb' : 'postgres', ...(crateTarget ? { rawRows: crateTarget.rawRows, rawParallel: crateTarget.rawParallel, sink: sinkEnv } : {}) }, figures, runs };
}

function mixedTitle(workload: Workload, txnRows: number): string {
  return workload === 'mixed'
    ? 'events (70% updates, 20% inserts, 10% deletes over 3 tables of 10 columns; transactions of 1,000 events)'
    : `insert events (transactions of ${txnRows.toLocaleString('en')} rows)`;
}
