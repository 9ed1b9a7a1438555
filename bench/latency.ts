// Wake-up latency at idle: how long a single-row commit takes to become visible in the target when
// the replicator is idle and only NOTIFY can wake it (poll interval --poll-ms, default 5 s, so a
// missed wake-up shows as a multi-second outlier instead of hiding behind a fast poll).
//
// Source and target are databases of one throwaway cluster; the replicator runs in this process.
// The target table (created by the sink) gets a row trigger that NOTIFYs `arrived` with the id; a
// separate client LISTENs on the target. Per sample: wait a random 100–300 ms (the drainer goes
// idle), INSERT one row in its own transaction; t0 = when the INSERT's reply (after COMMIT) reaches
// the client, t1 = when the target's notification (sent at the sink's COMMIT) arrives. Both times
// are taken on this process's monotonic clock, so no clocks are compared. t1 - t0 is the figure.
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { Runner } from '../src/runner.js';
import { startCluster } from '../test/helpers/cluster.js';
import { caughtUp } from '../test/helpers/replication.js';
import { fmt, note, printTable, quantile, sleep, type BenchArgs } from './report.js';

export const description = 'wake-up latency at idle: commit in the source to visible in a Postgres target, p50 / p99 / max';

const TABLE = `create table public.items (
  id bigint primary key, k integer not null, v text not null, amount numeric(12,2), created timestamptz not null
)`;

interface Sample {
  id: number;
  /** ms from the INSERT's reply to the target's notification */
  commitToVisible: number;
  /** ms from sending the INSERT to the target's notification */
  sendToVisible: number;
  drainerState: string;
}

export async function run(args: BenchArgs): Promise<object> {
  const samples = Number(args.samples ?? 200);
  const warmup = Number(args.warmup ?? 10);
  const pollMs = Number(args['poll-ms'] ?? 5000);
  const minGap = Number(args['min-gap-ms'] ?? 100);
  const maxGap = Number(args['max-gap-ms'] ?? 300);
  const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', { write: (s: string) => { process.stderr.write(s); } });

  const cluster = await startCluster();
  const [srcUrl, dstUrl] = [await cluster.createDatabase('lat_src'), await cluster.createDatabase('lat_dst')];
  const src = new pg.Client({ connectionString: srcUrl });
  const dst = new pg.Client({ connectionString: dstUrl });
  const runner = new Runner(loadConfig({
    DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.items', PG2CRATE_POLL_INTERVAL_MS: String(pollMs),
  }), logger);
  let running: Promise<void> | null = null;
  const results: Sample[] = [];
  let missed = 0;
  for (const c of [src, dst]) c.on('error', (err) => process.stderr.write(`bench: connection failed: ${err.message}\n`));
  try {
    await src.connect();
    await dst.connect();
    await src.query(TABLE);
    await runner.migrate();
    running = runner.run();
    running.catch(() => {});
    // One row through, so that the sink has created the target table; then the arrival trigger on it.
    await src.query(`insert into items values (0, 0, 'prime', 0, now())`);
    const deadline = Date.now() + 60_000;
    while (!(await caughtUp(src)) || (await dst.query(`select to_regclass('public.items') as t`)).rows[0].t === null) {
      if (Date.now() > deadline) throw new Error('the replicator did not apply the first row within 60 s');
      await sleep(50);
    }
    await dst.query(`create function arrived() returns trigger language plpgsql as $$
      begin perform pg_notify('arrived', new.id::text); return null; end $$`);
    await dst.query(`create trigger arrived after insert or update on items for each row execute function arrived()`);

    const waiting = new Map<number, (t: number) => void>();
    dst.on('notification', (msg) => {
      const t = performance.now();
      if (msg.channel !== 'arrived') return;
      waiting.get(Number(msg.payload))?.(t);
    });
    await dst.query('listen arrived');

    for (let i = 1; i <= warmup + samples; i++) {
      await sleep(minGap + Math.random() * (maxGap - minGap));
      const drainerState = runner.drainer?.stats.state ?? 'none';
      let timer: NodeJS.Timeout | undefined;
      const arrival = new Promise<number | null>((resolve) => {
        waiting.set(i, resolve);
        timer = setTimeout(() => resolve(null), pollMs * 3 + 10_000);
      });
      const sent = performance.now();
      await src.query(`insert into items values ($1::int8, $1::int4, md5($1::text), 1.5, now())`, [i]);
      const committed = performance.now();
      const arrived = await arrival;
      clearTimeout(timer);
      waiting.delete(i);
      if (arrived === null) {
        missed++;
        continue;
      }
      if (i > warmup) results.push({ id: i, commitToVisible: arrived - committed, sendToVisible: arrived - sent, drainerState });
    }
  } finally {
    await runner.close();
    await running?.catch(() => {});
    await src.end().catch(() => {});
    await dst.end().catch(() => {});
    await cluster.stop();
  }

  const lat = results.map((s) => s.commitToVisible);
  const send = results.map((s) => s.sendToVisible);
  const summary = (xs: number[]) => ({
    p50: quantile(xs, 0.5), p90: quantile(xs, 0.9), p99: quantile(xs, 0.99), max: Math.max(...xs), mean: xs.reduce((a, b) => a + b, 0) / xs.length,
  });
  const figures = { commitToVisibleMs: summary(lat), sendToVisibleMs: summary(send) };
  const slow = results.filter((s) => s.commitToVisible > 1000).length;
  const states: Record<string, number> = {};
  for (const s of results) states[s.drainerState] = (states[s.drainerState] ?? 0) + 1;
  printTable(
    `wake-up latency at idle: ${results.length} single-row commits ${minGap}–${maxGap} ms apart, poll interval ${pollMs} ms (NOTIFY is the only fast path)`,
    ['ms', 'p50', 'p90', 'p99', 'max', 'mean'],
    [
      ['commit → visible in target', ...Object.values(figures.commitToVisibleMs).map((x) => fmt(x, 2))],
      ['send INSERT → visible', ...Object.values(figures.sendToVisibleMs).map((x) => fmt(x, 2))],
    ],
  );
  note(`samples slower than 1 s (woken by the poll, not by NOTIFY): ${slow}; never arrived within ${pollMs * 3 + 10_000} ms: ${missed}; drainer state when each row was written: ${JSON.stringify(states)}`);
  return { settings: { samples, warmup, pollMs, minGap, maxGap }, figures, slowOver1s: slow, missed, drainerStates: states, samples: results };
}
