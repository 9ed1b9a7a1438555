// Catch-up after downtime: pg2crate is stopped while the application writes --minutes minutes at
// --rate transactions/s, then `pg2crate catch-up` runs as a child process (the cron user's path:
// `node --import tsx src/cli.ts catch-up`, as test/helpers/child-replicator.ts starts it) into a
// Postgres target and exits once everything committed before it started is applied.
//
// Per repetition, on one throwaway cluster: fresh source and target databases; three mixed-type
// tables (a bigint key with numeric and timestamptz; a bigint key with jsonb, boolean, float8 and
// date; a two-column key with numeric(38,10), timestamp, text[] and bytea), --rows rows each,
// captured and loaded by a short in-process replicator run, which then stops. Then the writes:
// pgbench at a fixed rate (-R, --clients clients), six one-statement scripts, single-row UPDATEs of
// existing rows (65 %) and single-row INSERTs (35 %) spread over the three tables, each statement its
// own transaction. Then `catch-up`:
//   time to zero lag  from spawning the process to its exit (node and tsx start-up included), and
//                     from its "replicator started" log line to its exit (the drain alone);
//   events/s          backlog events (outbox rows written during the writes) / drain seconds;
//   peak RSS          the child's VmHWM from /proc, read every 50 ms while it runs.
// Then the check: every event lies in a completed window, and each table has the same row count and
// the same digest (md5 over the rows' text in key order, both sessions in UTC) in source and target.
// Also measured once before the first repetition: a catch-up with nothing to do (start-up cost).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { startCluster, type Cluster } from '../test/helpers/cluster.js';
import { killReplicators, memoryOf, spawnReplicator } from '../test/helpers/child-replicator.js';
import { caughtUp } from '../test/helpers/replication.js';
import { pgbenchSummary, runPgbench } from './pgbench.js';
import { fmt, fmtSpread, note, printTable, sleep, spread, type BenchArgs } from './report.js';
import { clusterLogTail, postmasterPid, serverCpuSeconds } from './server-cpu.js';

export const description = 'catch-up after downtime: 5 min of writes at 1,000 tx/s with pg2crate stopped, then `pg2crate catch-up` into a Postgres target: time to zero lag, events/s, peak RSS';

const TABLES = ['public.items', 'public.docs', 'public.ledger'];

const schemaSql = (rows: number) => [
  `create sequence items_seq start ${rows + 1}`,
  `create table items (
    id bigint primary key default nextval('items_seq'), k integer not null, v text not null, amount numeric(12,2), updated timestamptz not null
  )`,
  `insert into items select g, g % 1000, md5(g::text), (g % 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 second' from generate_series(1, ${rows}) g`,
  `create sequence docs_seq start ${rows + 1}`,
  `create table docs (
    id bigint primary key default nextval('docs_seq'), doc jsonb not null, flag boolean not null, ratio double precision, day date
  )`,
  `insert into docs select g, jsonb_build_object('n', g, 's', md5(g::text), 'a', jsonb_build_array(g, 'x', null)), g % 2 = 0, g / 7.0, date '2024-01-01' + (g % 365)
    from generate_series(1, ${rows}) g`,
  `create sequence ledger_seq start ${rows + 1}`,
  `create table ledger (
    account integer not null, seq bigint not null, amount numeric(38,10) not null, at timestamp(6) not null, tags text[], payload bytea,
    primary key (account, seq)
  )`,
  `insert into ledger select g % 100 + 1, g, g / 3.0, timestamp '2024-01-01 00:00:00.123456' + g * interval '1 ms', array['t' || (g % 7), 'u'], decode(md5(g::text), 'hex')
    from generate_series(1, ${rows}) g`,
];

/** The write mix: pgbench scripts (one statement, so one transaction each) and their weights. */
const scripts = (rows: number): Record<string, { weight: number; sql: string }> => ({
  'items-update': { weight: 25, sql: `\\set id random(1, ${rows})\nupdate items set k = k + 1, amount = amount + 0.01, updated = now() where id = :id;\n` },
  'items-insert': { weight: 15, sql: `\\set k random(1, 1000)\ninsert into items (k, v, amount, updated) values (:k, md5(:k::text || clock_timestamp()::text), :k / 7.0, now());\n` },
  'docs-update': { weight: 20, sql: `\\set id random(1, ${rows})\nupdate docs set doc = jsonb_set(doc, '{n}', to_jsonb(clock_timestamp()::text)), flag = not flag, ratio = random() where id = :id;\n` },
  'docs-insert': { weight: 10, sql: `\\set n random(1, 1000000)\ninsert into docs (doc, flag, ratio, day) values (jsonb_build_object('n', :n, 'new', true), :n % 2 = 0, :n / 3.0, current_date);\n` },
  'ledger-update': { weight: 20, sql: `\\set s random(1, ${rows})\nupdate ledger set amount = amount + 0.0000000001, at = localtimestamp, tags = array[:s::text, 'v'] where account = :s % 100 + 1 and seq = :s;\n` },
  'ledger-insert': { weight: 10, sql: `\\set a random(1, 100)\ninsert into ledger values (:a, nextval('ledger_seq'), :a / 9.0, localtimestamp, array['n'], decode(md5(:a::text), 'hex'));\n` },
});

const KEYS: Record<string, string> = { items: 'id', docs: 'id', ledger: 'account, seq' };

async function digest(db: pg.Client, table: string): Promise<{ n: number; md5: string }> {
  const cols = (await db.query<{ c: string }>(
    `select string_agg(quote_ident(attname), ', ' order by attnum) as c from pg_attribute where attrelid = $1::regclass and attnum > 0 and not attisdropped`, [table],
  )).rows[0].c;
  const r = await db.query<{ n: string; md5: string }>(
    `select count(*) as n, md5(coalesce(string_agg(md5(t::text), '' order by ${KEYS[table]}), '')) as md5 from (select ${cols} from ${table}) t`,
  );
  return { n: Number(r.rows[0].n), md5: r.rows[0].md5 };
}

interface CatchUpRun {
  writeSeconds: number;
  writeTps: number;
  writeTxns: number;
  events: number;
  totalSeconds: number;
  drainSeconds: number;
  eventsPerSecond: number;
  peakRssMB: number;
  serverCpuMsPer1k: number;
  applied: number;
  equal: boolean;
  tables: Record<string, { source: number; target: number; digestEqual: boolean }>;
}

const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', { write: (s: string) => { process.stderr.write(s); } });

/** Spawns `pg2crate catch-up`, follows its memory, and returns when it exits. */
async function catchUp(env: Record<string, string>, timeoutMs: number): Promise<{ totalSeconds: number; drainSeconds: number; peakRss: number; applied: number; log: string }> {
  const t0 = performance.now();
  const child = spawnReplicator({ ...env, LOG_LEVEL: 'info' }, ['catch-up', '--json'], 'catch-up');
  let peak = 0;
  let startedAt: number | null = null;
  let exit: number | string | null = null;
  void child.exited.then((c) => { exit = c; });
  while (exit === null) {
    const m = memoryOf(child.pid);
    if (m && Number.isFinite(m.peak)) peak = Math.max(peak, m.peak);
    if (startedAt === null && child.log().includes('"replicator started"')) startedAt = performance.now();
    if (performance.now() - t0 > timeoutMs) {
      await child.killHard();
      throw new Error(`catch-up did not finish within ${timeoutMs / 1000} s; log:\n${child.log().slice(-3000)}`);
    }
    await sleep(50);
  }
  const end = performance.now();
  const log = child.log();
  if (exit !== 0) throw new Error(`catch-up exited ${exit}; log:\n${log.slice(-3000)}`);
  // The log line's own timestamp is more exact than our 50 ms polling of the file.
  const startedLine = log.split('\n').find((l) => l.includes('"replicator started"'));
  const startedEpoch = startedLine ? Number(/"time":(\d+)/.exec(startedLine)?.[1]) : NaN;
  // the result (stdout, --json) shares the file with the log lines (stderr): the one line that is not a log line
  const applied = Number(/^\{"appliedEvents":(\d+)\}$/m.exec(log)?.[1] ?? NaN);
  const drainSeconds = Number.isFinite(startedEpoch)
    ? (Date.now() - (performance.now() - end) - startedEpoch) / 1000
    : (end - (startedAt ?? t0)) / 1000;
  return { totalSeconds: (end - t0) / 1000, drainSeconds, peakRss: peak, applied, log };
}

async function once(cluster: Cluster, pm: number, opts: { rows: number; rate: number; seconds: number; clients: number; scriptDir: string; rep: number }): Promise<CatchUpRun> {
  const [srcUrl, dstUrl] = [await cluster.createDatabase('cu_src'), await cluster.createDatabase('cu_dst')];
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: TABLES.join(',') };
  const src = new pg.Client({ connectionString: srcUrl });
  const dst = new pg.Client({ connectionString: dstUrl });
  for (const c of [src, dst]) c.on('error', (err) => process.stderr.write(`bench: connection failed: ${err.message}\n`));
  try {
    await src.connect();
    await dst.connect();
    for (const sql of schemaSql(opts.rows)) await src.query(sql);
    // Capture and the initial load, then stop: the replicator is down from here on.
    const prime = new Runner(loadConfig(env), logger);
    await migrate(prime);
    const primed = prime.run();
    primed.catch(() => {});
    const deadline = Date.now() + 5 * 60_000;
    for (;;) {
      const pending = await src.query<{ n: string }>(`select count(*) as n from pg2crate.backfills where status <> 'done'`).catch(() => ({ rows: [{ n: '1' }] }));
      if (Number(pending.rows[0].n) === 0 && (await caughtUp(src))) break;
      if (Date.now() > deadline) throw new Error('the initial load did not finish within 5 min');
      await sleep(100);
    }
    await prime.close();
    await primed;
    const before = Number((await src.query<{ n: string }>('select count(*) as n from pg2crate.outbox')).rows[0].n);

    note(`  rep ${opts.rep}: writing ${opts.seconds} s at ${opts.rate} tx/s with pg2crate stopped …`);
    const files = Object.entries(scripts(opts.rows)).map(([name, s]) => `${join(opts.scriptDir, `${name}.sql`)}@${s.weight}`);
    const t0 = performance.now();
    const out = await runPgbench(['-n', '-R', String(opts.rate), '-T', String(opts.seconds), '-c', String(opts.clients), '-j', String(Math.min(opts.clients, 2)), ...files.flatMap((f) => ['-f', f]), srcUrl]);
    const writeSeconds = (performance.now() - t0) / 1000;
    const { txns, tps } = pgbenchSummary(out);
    const events = Number((await src.query<{ n: string }>('select count(*) as n from pg2crate.outbox')).rows[0].n) - before;
    await sleep(1000);

    const cpu0 = serverCpuSeconds(pm);
    const cu = await catchUp(env, 30 * 60_000);
    const serverCpu = serverCpuSeconds(pm) - cpu0;

    const zeroLag = await caughtUp(src);
    await src.query(`set timezone = 'UTC'`);
    await dst.query(`set timezone = 'UTC'`);
    const tables: CatchUpRun['tables'] = {};
    let equal = zeroLag;
    for (const t of Object.keys(KEYS)) {
      const [a, b] = [await digest(src, t), await digest(dst, t)];
      tables[t] = { source: a.n, target: b.n, digestEqual: a.md5 === b.md5 };
      if (a.n !== b.n || a.md5 !== b.md5) equal = false;
    }
    return {
      writeSeconds, writeTps: tps, writeTxns: txns, events, totalSeconds: cu.totalSeconds, drainSeconds: cu.drainSeconds,
      eventsPerSecond: events / cu.drainSeconds, peakRssMB: cu.peakRss / 1048576, serverCpuMsPer1k: (serverCpu * 1e6) / Math.max(events, 1),
      applied: cu.applied, equal, tables,
    };
  } finally {
    await src.end().catch(() => {});
    await dst.end().catch(() => {});
    const admin = new pg.Client({ connectionString: cluster.url() });
    await admin.connect();
    for (const u of [srcUrl, dstUrl]) await admin.query(`drop database if exists "${new URL(u).pathname.slice(1)}" with (force)`);
    await admin.end();
  }
}

export async function run(args: BenchArgs): Promise<object> {
  const minutes = Number(args.minutes ?? 5);
  const reps = Number(args.reps ?? 3);
  const rate = Number(args.rate ?? 1000);
  const rows = Number(args.rows ?? 20_000);
  const clients = Number(args.clients ?? 4);
  const seconds = Math.max(1, Math.round(minutes * 60));
  const scriptDir = mkdtempSync(join(tmpdir(), 'pg2crate-catchup-'));
  for (const [name, s] of Object.entries(scripts(rows))) writeFileSync(join(scriptDir, `${name}.sql`), s.sql);
  const cluster = await startCluster();
  const runs: CatchUpRun[] = [];
  let empty: { totalSeconds: number; peakRssMB: number } | null = null;
  try {
    const admin = new pg.Client({ connectionString: cluster.url() });
    await admin.connect();
    const pm = await postmasterPid(admin);
    await admin.end();
    {
      // Start-up cost: a catch-up with nothing to apply (captured, loaded, no writes since).
      const [srcUrl, dstUrl] = [await cluster.createDatabase('cu0_src'), await cluster.createDatabase('cu0_dst')];
      const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: TABLES.join(',') };
      const src = new pg.Client({ connectionString: srcUrl });
      await src.connect();
      for (const sql of schemaSql(10)) await src.query(sql);
      const prime = new Runner(loadConfig(env), logger);
      await migrate(prime);
      const primed = prime.run();
      primed.catch(() => {});
      while ((await src.query<{ n: string }>(`select count(*) as n from pg2crate.backfills where status <> 'done'`)).rows[0].n !== '0' || !(await caughtUp(src))) await sleep(100);
      await prime.close();
      await primed;
      await src.end();
      const cu = await catchUp(env, 120_000);
      empty = { totalSeconds: cu.totalSeconds, peakRssMB: cu.peakRss / 1048576 };
      note(`  catch-up with nothing to do: ${fmt(cu.totalSeconds, 2)} s from spawn to exit, peak RSS ${fmt(empty.peakRssMB, 0)} MB`);
    }
    for (let r = 1; r <= reps; r++) {
      const d = await once(cluster, pm, { rows, rate, seconds, clients, scriptDir, rep: r }).catch((err: unknown) => {
        process.stderr.write(`server log:\n${clusterLogTail(cluster.url())}\n`);
        throw err;
      });
      runs.push(d);
      note(`  rep ${r}/${reps}: ${d.writeTxns.toLocaleString('en')} txns at ${fmt(d.writeTps, 0)} tx/s → ${d.events.toLocaleString('en')} events; catch-up ${fmt(d.totalSeconds, 2)} s (drain ${fmt(d.drainSeconds, 2)} s), ${fmt(d.eventsPerSecond, 0)} events/s, peak RSS ${fmt(d.peakRssMB, 0)} MB, applied ${d.applied}; target ${d.equal ? 'equals' : 'DIFFERS FROM'} source ${JSON.stringify(d.tables)}`);
    }
  } finally {
    await killReplicators();
    await cluster.stop();
    rmSync(scriptDir, { recursive: true, force: true });
  }
  const f = (g: (d: CatchUpRun) => number) => spread(runs.map(g));
  const figures = {
    writeTps: f((d) => d.writeTps), events: f((d) => d.events), totalSeconds: f((d) => d.totalSeconds), drainSeconds: f((d) => d.drainSeconds),
    eventsPerSecond: f((d) => d.eventsPerSecond), peakRssMB: f((d) => d.peakRssMB), serverCpuMsPer1k: f((d) => d.serverCpuMsPer1k),
  };
  const allEqual = runs.every((d) => d.equal);
  printTable(
    `catch-up after ${minutes} min of writes at ${rate} tx/s (pgbench -R, ${clients} clients, 65 % single-row updates / 35 % inserts over 3 mixed-type tables of ${rows.toLocaleString('en')} rows), \`pg2crate catch-up\` as a child process into a Postgres target; ${reps} repetitions (min / median / max)`,
    ['figure', 'min / median / max'],
    [
      ['write rate reached, tx/s', fmtSpread(figures.writeTps, 0)],
      ['backlog, events', fmtSpread(figures.events, 0)],
      ['time to zero lag, s (spawn → exit)', fmtSpread(figures.totalSeconds, 2)],
      ['drain, s ("replicator started" → exit)', fmtSpread(figures.drainSeconds, 2)],
      ['events/s (backlog / drain)', fmtSpread(figures.eventsPerSecond, 0)],
      ['peak RSS, MB', fmtSpread(figures.peakRssMB, 0)],
      ['server CPU ms per 1k events', fmtSpread(figures.serverCpuMsPer1k, 1)],
    ],
  );
  if (empty) note(`a catch-up with nothing to do: ${fmt(empty.totalSeconds, 2)} s from spawn to exit (node + tsx start-up, connect, one window), peak RSS ${fmt(empty.peakRssMB, 0)} MB`);
  note(`target equals source at the end (no event outside a completed window; row counts and digests of all 3 tables): ${allEqual ? 'yes, in every repetition' : 'NO — see the runs above'}`);
  if (!allEqual) process.exitCode = 1;
  return { settings: { minutes, reps, rate, rows, clients, mix: Object.fromEntries(Object.entries(scripts(rows)).map(([k, s]) => [k, s.weight])) }, figures, emptyCatchUp: empty, allEqual, runs };
}
