// Outbox size under a steady write rate with retention on.
//
// One throwaway cluster, a captured table, a Runner draining into a Postgres target with retention
// scheduled every --retention-every seconds (cron with seconds) and the generation rotated at
// --rotate-kb. Writers run --tps single-row transactions per second (inserts and updates) for
// --minutes; every 10 s the outbox's total size (its three partitions, indexes included), the
// backlog and the rotation count are sampled. Reported: size over time, its maximum after the
// first minute, and whether the target equals the source at the end.
import pg from 'pg';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { status } from '../src/commands/status.js';
import { startCluster } from '../test/helpers/cluster.js';
import { caughtUp } from '../test/helpers/replication.js';
import { fmt, note, printTable, sleep, type BenchArgs } from './report.js';

export const description = 'outbox size over a 10-minute run at 1,000 tx/s with retention on';

const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', { write: (s: string) => { process.stderr.write(s); } });

export async function run(args: BenchArgs): Promise<object> {
  const minutes = Number(args.minutes ?? 10);
  const tps = Number(args.tps ?? 1000);
  const rotateKb = Number(args['rotate-kb'] ?? 8192);
  const every = Number(args['retention-every'] ?? 10);
  const cluster = await startCluster();
  const [srcUrl, dstUrl] = [await cluster.createDatabase('ret_src'), await cluster.createDatabase('ret_dst')];
  const src = new pg.Pool({ connectionString: srcUrl, max: 10 });
  src.on('error', (err) => note(`idle source connection failed: ${err.message}`));
  const samples: { at: number; outboxBytes: number; backlog: number; gen: number }[] = [];
  let committed = 0;
  try {
    await src.query(`create table public.events (id bigint primary key, n integer not null, payload text not null, at timestamptz not null)`);
    const config = loadConfig({
      DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.events',
      PG2CRATE_RETENTION_CRON: `*/${every} * * * * *`, PG2CRATE_RETENTION_ROTATE_KB: String(rotateKb),
    });
    const runner = new Runner(config, logger);
    await migrate(runner);
    const running = runner.run();
    running.catch(() => {});
    const end = Date.now() + minutes * 60_000;
    const start = Date.now();
    // 8 writers share the rate; each waits for its next slot, so the rate holds when the server keeps up.
    const writers = Array.from({ length: 8 }, async (_, w) => {
      let i = 0;
      const interval = 8000 / tps;
      let next = performance.now();
      while (Date.now() < end) {
        const id = w * 1_000_000_000 + (i % 50_000);
        await src.query(
          `insert into events values ($1, 1, repeat('x', 100), now()) on conflict (id) do update set n = events.n + 1, at = now()`,
          [id],
        );
        committed++;
        i++;
        next += interval;
        const wait = next - performance.now();
        if (wait > 0) await sleep(wait);
      }
    });
    const sampler = (async () => {
      while (Date.now() < end) {
        await sleep(10_000);
        const st = await status(runner);
        const gen = (await src.query<{ gen: number }>('select gen from pg2crate.state')).rows[0].gen;
        samples.push({ at: Math.round((Date.now() - start) / 1000), outboxBytes: st.outboxBytes, backlog: st.backlogEvents, gen });
        note(`t=${samples.at(-1)!.at}s outbox ${fmt(st.outboxBytes / 1024 / 1024)} MB, backlog ${st.backlogEvents}, generation ${gen}, ${fmt(committed / ((Date.now() - start) / 1000))} tx/s`);
      }
    })();
    await Promise.all([...writers, sampler]);
    const seconds = (Date.now() - start) / 1000;
    for (let i = 0; i < 600 && !(await caughtUp(src)); i++) await sleep(100);
    await runner.close();
    await running;
    const dst = new pg.Client({ connectionString: dstUrl });
    await dst.connect();
    const a = (await src.query(`select md5(string_agg(id || ':' || n, ',' order by id)) as h, count(*) as c from events`)).rows[0];
    const b = (await dst.query(`select md5(string_agg(id || ':' || n, ',' order by id)) as h, count(*) as c from events`)).rows[0];
    await dst.end();
    const steady = samples.filter((s) => s.at > 60).map((s) => s.outboxBytes);
    const rotations = new Set(samples.map((s) => s.gen)).size;
    printTable(`outbox size, ${minutes} min at ${tps} tx/s target (achieved ${fmt(committed / seconds)} tx/s), rotate at ${rotateKb} kB, retention every ${every} s`, ['t (s)', 'outbox MB', 'backlog events', 'generation'],
      samples.map((s) => [String(s.at), fmt(s.outboxBytes / 1024 / 1024), String(s.backlog), String(s.gen)]));
    note(`max outbox size after the first minute: ${fmt(Math.max(...steady) / 1024 / 1024)} MB; generations seen: ${rotations}; transactions: ${committed}; target equals source: ${a.h === b.h && a.c === b.c}`);
    return { minutes, tps, achievedTps: committed / seconds, rotateKb, every, samples, targetEqualsSource: a.h === b.h && a.c === b.c };
  } finally {
    await src.end();
    await cluster.stop();
  }
}
