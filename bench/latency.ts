// Commit-to-applied latency under a steady load, with wake-ups (LISTEN/NOTIFY) and on polling alone,
// interleaved in the same run.
//
// One throwaway cluster, a source and a target database, one captured 5-column table. The
// replicator runs as a child process (this file again, with --replicator: a Runner as `pg2crate
// start` builds it, from the same environment variables). pg2crate has no setting that turns LISTEN
// off (src/config.ts: only scheduled mode, PG2CRATE_CATCHUP_CRON, runs without a listener, and
// that has no standing drainer at all), so the polling-only variant is the same Runner started with
// `run({ listen: false })`, the option `pg2crate backfill` uses: the same drainer, woken only by its
// poll timer (PG2CRATE_POLL_INTERVAL_MS, default 1000 ms; --poll-ms sets it for both variants).
// The triggers still NOTIFY when the drainer has declared itself idle; nobody listens.
//
// Per run: start the replicator, wait until it is caught up, write --warmup s at --rate tx/s (not
// counted), then --seconds s at --rate tx/s: single-row INSERTs, each its own transaction, paced
// open-loop from this process over 4 connections. t0 = when the INSERT's reply (after COMMIT)
// reaches this process; t1 = when the target's notification, sent by a statement trigger on the
// target table at the sink's COMMIT, reaches this process's LISTEN connection. Both on this
// process's monotonic clock: no clocks are compared. Rows whose arrival is still unseen 30 s after
// the last write are looked up in the target: the run fails if one is not there. Then the replicator is stopped (SIGTERM). Variants alternate run by run,
// the order rotating each repetition; percentiles are per run, then min / median / max over runs.
//
// With --target=cratedb (and CRATEDB_URL) the target is CrateDB, and t1 is when the row is visible
// there: when a search (`select id … where id >= ?`, sent every --search-ms, 20) first finds it.
// A search sees a row only after a refresh, so this is commit-to-readable, refresh interval
// included (created tables get 500 ms, PG2CRATE_CRATE_REFRESH_MS: see the README; --refresh-ms=a,b
// runs each variant with the table's refresh_interval set to each value by ALTER TABLE). t1 is
// taken when the search's answer arrives, so it is late by up to one search interval plus the
// search's own time. Beside it, every 10th row is looked up by primary key (a get, which sees a
// write at once) on the same schedule: commit → applied, the part of the latency the refresh is not.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { startCluster } from '../test/helpers/cluster.js';
import { caughtUp, initialLoadsDone } from '../test/helpers/replication.js';
import { crateSql } from './crate-raw.js';
import { fmt, fmtSpread, note, printTable, quantile, sleep, spread, type BenchArgs, type Spread } from './report.js';

export const description = 'commit-to-applied latency at a steady 1,000 tx/s: wake-ups (NOTIFY) vs polling alone, interleaved, p50 / p95 / p99 / max';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const TABLE = `create table public.items (
  id bigint primary key, k integer not null, v text not null, amount numeric(12,2), created timestamptz not null
)`;
// One notification per 500 applied rows (a payload stays far below NOTIFY's 8,000-byte limit).
const ARRIVED = [
  `create function arrived() returns trigger language plpgsql as $$
    declare r record;
    begin
      for r in select string_agg(id::text, ',') as ids from (select id, (row_number() over () - 1) / 500 as g from arrived_rows) s group by g loop
        perform pg_notify('arrived', r.ids);
      end loop;
      return null;
    end $$`,
  `create trigger arrived_i after insert on items referencing new table as arrived_rows for each statement execute function arrived()`,
  `create trigger arrived_u after update on items referencing new table as arrived_rows for each statement execute function arrived()`,
];

type Mode = 'notify' | 'poll';

interface Run {
  mode: Mode;
  /** CrateDB: the table's refresh_interval for this run, when --refresh-ms set one */
  refreshMs: number | null;
  rep: number;
  sent: number;
  rate: number;
  missing: number;
  /** Rows whose arrival notification was not seen although the target holds them. */
  unseenButPresent: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
  mean: number;
  over100ms: number;
  /** CrateDB: commit → applied (found by primary key) of every LOOKUP_EVERY-th row, ms */
  applied?: { p50: number; p99: number; max: number; rows: number };
}

const CRATE_SCHEMA = 'pg2crate_bench_latency';

/**
 * CrateDB: searches for rows not yet seen every `everyMs` and records when each is first found.
 * `waiting` holds the ids written and not yet found.
 */
function searchCrate(url: string, waiting: Set<number>, arrived: Map<number, number>, everyMs: number): { stop(): Promise<void> } {
  let active = true;
  const loop = (async () => {
    while (active) {
      let low = Infinity;
      for (const id of waiting) if (id < low) low = id;
      if (low !== Infinity) {
        const res = await crateSql(url, `select id from "${CRATE_SCHEMA}"."items" where id >= ${low} limit 1000000`);
        const t = performance.now();
        for (const [id] of res.rows ?? []) {
          if (waiting.delete(Number(id))) arrived.set(Number(id), t);
        }
      }
      await sleep(everyMs);
    }
  })();
  return { stop: async () => { active = false; await loop; } };
}

/**
 * CrateDB: when every LOOKUP_EVERY-th row was applied, whatever the refresh: a lookup by primary
 * key with literal values is a get, which sees a write at once (shared/CRATEDB.md), sent every
 * `everyMs` for the sampled rows not yet found. Splits commit → visible into apply and refresh.
 */
const LOOKUP_EVERY = 10;
function lookUpCrate(url: string, unapplied: Set<number>, applied: Map<number, number>, everyMs: number): { stop(): Promise<void> } {
  let active = true;
  const loop = (async () => {
    while (active) {
      const ids = [...unapplied].slice(0, 500);
      if (ids.length > 0) {
        const res = await crateSql(url, `select id from "${CRATE_SCHEMA}"."items" where id in (${ids.join(', ')})`);
        const t = performance.now();
        for (const [id] of res.rows ?? []) {
          if (unapplied.delete(Number(id))) applied.set(Number(id), t);
        }
      }
      await sleep(everyMs);
    }
  })();
  return { stop: async () => { active = false; await loop; } };
}

const children = new Set<ChildProcess>();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });

/** Starts the replicator child; resolves once it logged that it started. */
async function startReplicator(env: Record<string, string>, listen: boolean): Promise<{ stop(): Promise<void>; output(): string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/latency.ts', '--replicator'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'info', ...env, BENCH_LISTEN: listen ? '1' : '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise<number | string>((resolve) => child.once('exit', (c, s) => { children.delete(child); resolve(c ?? s ?? 'unknown'); }));
  const deadline = Date.now() + 60_000;
  while (!out.includes('"replicator started"')) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the replicator exited before it started:\n${out.slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`the replicator did not start within 60 s:\n${out.slice(-3000)}`);
    await sleep(50);
  }
  return {
    output: () => out,
    async stop() {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The child: a Runner from the environment, with or without its listener, until SIGTERM. */
async function replicatorMain(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger(config.logLevel ?? 'info');
  const runner = new Runner(config, logger);
  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping) process.exit(130);
    stopping = true;
    void runner.stop();
  });
  try {
    await runner.run({ listen: process.env.BENCH_LISTEN !== '0' });
  } finally {
    await runner.close();
  }
}

export async function run(args: BenchArgs): Promise<object> {
  const reps = Number(args.reps ?? 3);
  const seconds = Number(args.seconds ?? 60);
  const warmup = Number(args.warmup ?? 5);
  const rate = Number(args.rate ?? 1000);
  const connections = Number(args.connections ?? 4);
  const modes = (args.modes ?? 'notify,poll').split(',') as Mode[];
  // CrateDB: each run with the table's refresh_interval set to each of these (ALTER TABLE before the run)
  const refreshes: (number | null)[] = args['refresh-ms'] ? args['refresh-ms'].split(',').map(Number) : [null];
  const variants = modes.flatMap((mode) => refreshes.map((refreshMs) => ({ mode, refreshMs })));
  const name = (v: { mode: Mode; refreshMs: number | null }) => (v.refreshMs === null ? v.mode : `${v.mode}, refresh ${v.refreshMs} ms`);
  const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', { write: (s: string) => { process.stderr.write(s); } });

  const crateUrl = args.target === 'cratedb' ? (args.url ?? process.env.CRATEDB_URL) : undefined;
  if (args.target === 'cratedb' && !crateUrl) throw new Error('--target=cratedb needs CRATEDB_URL (e.g. CRATEDB_URL=http://127.0.0.1:4200)');
  const searchMs = Number(args['search-ms'] ?? 20);
  const cluster = await startCluster();
  const [srcUrl, dstUrl] = [await cluster.createDatabase('lat_src'), await cluster.createDatabase('lat_dst')];
  const target: Record<string, string> = crateUrl ? { CRATEDB_URL: crateUrl, PG2CRATE_TARGET_SCHEMA: CRATE_SCHEMA } : { TARGET_DATABASE_URL: dstUrl };
  const env: Record<string, string> = { DATABASE_URL: srcUrl, ...target, PG2CRATE_TABLES: 'public.items' };
  if (crateUrl) await crateSql(crateUrl, `drop table if exists "${CRATE_SCHEMA}"."items"`);
  const targetHas = async (): Promise<boolean> => crateUrl
    ? Number((await crateSql(crateUrl, `select count(*) from information_schema.tables where table_schema = '${CRATE_SCHEMA}' and table_name = 'items'`)).rows![0][0]) > 0
    : (await dst.query(`select to_regclass('public.items') as t`)).rows[0].t !== null;
  /** how many of `ids` the target holds */
  const present = async (ids: number[]): Promise<number> => {
    if (ids.length === 0) return 0;
    if (!crateUrl) return Number((await dst.query(`select count(*)::int as n from items where id = any($1::int8[])`, [ids])).rows[0].n);
    await crateSql(crateUrl, `refresh table "${CRATE_SCHEMA}"."items"`);
    return Number((await crateSql(crateUrl, `select count(*) from "${CRATE_SCHEMA}"."items" where id = any([${ids.join(',')}])`)).rows![0][0]);
  };
  if (args['poll-ms']) env.PG2CRATE_POLL_INTERVAL_MS = String(args['poll-ms']);
  const pollMs = loadConfig(env).pollIntervalMs;
  const src = new pg.Pool({ connectionString: srcUrl, max: connections });
  const dst = new pg.Client({ connectionString: dstUrl });
  src.on('error', (err) => process.stderr.write(`bench: source connection failed: ${err.message}\n`));
  dst.on('error', (err) => process.stderr.write(`bench: target connection failed: ${err.message}\n`));
  const runs: Run[] = [];
  let nextId = 1;
  try {
    await dst.connect();
    await src.query(TABLE);
    const setup = new Runner(loadConfig(env), logger);
    await migrate(setup);
    await setup.close();
    // One row through, so that the sink has created the target table; then the arrival trigger on it.
    {
      const r = await startReplicator(env, true);
      await src.query(`insert into items values (0, 0, 'prime', 0, now())`);
      const deadline = Date.now() + 60_000;
      // The initial load too: it would otherwise run in the first measured run.
      while (!(await initialLoadsDone(src)) || !(await caughtUp(src)) || !(await targetHas())) {
        if (Date.now() > deadline) throw new Error(`the replicator did not apply the first row within 60 s:\n${r.output().slice(-3000)}`);
        await sleep(50);
      }
      await r.stop();
    }
    const committed = new Map<number, number>();
    const arrived = new Map<number, number>();
    const waiting = new Set<number>();
    const unapplied = new Set<number>();
    const appliedAt = new Map<number, number>();
    if (crateUrl) {
      const setting = await crateSql(crateUrl, `select settings['refresh_interval'] from information_schema.tables where table_schema = '${CRATE_SCHEMA}' and table_name = 'items'`);
      note(`the table pg2crate created has refresh_interval ${JSON.stringify(setting.rows?.[0]?.[0])} ms`);
    }
    if (!crateUrl) {
      for (const sql of ARRIVED) await dst.query(sql);
      dst.on('notification', (msg) => {
        const t = performance.now();
        if (msg.channel !== 'arrived' || !msg.payload) return;
        for (const id of msg.payload.split(',')) arrived.set(Number(id), t);
      });
      await dst.query('listen arrived');
    }

    /** Writes for `s` seconds at `rate`, open-loop; returns the ids written. */
    const write = async (s: number): Promise<number[]> => {
      const ids: number[] = [];
      let pending = 0;
      let failed: unknown = null;
      const start = performance.now();
      let sent = 0;
      for (;;) {
        const elapsed = (performance.now() - start) / 1000;
        if (elapsed >= s) break;
        const due = Math.floor(elapsed * rate) - sent;
        for (let i = 0; i < due; i++) {
          const id = nextId++;
          ids.push(id);
          if (crateUrl) waiting.add(id);
          if (crateUrl && id % LOOKUP_EVERY === 0) unapplied.add(id);
          pending++;
          src.query(`insert into items values ($1::int8, $1::int4 % 1000, md5($1::text), 1.5, now())`, [id]).then(
            () => { committed.set(id, performance.now()); pending--; },
            (err: unknown) => { failed = err; pending--; },
          );
          sent++;
        }
        await sleep(2);
      }
      while (pending > 0) await sleep(2);
      if (failed) throw failed;
      return ids;
    };

    for (let rep = 1; rep <= reps; rep++) {
      const order = variants.map((_, i) => variants[(i + rep - 1) % variants.length]);
      for (const variant of order) {
        const { mode, refreshMs } = variant;
        if (crateUrl && refreshMs !== null) await crateSql(crateUrl, `alter table "${CRATE_SCHEMA}"."items" set ("refresh_interval" = ${refreshMs})`);
        const r = await startReplicator(env, mode === 'notify');
        const searching = crateUrl ? searchCrate(crateUrl, waiting, arrived, searchMs) : null;
        const looking = crateUrl ? lookUpCrate(crateUrl, unapplied, appliedAt, searchMs) : null;
        try {
          while (!(await caughtUp(src))) await sleep(50);
          await write(warmup);
          const t0 = performance.now();
          const ids = await write(seconds);
          const achieved = ids.length / ((performance.now() - t0) / 1000);
          const deadline = Date.now() + 30_000;
          while (ids.some((id) => !arrived.has(id)) && Date.now() < deadline) await sleep(100);
          const lat = ids.filter((id) => arrived.has(id) && committed.has(id)).map((id) => arrived.get(id)! - committed.get(id)!);
          // A row whose arrival was not seen is looked up in the target: a lost change and a lost
          // measurement are different things.
          const unseen = ids.filter((id) => !arrived.has(id));
          await searching?.stop();
          await looking?.stop();
          const found = await present(unseen);
          if (found < unseen.length) {
            const events = await src.query(
              `select o.id::text, o.gen, o.xid::text, o.op, o.data ->> 'id' as row_id, pg_visible_in_snapshot(o.xid, c.prev_snapshot) as applied,
                      c.low_id::text as low, c.after_id::text as after, c.prev_snapshot::text as prev, c.cur_snapshot::text as cur
                 from pg2crate.outbox o, pg2crate.checkpoint c where (o.data ->> 'id')::int8 = any($1::int8[])`,
              [unseen],
            );
            const letters = await src.query(`select count(*)::int as n from pg2crate.dead_letters`);
            throw new Error(
              `${unseen.length - found} committed row(s) are not in the target 30 s after the last write (ids among ${unseen.slice(0, 20).join(', ')})\n` +
                `their outbox events: ${JSON.stringify(events.rows)}\ndead letters: ${letters.rows[0].n}\n` +
                `replicator warnings: ${r.output().split('\n').filter((l) => /"level":(40|50|60)/.test(l)).slice(-20).join('\n')}`,
            );
          }
          const sampled = ids.filter((id) => appliedAt.has(id) && committed.has(id)).map((id) => appliedAt.get(id)! - committed.get(id)!);
          const run: Run = {
            mode, refreshMs, rep, sent: ids.length, rate: achieved, missing: ids.length - lat.length, unseenButPresent: found,
            p50: quantile(lat, 0.5), p95: quantile(lat, 0.95), p99: quantile(lat, 0.99), max: Math.max(...lat),
            mean: lat.reduce((a, b) => a + b, 0) / lat.length, over100ms: lat.filter((x) => x > 100).length / lat.length,
            ...(crateUrl ? { applied: { p50: quantile(sampled, 0.5), p99: quantile(sampled, 0.99), max: Math.max(...sampled), rows: sampled.length } } : {}),
          };
          runs.push(run);
          const split = run.applied ? `; applied (by key, ${run.applied.rows} rows) p50 ${fmt(run.applied.p50, 1)}, p99 ${fmt(run.applied.p99, 1)}, max ${fmt(run.applied.max, 1)}` : '';
          note(`  rep ${rep}/${reps} ${name(variant).padEnd(6)} ${run.sent} rows at ${fmt(achieved, 0)} tx/s: p50 ${fmt(run.p50, 1)} ms, p95 ${fmt(run.p95, 1)}, p99 ${fmt(run.p99, 1)}, max ${fmt(run.max, 1)}; ${fmt(run.over100ms * 100, 2)} % over 100 ms; arrival not seen ${run.missing} (all ${run.unseenButPresent} of them in the target)${split}`);
          committed.clear();
          arrived.clear();
          waiting.clear();
          unapplied.clear();
          appliedAt.clear();
        } finally {
          await searching?.stop();
          await looking?.stop();
          await r.stop();
        }
      }
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await src.end().catch(() => {});
    await dst.end().catch(() => {});
    await cluster.stop();
  }

  const figures: Record<string, Record<string, Spread>> = {};
  for (const v of variants) {
    const rs = runs.filter((r) => r.mode === v.mode && r.refreshMs === v.refreshMs);
    figures[name(v)] = {
      p50: spread(rs.map((r) => r.p50)), p95: spread(rs.map((r) => r.p95)), p99: spread(rs.map((r) => r.p99)), max: spread(rs.map((r) => r.max)),
      mean: spread(rs.map((r) => r.mean)), rate: spread(rs.map((r) => r.rate)), over100msPct: spread(rs.map((r) => r.over100ms * 100)),
      ...(crateUrl ? { appliedP50: spread(rs.map((r) => r.applied!.p50)), appliedP99: spread(rs.map((r) => r.applied!.p99)) } : {}),
    };
  }
  const label: Record<Mode, string> = { notify: 'wake-ups (LISTEN/NOTIFY)', poll: `polling alone (every ${pollMs} ms)` };
  const labelOf = (v: { mode: Mode; refreshMs: number | null }) => (v.refreshMs === null ? label[v.mode] : `${label[v.mode]}, refresh_interval ${v.refreshMs} ms`);
  printTable(
    `commit → ${crateUrl ? `visible in CrateDB (found by a search every ${searchMs} ms)` : 'applied in a Postgres target'}, ms, at ${rate} single-row tx/s for ${seconds} s per run, ${reps} interleaved repetitions (min / median / max of each run's percentile)`,
    ['mode', 'p50', 'p95', 'p99', 'max', '% over 100 ms', 'tx/s reached', ...(crateUrl ? ['applied (by key, every 10th row): p50', 'p99'] : [])],
    variants.map((v) => {
      const f = figures[name(v)];
      return [labelOf(v), fmtSpread(f.p50, 1), fmtSpread(f.p95, 1), fmtSpread(f.p99, 1), fmtSpread(f.max, 0), fmtSpread(f.over100msPct, 2), fmtSpread(f.rate, 0), ...(crateUrl ? [fmtSpread(f.appliedP50, 1), fmtSpread(f.appliedP99, 1)] : [])];
    }),
  );
  const missing = runs.reduce((a, r) => a + r.missing, 0);
  const goal = crateUrl ? 1500 : 100;
  for (const v of variants.filter((x) => x.mode === 'notify')) {
    const f = figures[name(v)];
    note(`goal p99 ≤ ${goal} ms with wake-ups${v.refreshMs === null ? '' : ` (refresh_interval ${v.refreshMs} ms)`}: ${f.p99.median <= goal ? 'met' : 'NOT met'} (median p99 ${fmt(f.p99.median, 1)} ms)`);
  }
  note(`rows whose arrival was not seen within 30 s of the last write: ${missing} (each found in the target afterwards; a row missing there fails the run)`);
  note('polling alone = the same Runner with run({ listen: false }): pg2crate has no setting that disables LISTEN while draining continuously.');
  return { settings: { reps, seconds, warmup, rate, connections, pollMs, modes, refreshes, target: crateUrl ? 'cratedb' : 'postgres', ...(crateUrl ? { searchMs } : {}) }, figures, missing, runs };
}

if (process.argv.includes('--replicator') && process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  replicatorMain().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`replicator failed: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
