// Drain rate: how fast a backlog of --events events reaches a Postgres target.
//
// Per run, on one throwaway cluster: fresh source and target databases, a 5-column table captured
// while empty, one short replicator run so that its (empty) initial load is done and the target
// table exists, then the backlog written with no replicator running (transactions of --txn-rows
// rows), ANALYZE of the outbox (what autovacuum would have done by then), CHECKPOINT. Then a Runner
// starts in this process (as `pg2crate start` would, listener and all) and the clock runs until
// caughtUp() (every event lies in a completed window), checked cheaply via the drainer's counters
// first. Page sizes (--pages, default 1000,5000,20000) are interleaved round by round.
// Reported: events/s, plus the CPU of this process (drainer + sink) and of the server per 1k events.
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { Runner } from '../src/runner.js';
import { startCluster, type Cluster } from '../test/helpers/cluster.js';
import { caughtUp } from '../test/helpers/replication.js';
import { fmt, fmtSpread, note, printTable, sleep, spread, type BenchArgs } from './report.js';
import { clusterLogTail, postmasterPid, serverCpuSeconds } from './server-cpu.js';

export const description = 'drain rate: a backlog of 1M events into a Postgres target, by page size';

const TABLE = `create table public.items (
  id bigint primary key, k integer not null, v text not null, amount numeric(12,2), created timestamptz not null
)`;

interface DrainRun {
  pageSize: number;
  events: number;
  backlogSeconds: number;
  seconds: number;
  eventsPerSecond: number;
  /** when the drainer's own counter reached the backlog (the rest is the caughtUp() check) */
  countedSeconds: number;
  nodeCpuMsPer1k: number;
  serverCpuMsPer1k: number;
  pages: number;
  windows: number;
}

const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', { write: (s: string) => { process.stderr.write(s); } });

async function drainOnce(cluster: Cluster, pm: number, pageSize: number, events: number, txnRows: number): Promise<DrainRun> {
  const [srcUrl, dstUrl] = [await cluster.createDatabase('drain_src'), await cluster.createDatabase('drain_dst')];
  const src = new pg.Pool({ connectionString: srcUrl, max: 2 });
  // An idle connection that the server ends must not crash the benchmark; say so and go on.
  src.on('error', (err) => process.stderr.write(`bench: idle source connection failed: ${err.message}; server log:\n${clusterLogTail(cluster.url(), 15)}\n`));
  const config = loadConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.items', PG2CRATE_PAGE_SIZE: String(pageSize) });
  try {
    await src.query(TABLE);
    // Capture while empty; one short run finishes the (empty) initial load and creates the target table.
    const prime = new Runner(config, logger);
    await prime.migrate();
    const primed = prime.run();
    primed.catch(() => {});
    await src.query(`insert into items values (0, 0, 'prime', 0, now())`);
    for (;;) {
      const pending = await src.query<{ n: string }>(`select count(*) as n from pg2crate.backfills where status <> 'done'`).catch(() => ({ rows: [{ n: '0' }] }));
      if (Number(pending.rows[0].n) === 0 && (await caughtUp(src))) break;
      await sleep(50);
    }
    await prime.close();
    await primed;

    // The backlog, written with nobody draining.
    const t0 = performance.now();
    for (let from = 1; from <= events; from += txnRows) {
      const to = Math.min(events, from + txnRows - 1);
      await src.query(
        `insert into items select g, g % 1000, md5(g::text), (g % 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 second' from generate_series($1::int8, $2::int8) g`,
        [from, to],
      );
    }
    const backlogSeconds = (performance.now() - t0) / 1000;
    await src.query('analyze pg2crate.outbox');
    await src.query('checkpoint');
    await sleep(300);

    const runner = new Runner(config, logger);
    const cpu0 = serverCpuSeconds(pm);
    const node0 = process.cpuUsage();
    const start = performance.now();
    const running = runner.run();
    running.catch(() => {});
    let countedAt = 0;
    for (;;) {
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
    const serverCpu = serverCpuSeconds(pm) - cpu0;
    const stats = { ...runner.drainer!.stats };
    await runner.close();
    await running;

    const dst = new pg.Client({ connectionString: dstUrl });
    await dst.connect();
    const n = Number((await dst.query<{ n: string }>('select count(*) as n from items')).rows[0].n);
    await dst.end();
    if (n !== events + 1) throw new Error(`target holds ${n} rows, expected ${events + 1}`);
    return {
      pageSize, events, backlogSeconds, seconds, eventsPerSecond: events / seconds, countedSeconds: (countedAt - start) / 1000,
      nodeCpuMsPer1k: ((nodeCpu.user + nodeCpu.system) / 1000 / events) * 1000, serverCpuMsPer1k: (serverCpu * 1000 * 1000) / events,
      pages: stats.pages, windows: stats.windows,
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
  const cluster = await startCluster();
  const runs: DrainRun[] = [];
  try {
    const admin = new pg.Client({ connectionString: cluster.url() });
    await admin.connect();
    const pm = await postmasterPid(admin);
    await admin.end();
    for (let r = 1; r <= rounds; r++) {
      for (const ps of pageSizes) {
        const d = await drainOnce(cluster, pm, ps, events, txnRows).catch((err: unknown) => {
          process.stderr.write(`server log:\n${clusterLogTail(cluster.url())}\n`);
          throw err;
        });
        runs.push(d);
        note(`  round ${r}/${rounds} page ${String(ps).padStart(6)}: ${fmt(d.eventsPerSecond, 0)} events/s (${fmt(d.seconds, 2)} s; counter reached at ${fmt(d.countedSeconds, 2)} s; ${d.pages} pages, ${d.windows} windows; backlog written in ${fmt(d.backlogSeconds, 1)} s)`);
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
  }));
  printTable(
    `drain of ${events.toLocaleString('en')} insert events (transactions of ${txnRows.toLocaleString('en')} rows) into a Postgres target, ${rounds} interleaved rounds (min / median / max)`,
    ['page size', 'events/s', 'seconds', 'node CPU ms / 1k events', 'server CPU ms / 1k events'],
    figures.map((f) => [String(f.pageSize), fmtSpread(f.eventsPerSecond, 0), fmtSpread(f.seconds, 2), fmtSpread(f.nodeCpuMsPer1k, 1), fmtSpread(f.serverCpuMsPer1k, 1)]),
  );
  note('source, target and replicator share the machine (server CPU covers both databases: one cluster).');
  return { settings: { events, rounds, txnRows, pageSizes }, figures, runs };
}
