// Initial load into a Postgres target beside a plain COPY between the same two databases.
//
// Per round, on one throwaway cluster: a source table of --rows rows and 10 mixed-type columns. (a)
// pg2crate: migrate, `tables add` (which schedules the initial load), a Runner in this process
// copies the table (--method direct, the default: binary COPY chunks straight into the target, see
// src/source/direct-load.ts; --method outbox: every row through the outbox and the drainer); the
// clock runs from before migrate until the load is applied. (b) COPY: `COPY (select …) TO STDOUT
// (FORMAT binary)` piped into `COPY … FROM STDIN (FORMAT binary)` of a fresh target table, by two
// psql processes. Rounds interleave a, b, a, b …
import { execFileSync, spawn } from 'node:child_process';
import pg from 'pg';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { backfillState } from '../src/load/backfill.js';
import { startCluster, type Cluster } from '../test/helpers/cluster.js';
import { crateSql, rawInsertSeconds } from './crate-raw.js';
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

/** seconds end to end (migrate, tables add, copy, applied) and of the copy alone (the job's start to its end) */
async function viaPg2crate(cluster: Cluster, rows: number, chunkRows: number, method: string, crateUrl?: string): Promise<{ total: number; copy: number }> {
  const [srcUrl, dstUrl] = [await cluster.createDatabase('bf_src'), await cluster.createDatabase('bf_dst')];
  const src = new pg.Pool({ connectionString: srcUrl, max: 2 });
  src.on('error', (err) => note(`idle source connection failed: ${err.message}`));
  try {
    await src.query(TABLE('public.items'));
    await src.query(FILL('public.items', rows));
    await src.query('analyze public.items');
    if (crateUrl) await crateSql(crateUrl, `drop table if exists "${CRATE_SCHEMA}"."items"`);
    const target = crateUrl ? { CRATEDB_URL: crateUrl, PG2CRATE_TARGET_SCHEMA: CRATE_SCHEMA } : { TARGET_DATABASE_URL: dstUrl };
    const config = loadConfig({ DATABASE_URL: srcUrl, ...target, PG2CRATE_TABLES: 'public.items', PG2CRATE_PAGE_SIZE: '20000', PG2CRATE_BACKFILL_CHUNK_ROWS: String(chunkRows), PG2CRATE_INITIAL_LOAD: method });
    const runner = new Runner(config, logger);
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
    const seconds = (performance.now() - start) / 1000;
    const job = await src.query<{ s: number }>(`select extract(epoch from finished_at - started_at)::float8 as s from pg2crate.backfills`);
    const copySeconds = Number(job.rows[0].s);
    await runner.close();
    await running;
    if (crateUrl) {
      await crateSql(crateUrl, `refresh table "${CRATE_SCHEMA}"."items"`);
      const n = Number((await crateSql(crateUrl, `select count(*) from "${CRATE_SCHEMA}"."items"`)).rows![0][0]);
      if (n !== rows) throw new Error(`CrateDB target holds ${n} rows, expected ${rows}`);
      return { total: seconds, copy: copySeconds };
    }
    const dst = new pg.Client({ connectionString: dstUrl });
    await dst.connect();
    const n = Number((await dst.query('select count(*) as n from items')).rows[0].n);
    await dst.end();
    if (n !== rows) throw new Error(`target holds ${n} rows, expected ${rows}`);
    return { total: seconds, copy: copySeconds };
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
async function viaCrateRaw(cluster: Cluster, rows: number, crateUrl: string, requestRows: number, parallel: number): Promise<number> {
  const srcUrl = await cluster.createDatabase('raw_src');
  const src = new pg.Client({ connectionString: srcUrl });
  await src.connect();
  try {
    await src.query(TABLE('public.items'));
    await src.query(FILL('public.items', rows));
    const cols = ['id', 'k', 'name', 'amount', 'ratio', 'flag', 'created', 'day', 'tags', 'doc'];
    const data = (await src.query<{ r: unknown[] }>(`select json_build_array(${cols.join(', ')}) as r from public.items order by id`)).rows.map((x) => x.r);
    const seconds = await rawInsertSeconds(crateUrl, CRATE_SCHEMA, 'items', cols, data, requestRows, parallel);
    return seconds;
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
  const rows = Number(args.rows ?? 1_000_000);
  const rounds = Number(args.rounds ?? 3);
  const chunkRows = Number(args['chunk-rows'] ?? 10_000);
  const method = args.method ?? 'direct';
  if (method !== 'direct' && method !== 'outbox') throw new Error(`--method is direct or outbox, not ${method}`);
  const crate = args.target === 'cratedb';
  const crateUrl = crate ? (args.url ?? process.env.CRATEDB_URL) : undefined;
  if (crate && !crateUrl) throw new Error('--target=cratedb needs CRATEDB_URL (e.g. CRATEDB_URL=http://127.0.0.1:4200)');
  const rawRows = Number(args['raw-request-rows'] ?? 10_000);
  const rawParallel = Number(args['raw-parallel'] ?? 2);
  const cluster = await startCluster();
  const loads: number[] = [];
  const copyOnly: number[] = [];
  const copies: number[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      const load = await viaPg2crate(cluster, rows, chunkRows, method, crateUrl);
      loads.push(load.total);
      copyOnly.push(load.copy);
      note(`round ${r + 1}: pg2crate initial load ${fmt(load.total)} s (the copy itself ${fmt(load.copy)} s)`);
      copies.push(crateUrl ? await viaCrateRaw(cluster, rows, crateUrl, rawRows, rawParallel) : await viaCopy(cluster, rows));
      note(`round ${r + 1}: ${crateUrl ? 'raw bulk_args loop' : 'COPY | COPY'} ${fmt(copies.at(-1)!)} s`);
    }
  } finally {
    await cluster.stop();
  }
  const rate = (xs: number[]) => spread(xs.map((s) => rows / s));
  const ratio = spread(loads.map((s, i) => s / copies[i]));
  printTable(`initial load (${method}, chunks of ${chunkRows}) into ${crateUrl ? 'CrateDB' : 'Postgres'} of ${rows.toLocaleString('en')} rows, 10 columns (min / median / max over ${rounds} interleaved rounds)`, ['path', 'seconds', 'rows/s'], [
    ['pg2crate initial load, end to end (migrate, tables add, copy)', fmtSpread(spread(loads)), fmtSpread(rate(loads))],
    ['… the copy itself (job start to end)', fmtSpread(spread(copyOnly)), fmtSpread(rate(copyOnly))],
    [crateUrl ? `raw INSERT bulk_args into CrateDB, ${rawRows} rows × ${rawParallel} in flight` : 'binary COPY TO STDOUT | COPY FROM STDIN', fmtSpread(spread(copies)), fmtSpread(rate(copies))],
    ['time ratio load / baseline', fmtSpread(ratio, 2), ''],
    ['rate ratio load / baseline', fmtSpread(spread(loads.map((s, i) => copies[i] / s)), 2), ''],
    ['rate ratio copy itself / baseline', fmtSpread(spread(copyOnly.map((s, i) => copies[i] / s)), 2), ''],
  ]);
  return { rows, rounds, method, chunkRows, target: crateUrl ? 'cratedb' : 'postgres', rawRequestRows: crateUrl ? rawRows : undefined, rawParallel: crateUrl ? rawParallel : undefined, loads, copyOnly, baselines: copies };
}
