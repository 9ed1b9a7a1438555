// Trigger capture against pgoutput capture, measured alike in one run, rounds interleaved
// (trigger, pgoutput, trigger, pgoutput …) so that drift on the machine hits both modes alike.
// Per round and mode, on one throwaway cluster, each figure on fresh source and target databases:
//   - source TPS: pgbench TPC-B (8 clients, 2 threads, --duration s, scale --scale) with capture on
//     and the replicator running (applying to a Postgres target on the same machine), which is
//     what capture costs the application end to end. pgbench_history has no key: it is captured
//     with configured key columns (aid, mtime) and REPLICA IDENTITY FULL in both modes (it only
//     gets inserts, so FULL writes nothing more to the WAL).
//   - drain rate: --events insert events (transactions of 10,000 rows) written with no replicator
//     running, then a replicator started; the clock runs until everything is applied (trigger: every
//     event in a completed window; pgoutput: the slot confirmed past a mark written after the backlog).
//   - latency: --rate single-row transactions per second for --latency-s seconds from 4 connections,
//     the replicator running. The source row carries clock_timestamp() at insert, a BEFORE trigger on
//     the target stamps clock_timestamp() when the sink writes it; both clocks are the one server's.
//     Commit-to-applied = target stamp − source stamp (the source stamp precedes the commit by the
//     insert's own time, well under a millisecond).
// In pgoutput mode each database is loaded in trigger mode and switched (`switchCapture`), as a user would.
// The source database commits with synchronous_commit on (the cluster's default here is off).
import pg from 'pg';
import { loadConfig, type Config } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { switchCapture } from '../src/commands/switch-capture.js';
import { startCluster, type Cluster } from '../test/helpers/cluster.js';
import { caughtUp } from '../test/helpers/replication.js';
import { slotPassedMark } from '../test/helpers/pgoutput.js';
import { pgBin, runPgbench } from './pgbench.js';
import { fmtSpread, note, printTable, sleep, spread, type BenchArgs } from './report.js';

export const description = 'trigger vs pgoutput capture: pgbench TPS with capture on, drain rate of a 1M-event backlog, commit-to-applied latency at 1,000 tx/s';

type Mode = 'trigger' | 'pgoutput';
const MODES: Mode[] = ['trigger', 'pgoutput'];
const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', { write: (s: string) => { process.stderr.write(s); } });
let dbs = 0;

interface Stage {
  src: pg.Pool;
  srcUrl: string;
  dstUrl: string;
  config: Config;
  mode: Mode;
  slot: string;
  /** true once everything committed before the call is applied */
  caughtUp(mark?: string): Promise<boolean>;
  mark(): Promise<string | undefined>;
  drop(): Promise<void>;
}

/** Fresh databases with `ddl` run in the source, the tables captured and loaded, and switched for pgoutput. */
async function stage(cluster: Cluster, mode: Mode, ddl: (url: string) => Promise<void>, tables: object[]): Promise<Stage> {
  const [srcUrl, dstUrl] = [await cluster.createDatabase('bench_src'), await cluster.createDatabase('bench_dst')];
  // The test cluster commits with synchronous_commit off (WAL flushed every 200 ms by the WAL
  // writer); a walsender decodes only flushed WAL, so that would add up to 200 ms to pgoutput's
  // latency that no production default has. The source commits synchronously here, in both modes.
  const admin = new pg.Client({ connectionString: cluster.url() });
  await admin.connect();
  await admin.query(`alter database "${new URL(srcUrl).pathname.slice(1)}" set synchronous_commit = on`);
  await admin.end();
  await ddl(srcUrl);
  const src = new pg.Pool({ connectionString: srcUrl, max: 4 });
  const slot = `bench_${++dbs}`;
  const base = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_PAGE_SIZE: '5000', PG2CRATE_SLOT: slot, PG2CRATE_POLL_INTERVAL_MS: '1000' };
  const file = { tables };
  const trigger = loadConfig(base, file);
  const prime = new Runner(trigger, logger);
  await migrate(prime);
  const primed = prime.run({ listen: false, schedules: false });
  primed.catch(() => {});
  for (;;) {
    const pending = await src.query<{ n: string }>(`select count(*) as n from pg2crate.backfills where status <> 'done'`);
    if (Number(pending.rows[0].n) === 0 && (await caughtUp(src))) break;
    await sleep(100);
  }
  await prime.close();
  await primed.catch(() => {});
  if (mode === 'pgoutput') {
    const sw = new Runner(trigger, logger);
    await switchCapture(sw, 'pgoutput');
    await sw.close();
  }
  const config = loadConfig({ ...base, PG2CRATE_CAPTURE: mode }, file);
  return {
    src, srcUrl, dstUrl, config, mode, slot,
    async mark() {
      if (mode === 'trigger') return undefined;
      return (await src.query<{ lsn: string }>(`select pg_logical_emit_message(false, 'pg2crate-bench', '')::text as lsn`)).rows[0].lsn;
    },
    async caughtUp(mark) {
      return mode === 'trigger' ? caughtUp(src) : slotPassedMark(src, mark!, slot);
    },
    async drop() {
      await src.end();
      const admin = new pg.Client({ connectionString: cluster.url() });
      await admin.connect();
      await admin.query(`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1 and not active`, [slot]);
      for (const u of [srcUrl, dstUrl]) await admin.query(`drop database if exists "${new URL(u).pathname.slice(1)}" with (force)`);
      await admin.end();
    },
  };
}

async function startRunner(config: Config): Promise<{ runner: Runner; done: Promise<void> }> {
  const runner = new Runner(config, logger);
  const done = runner.run({ schedules: false });
  done.catch((err) => process.stderr.write(`replicator failed: ${String(err)}\n`));
  return { runner, done };
}

async function pgbenchTps(cluster: Cluster, mode: Mode, bin: string, scale: number, duration: number): Promise<number> {
  const s = await stage(cluster, mode, async (url) => {
    await runPgbench(['-i', '-q', '-s', String(scale), url], bin);
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query('alter table pgbench_history replica identity full');
    await c.end();
  }, [
    { name: 'public.pgbench_accounts' }, { name: 'public.pgbench_branches' }, { name: 'public.pgbench_tellers' },
    { name: 'public.pgbench_history', keyColumns: ['aid', 'mtime'] },
  ]);
  const r = await startRunner(s.config);
  try {
    await s.src.query('vacuum analyze pgbench_branches, pgbench_tellers');
    await s.src.query('checkpoint');
    const out = await runPgbench(['-n', '-c', '8', '-j', '2', '-T', String(duration), s.srcUrl], bin);
    const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1]);
    if (!tps) throw new Error(`cannot read pgbench's output:\n${out}`);
    return tps;
  } finally {
    await r.runner.close();
    await r.done.catch(() => {});
    await s.drop();
  }
}

const ITEMS = `create table public.items (id bigint primary key, k integer not null, v text not null, amount numeric(12,2), created timestamptz not null)`;

async function drainRate(cluster: Cluster, mode: Mode, events: number): Promise<number> {
  const s = await stage(cluster, mode, async (url) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(ITEMS);
    await c.end();
  }, [{ name: 'public.items' }]);
  try {
    for (let from = 1; from <= events; from += 10_000) {
      await s.src.query(
        `insert into items select g, g % 1000, md5(g::text), (g % 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 second' from generate_series($1::int8, $2::int8) g`,
        [from, Math.min(events, from + 9_999)],
      );
    }
    if (mode === 'trigger') await s.src.query('analyze pg2crate.outbox');
    await s.src.query('checkpoint');
    const mark = await s.mark();
    const t0 = performance.now();
    const r = await startRunner(s.config);
    try {
      for (;;) {
        if ((r.runner.drainer?.stats.appliedEvents ?? 0) >= events && (await s.caughtUp(mark))) break;
        await sleep(20);
        if (performance.now() - t0 > 30 * 60_000) throw new Error('the drain did not finish within 30 min');
      }
      return events / ((performance.now() - t0) / 1000);
    } finally {
      await r.runner.close();
      await r.done.catch(() => {});
    }
  } finally {
    await s.drop();
  }
}

async function latency(cluster: Cluster, mode: Mode, rate: number, seconds: number): Promise<{ p50: number; p99: number; n: number; achieved: number }> {
  const s = await stage(cluster, mode, async (url) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    await c.query(`create table public.pings (id bigint primary key, sent timestamptz not null default clock_timestamp(), v text)`);
    await c.query(`insert into pings (id, v) values (0, 'prime')`);
    await c.end();
  }, [{ name: 'public.pings' }]);
  const dst = new pg.Client({ connectionString: s.dstUrl });
  await dst.connect();
  const r = await startRunner(s.config);
  const writers = await Promise.all([0, 1, 2, 3].map(async () => { const c = new pg.Client({ connectionString: s.srcUrl }); await c.connect(); return c; }));
  try {
    await dst.query(`alter table pings add column applied timestamptz`);
    await dst.query(`create function stamp() returns trigger language plpgsql as $$ begin new.applied := clock_timestamp(); return new; end $$`);
    await dst.query(`create trigger stamp before insert or update on pings for each row execute function stamp()`);
    const total = rate * seconds;
    const t0 = performance.now();
    let next = 1;
    const loop = async (c: pg.Client) => {
      for (;;) {
        const id = next++;
        if (id > total) return;
        const due = t0 + ((id - 1) * 1000) / rate;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        await c.query(`insert into pings (id, v) values ($1, 'x')`, [id]);
      }
    };
    await Promise.all(writers.map(loop));
    const achieved = total / ((performance.now() - t0) / 1000);
    const mark = await s.mark();
    while (!(await s.caughtUp(mark))) await sleep(50);
    const res = await dst.query<{ p50: number; p99: number; n: string }>(
      `select percentile_cont(0.5) within group (order by ms) as p50, percentile_cont(0.99) within group (order by ms) as p99, count(*) as n
         from (select extract(epoch from applied - sent) * 1000 as ms from pings where id > 0) x`,
    );
    return { p50: Number(res.rows[0].p50), p99: Number(res.rows[0].p99), n: Number(res.rows[0].n), achieved };
  } finally {
    for (const w of writers) await w.end();
    await dst.end();
    await r.runner.close();
    await r.done.catch(() => {});
    await s.drop();
  }
}

export async function run(args: BenchArgs): Promise<object> {
  const rounds = Number(args.rounds ?? 3);
  const duration = Number(args.duration ?? 20);
  const scale = Number(args.scale ?? 10);
  const events = Number(args.events ?? 1_000_000);
  const rate = Number(args.rate ?? 1000);
  const latencySeconds = Number(args['latency-s'] ?? 15);
  const bin = pgBin('pgbench');
  const cluster = await startCluster();
  const runs: Record<Mode, { tps: number[]; drain: number[]; p50: number[]; p99: number[]; achieved: number[] }> = {
    trigger: { tps: [], drain: [], p50: [], p99: [], achieved: [] }, pgoutput: { tps: [], drain: [], p50: [], p99: [], achieved: [] },
  };
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const mode of MODES) {
        const tps = await pgbenchTps(cluster, mode, bin, scale, duration);
        runs[mode].tps.push(tps);
        note(`  round ${round}/${rounds} ${mode.padEnd(8)} pgbench ${tps.toFixed(0)} tps`);
      }
      for (const mode of MODES) {
        const d = await drainRate(cluster, mode, events);
        runs[mode].drain.push(d);
        note(`  round ${round}/${rounds} ${mode.padEnd(8)} drain ${d.toFixed(0)} events/s`);
      }
      for (const mode of MODES) {
        const l = await latency(cluster, mode, rate, latencySeconds);
        runs[mode].p50.push(l.p50);
        runs[mode].p99.push(l.p99);
        runs[mode].achieved.push(l.achieved);
        note(`  round ${round}/${rounds} ${mode.padEnd(8)} latency p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms (${l.n} tx at ${l.achieved.toFixed(0)} tx/s)`);
      }
    }
  } finally {
    await cluster.stop();
  }
  const figures = Object.fromEntries(MODES.map((m) => [m, {
    tps: spread(runs[m].tps), drainEventsPerSecond: spread(runs[m].drain), latencyP50Ms: spread(runs[m].p50), latencyP99Ms: spread(runs[m].p99), achievedTxPerSecond: spread(runs[m].achieved),
  }]));
  printTable(
    `trigger vs pgoutput capture, ${rounds} interleaved rounds (min / median / max); pgbench ${duration} s × 8 clients scale ${scale}; drain of ${events.toLocaleString('en')} events; latency at ${rate} tx/s for ${latencySeconds} s`,
    ['mode', 'pgbench TPS (capture on)', 'drain events/s', 'latency p50 ms', 'latency p99 ms'],
    MODES.map((m) => [m, fmtSpread(figures[m].tps, 0), fmtSpread(figures[m].drainEventsPerSecond, 0), fmtSpread(figures[m].latencyP50Ms, 1), fmtSpread(figures[m].latencyP99Ms, 1)]),
  );
  note('source, replicator and target share the machine (one cluster, 2 cores): the replicator runs during pgbench and the latency runs.');
  return { settings: { rounds, duration, scale, events, rate, latencySeconds }, figures, runs };
}
