// Initial load into a Postgres target beside a plain COPY between the same two databases, or into
// CrateDB beside a raw bulk_args INSERT loop of the same rows.
//
// Per round, on one throwaway cluster: a source table of --rows rows and 10 mixed-type columns. (a)
// pg2crate: migrate, `tables add` (which schedules the initial load), a Runner copies the table
// (--method direct, the default: chunks straight into the target, see src/load/direct-load.ts;
// --method outbox: every row through the outbox and the drainer); the clock runs from before migrate
// until the load is applied. (b) Postgres: `COPY (select …) TO STDOUT (FORMAT binary)` piped into
// `COPY … FROM STDIN (FORMAT binary)` of a fresh target table, by two psql processes. CrateDB: the
// same rows read from the source request by request as JSON text and sent as they are, as plain
// INSERT bulk_args requests (--raw-request-rows per request, --raw-parallel in flight) into a fresh
// table with the DDL pg2crate made (--raw-read=before reads every row before the clock instead, so
// that the reference pays nothing for reading). Rounds interleave a, b, a, b …
//
// Into CrateDB the load runs in a child process (this file with --load-child), so that its Node CPU
// and peak RSS are its own (--checkouts=dir,dir?SETTING=value… runs it from each of several
// checkouts of pg2crate, with settings of its own, in every round: a before → after in one run). The CPU of CrateDB's JVM and of the source
// cluster are read from /proc around each path. Afterwards the target is compared with the source
// by `verify` (counts, then digests over key ranges), and a difference fails the run.
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { backfillState } from '../src/load/backfill.js';
import { verifyConfigured } from '../src/verify/run-verify.js';
import { startCluster, type Cluster } from '../test/helpers/cluster.js';
import { crateSql, rawInsertFromSeconds, rawInsertSeconds } from './crate-raw.js';
import { crateCpuSeconds, crateJvmPids } from './crate-meter.js';
import { postmasterPid, serverCpuSeconds } from './server-cpu.js';
import { fmt, fmtSpread, note, printTable, sleep, spread, type BenchArgs } from './report.js';

export const description = 'initial load of 1M rows (10 mixed columns) into Postgres vs binary COPY | COPY between the same databases';

const TABLE = (name: string) => `create table ${name} (
  id bigint primary key, k integer not null, name text not null, amount numeric(14,4), ratio double precision,
  flag boolean, created timestamptz not null, day date, tags text[], doc jsonb
)`;

const FILL = (name: string, rows: number) => `insert into ${name}
  select g, g % 1000, 'name ' || g, (g % 100000) / 7.0, g / 3.0, g % 2 = 0,
         timestamptz '2024-01-01' + g * interval '1 second', date '2024-01-01' + (g % 365),
         array['a' || (g % 10), 'b'], jsonb_build_object('g', g, 'sq', g::int8 * g)
  from generate_series(1, ${rows}) g`;

const logger = createLogger(process.env.LOG_LEVEL ?? 'warn', { write: (s: string) => { process.stderr.write(s); } });

function psqlBin(): string {
  return execFileSync('sh', ['-c', 'command -v psql'], { encoding: 'utf8' }).trim() || 'psql';
}

const CRATE_SCHEMA = 'pg2crate_bench_load';
const ROOT = fileURLToPath(new URL('../', import.meta.url));
let cpuProfileDir: string | undefined;

interface LoadFigures {
  /** seconds end to end: migrate, tables add, copy, applied */
  total: number;
  /** seconds of the copy alone: the job's start to its end (fix-up included) */
  copy: number;
  /** CPU seconds of the process that ran the load, and of CrateDB's JVM, over `total` */
  nodeCpu: number;
  jvmCpu: number;
  /** MiB, the loading process's peak resident set (VmHWM) when the load was applied */
  peakRssMiB: number;
  /** CPU seconds of the source cluster's processes over `total` (absent from loads by older checkouts) */
  sourceCpu?: number;
}

/** Migrates, captures and loads the source's table with a Runner in this process; returns its figures. */
async function loadHere(env: Record<string, string>): Promise<LoadFigures> {
  const src = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
  src.on('error', (err) => note(`idle source connection failed: ${err.message}`));
  const runner = new Runner(loadConfig(env), logger);
  try {
    const pids = crateJvmPids();
    const pm = await postmasterPid(src);
    const cpu0 = process.cpuUsage();
    const jvm0 = crateCpuSeconds(pids);
    const source0 = serverCpuSeconds(pm);
    const start = performance.now();
    await migrate(runner);
    const running = runner.run();
    running.catch(() => {});
    const ids = (await src.query<{ id: number }>('select id from pg2crate.tables')).rows.map((r) => r.id);
    for (;;) {
      const st = await backfillState(src, 'pg2crate', 'main', ids);
      if (st.every((p) => p.applied)) break;
      await sleep(50);
    }
    const total = (performance.now() - start) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const jvmCpu = crateCpuSeconds(pids) - jvm0;
    const sourceCpu = serverCpuSeconds(pm) - source0;
    const peakRssMiB = process.resourceUsage().maxRSS / 1024;
    const job = await src.query<{ s: number }>(`select extract(epoch from finished_at - started_at)::float8 as s from pg2crate.backfills`);
    await runner.close();
    await running;
    return { total, copy: Number(job.rows[0].s), nodeCpu: (cpu.user + cpu.system) / 1e6, jvmCpu, peakRssMiB, sourceCpu };
  } finally {
    await runner.close();
    await src.end();
  }
}

/** The child of a CrateDB round: loads, then checks the target against the source with verify. */
async function loadChild(): Promise<void> {
  const env = JSON.parse(process.env.BENCH_LOAD_ENV ?? '{}') as Record<string, string>;
  const figures = await loadHere(env);
  const config = loadConfig(env);
  const src = new pg.Pool({ connectionString: env.DATABASE_URL, max: 2 });
  try {
    const res = await verifyConfigured({ config, pool: src, logger, catchUpTimeoutMs: 60_000 });
    const r = res.reports[0];
    if (!res.equal) throw new Error(`verify: the CrateDB target differs from the source: ${JSON.stringify({ missing: r?.differences.missing.count, extra: r?.differences.extra.count, different: r?.differences.different.count })}`);
    process.stdout.write(`\nLOAD ${JSON.stringify({ ...figures, verifiedRows: r.sourceRows })}\n`);
  } finally {
    await src.end();
  }
}

/** Runs loadChild in a child process and returns its figures. */
async function loadInChild(env: Record<string, string>, checkout: string): Promise<LoadFigures & { verifiedRows: number }> {
  // --cpu-prof-dir=… writes the loading process's CPU profile there (Node's --cpu-prof)
  const profile = cpuProfileDir ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfileDir}`] : [];
  const child = spawn(process.execPath, [...profile, '--import', 'tsx', 'bench/backfill.ts', '--load-child'], {
    cwd: checkout,
    env: { ...process.env, BENCH_LOAD_ENV: JSON.stringify(env) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const code = await new Promise<number | string>((resolve) => child.once('exit', (c, sig) => resolve(c ?? sig ?? 'unknown')));
  const line = /^LOAD (.*)$/m.exec(out);
  if (code !== 0 || !line) throw new Error(`the load's child process exited ${code}:\n${out.slice(-3000)}`);
  return JSON.parse(line[1]) as LoadFigures & { verifiedRows: number };
}

async function viaPg2crate(cluster: Cluster, rows: number, chunkRows: number, method: string, crateUrl: string | undefined, extraEnv: Record<string, string>, checkout: string): Promise<LoadFigures> {
  const [srcUrl, dstUrl] = [await cluster.createDatabase('bf_src'), await cluster.createDatabase('bf_dst')];
  const src = new pg.Pool({ connectionString: srcUrl, max: 2 });
  src.on('error', (err) => note(`idle source connection failed: ${err.message}`));
  try {
    await src.query(TABLE('public.items'));
    await src.query(FILL('public.items', rows));
    await src.query('analyze public.items');
    if (crateUrl) await crateSql(crateUrl, `drop table if exists "${CRATE_SCHEMA}"."items"`);
    const target: Record<string, string> = crateUrl ? { CRATEDB_URL: crateUrl, PG2CRATE_TARGET_SCHEMA: CRATE_SCHEMA } : { TARGET_DATABASE_URL: dstUrl };
    const env = {
      DATABASE_URL: srcUrl, ...target, PG2CRATE_TABLES: 'public.items', PG2CRATE_PAGE_SIZE: '20000', PG2CRATE_BACKFILL_CHUNK_ROWS: String(chunkRows),
      PG2CRATE_INITIAL_LOAD: method, ...extraEnv,
    };
    if (crateUrl) {
      const figures = await loadInChild(env, checkout);
      if (figures.verifiedRows !== rows) throw new Error(`verify compared ${figures.verifiedRows} source rows, expected ${rows}`);
      return figures;
    }
    const figures = await loadHere(env);
    const dst = new pg.Client({ connectionString: dstUrl });
    await dst.connect();
    const n = Number((await dst.query('select count(*) as n from items')).rows[0].n);
    await dst.end();
    if (n !== rows) throw new Error(`target holds ${n} rows, expected ${rows}`);
    return figures;
  } finally {
    await src.end();
    await drop(cluster, [srcUrl, dstUrl]);
  }
}

async function viaCopy(cluster: Cluster, rows: number): Promise<number> {
  const [srcUrl, dstUrl] = [await cluster.createDatabase('cp_src'), await cluster.createDatabase('cp_dst')];
  const src = new pg.Client({ connectionString: srcUrl });
  const dst = new pg.Client({ connectionString: dstUrl });
  await src.connect();
  await dst.connect();
  try {
    await src.query(TABLE('public.items'));
    await src.query(FILL('public.items', rows));
    await src.query('analyze public.items');
    await dst.query(TABLE('public.items'));
    const psql = psqlBin();
    const start = performance.now();
    await new Promise<void>((resolve, reject) => {
      const out = spawn(psql, [srcUrl, '-qAtc', 'copy (select * from public.items) to stdout (format binary)'], { stdio: ['ignore', 'pipe', 'inherit'] });
      const inp = spawn(psql, [dstUrl, '-qc', 'copy public.items from stdin (format binary)'], { stdio: ['pipe', 'ignore', 'inherit'] });
      out.stdout.pipe(inp.stdin);
      let done = 0;
      const fin = (code: number | null) => { if (code !== 0) reject(new Error(`psql exited ${code}`)); else if (++done === 2) resolve(); };
      out.on('exit', fin);
      inp.on('exit', fin);
    });
    const seconds = (performance.now() - start) / 1000;
    const n = Number((await dst.query('select count(*) as n from items')).rows[0].n);
    if (n !== rows) throw new Error(`COPY target holds ${n} rows, expected ${rows}`);
    return seconds;
  } finally {
    await src.end();
    await dst.end();
    await drop(cluster, [srcUrl, dstUrl]);
  }
}

/**
 * CrateDB's raw rate for the same rows: read from the source as JSON before the clock starts, then
 * INSERT … VALUES with bulk_args, --raw-request-rows per request, --raw-parallel requests in flight,
 * into a table with the DDL pg2crate made (it must exist: run after a pg2crate round).
 */
interface RawFigures {
  seconds: number;
  nodeCpu: number;
  jvmCpu: number;
  sourceCpu: number;
}

/**
 * CrateDB's raw rate for the same rows: INSERT … VALUES with bulk_args, --raw-request-rows per
 * request, --raw-parallel requests in flight, into a table with the DDL pg2crate made (it must
 * exist: run after a pg2crate round). `readInside`: each request's rows are read from the source as
 * they go (`json_build_array(…)::text` by id range, the text sent as it is: nothing parsed), each
 * request reading its next rows while it is in flight; otherwise every row is read before the clock
 * starts.
 */
async function viaCrateRaw(cluster: Cluster, rows: number, crateUrl: string, requestRows: number, parallel: number, readInside: boolean): Promise<RawFigures> {
  const srcUrl = await cluster.createDatabase('raw_src');
  const src = new pg.Pool({ connectionString: srcUrl, max: parallel * 2 });
  src.on('error', (err) => note(`idle source connection failed: ${err.message}`));
  try {
    await src.query(TABLE('public.items'));
    await src.query(FILL('public.items', rows));
    await src.query('analyze public.items');
    const cols = ['id', 'k', 'name', 'amount', 'ratio', 'flag', 'created', 'day', 'tags', 'doc'];
    const data = readInside ? [] : (await src.query<{ r: unknown[] }>(`select json_build_array(${cols.join(', ')}) as r from public.items order by id`)).rows.map((x) => x.r);
    const pm = await postmasterPid(src);
    const pids = crateJvmPids();
    const cpu0 = process.cpuUsage();
    const jvm0 = crateCpuSeconds(pids);
    const source0 = serverCpuSeconds(pm);
    // The meters include creating and dropping the raw table, a few milliseconds.
    let from = 0;
    const seconds = readInside
      ? await rawInsertFromSeconds(crateUrl, CRATE_SCHEMA, 'items', cols, parallel, async () => {
        const lo = from;
        from += requestRows;
        if (lo >= rows) return null;
        const res = await src.query<{ r: string }>(`select json_build_array(${cols.join(', ')})::text as r from public.items where id > $1 and id <= $2 order by id`, [lo, lo + requestRows]);
        return res.rows.map((x) => x.r);
      })
      : await rawInsertSeconds(crateUrl, CRATE_SCHEMA, 'items', cols, data, requestRows, parallel);
    const cpu = process.cpuUsage(cpu0);
    return { seconds, nodeCpu: (cpu.user + cpu.system) / 1e6, jvmCpu: crateCpuSeconds(pids) - jvm0, sourceCpu: serverCpuSeconds(pm) - source0 };
  } finally {
    await src.end();
    await drop(cluster, [srcUrl]);
  }
}

async function drop(cluster: Cluster, urls: string[]): Promise<void> {
  const admin = new pg.Client({ connectionString: cluster.url() });
  await admin.connect();
  for (const u of urls) await admin.query(`drop database if exists "${new URL(u).pathname.slice(1)}" with (force)`);
  await admin.end();
}

export async function run(args: BenchArgs): Promise<object> {
  const crate = args.target === 'cratedb';
  const rows = Number(args.rows ?? (crate ? 500_000 : 1_000_000));
  const rounds = Number(args.rounds ?? 3);
  const chunkRows = Number(args['chunk-rows'] ?? 10_000);
  const method = args.method ?? 'direct';
  if (method !== 'direct' && method !== 'outbox') throw new Error(`--method is direct or outbox, not ${method}`);
  const crateUrl = crate ? (args.url ?? process.env.CRATEDB_URL) : undefined;
  if (crate && !crateUrl) throw new Error('--target=cratedb needs CRATEDB_URL (e.g. CRATEDB_URL=http://127.0.0.1:4200)');
  const rawRows = Number(args['raw-request-rows'] ?? 5_000);
  const rawParallel = Number(args['raw-parallel'] ?? 2);
  const rawRead = args['raw-read'] ?? 'inside';
  if (rawRead !== 'inside' && rawRead !== 'before') throw new Error(`--raw-read is inside or before, not ${rawRead}`);
  // Settings of the load itself, as environment variables: --PG2CRATE_CRATE_MAX_ROWS=5000 …
  const loadEnv = Object.fromEntries(Object.entries(args).filter(([k]) => k.startsWith('PG2CRATE_')).map(([k, v]) => [k, String(v)]));
  // Into CrateDB, loads by other checkouts of pg2crate in the same rounds (before → after in one run).
  // An entry may add settings to its loads: dir?PG2CRATE_CRATE_MAX_ROWS=5000&…
  const checkouts = crateUrl && args.checkouts ? args.checkouts.split(',') : [ROOT];
  cpuProfileDir = args['cpu-prof-dir'];
  const cluster = await startCluster();
  const loads: LoadFigures[][] = checkouts.map(() => []);
  const raws: RawFigures[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      for (const [c, checkout] of checkouts.entries()) {
        const [dir, query] = checkout.split('?');
        const load = await viaPg2crate(cluster, rows, chunkRows, method, crateUrl, { ...loadEnv, ...Object.fromEntries(new URLSearchParams(query ?? '')) }, dir);
        loads[c].push(load);
        note(`round ${r + 1}: pg2crate initial load${checkouts.length > 1 ? ` (${checkout})` : ''} ${fmt(load.total)} s (the copy itself ${fmt(load.copy)} s); Node CPU ${fmt(load.nodeCpu)} s, CrateDB JVM CPU ${fmt(load.jvmCpu)} s, source CPU ${load.sourceCpu === undefined ? '?' : fmt(load.sourceCpu)} s, peak RSS ${fmt(load.peakRssMiB, 0)} MiB`);
      }
      raws.push(crateUrl ? await viaCrateRaw(cluster, rows, crateUrl, rawRows, rawParallel, rawRead === 'inside') : { seconds: await viaCopy(cluster, rows), nodeCpu: 0, jvmCpu: 0, sourceCpu: 0 });
      const raw = raws.at(-1)!;
      note(`round ${r + 1}: ${crateUrl ? `raw bulk_args loop ${fmt(raw.seconds)} s; CrateDB JVM CPU ${fmt(raw.jvmCpu)} s` : `COPY | COPY ${fmt(raw.seconds)} s`}`);
    }
  } finally {
    await cluster.stop();
  }
  const copies = raws.map((r) => r.seconds);
  const rate = (xs: number[]) => spread(xs.map((s) => rows / s));
  const perK = (xs: number[]) => fmtSpread(spread(xs.map((x) => (x * 1e6) / rows)), 1);
  const table: string[][] = [];
  for (const [c, checkout] of checkouts.entries()) {
    const of = checkouts.length > 1 ? ` (${checkout})` : '';
    const total = loads[c].map((l) => l.total);
    const copyOnly = loads[c].map((l) => l.copy);
    table.push(
      [`pg2crate initial load${of}, end to end (migrate, tables add, copy)`, fmtSpread(spread(total)), fmtSpread(rate(total))],
      ['… the copy itself (job start to end)', fmtSpread(spread(copyOnly)), fmtSpread(rate(copyOnly))],
      ['… rate ratio load / baseline, end to end', fmtSpread(spread(total.map((s, i) => copies[i] / s)), 2), ''],
      ['… rate ratio copy itself / baseline', fmtSpread(spread(copyOnly.map((s, i) => copies[i] / s)), 2), ''],
    );
    if (crateUrl) {
      table.push(
        ['… Node CPU, ms per 1,000 rows (end to end)', perK(loads[c].map((l) => l.nodeCpu)), ''],
        ["… CrateDB's JVM CPU, ms per 1,000 rows", perK(loads[c].map((l) => l.jvmCpu)), ''],
        ...(loads[c].every((l) => l.sourceCpu !== undefined) ? [['… source Postgres CPU (every process of its cluster), ms per 1,000 rows', perK(loads[c].map((l) => l.sourceCpu!)), '']] : []),
        ['… peak RSS of the loading process, MiB', fmtSpread(spread(loads[c].map((l) => l.peakRssMiB)), 0), ''],
      );
    }
  }
  const rawLabel = `raw INSERT bulk_args into CrateDB, ${rawRows} rows × ${rawParallel} in flight, ${rawRead === 'inside' ? 'each read from the source as it goes' : 'every row read before the clock'}`;
  table.push([crateUrl ? rawLabel : 'binary COPY TO STDOUT | COPY FROM STDIN', fmtSpread(spread(copies)), fmtSpread(rate(copies))]);
  if (crateUrl) {
    table.push(['… Node | CrateDB JVM | source CPU, ms per 1,000 rows', `${perK(raws.map((r) => r.nodeCpu))} | ${perK(raws.map((r) => r.jvmCpu))} | ${perK(raws.map((r) => r.sourceCpu))}`, '']);
  }
  printTable(`initial load (${method}, chunks of ${chunkRows}${Object.keys(loadEnv).length ? `, ${Object.entries(loadEnv).map(([k, v]) => `${k}=${v}`).join(' ')}` : ''}) into ${crateUrl ? 'CrateDB' : 'Postgres'} of ${rows.toLocaleString('en')} rows, 10 columns (min / median / max over ${rounds} interleaved rounds)`, ['path', 'seconds', 'rows/s'], table);
  if (crateUrl) note('every load was verified equal to its source (verify: counts, then digests over key ranges)');
  return {
    rows, rounds, method, chunkRows, loadEnv, checkouts, target: crateUrl ? 'cratedb' : 'postgres', rawRequestRows: crateUrl ? rawRows : undefined, rawRead: crateUrl ? rawRead : undefined,
    rawParallel: crateUrl ? rawParallel : undefined, loads, baselines: raws,
  };
}

if (process.argv.includes('--load-child') && process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  loadChild().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`load child failed: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
