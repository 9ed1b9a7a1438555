// verify of a 1,000,000-row table runs in bounded memory and finds one planted difference.
//
// Source and target are loaded directly (INSERT … SELECT generate_series) to save time; the table
// is registered (so verify knows it) but no replicator runs. verify runs in a child process (this
// same file, started with PG2CRATE_VERIFY_LARGE_CHILD set) so that its peak RSS (VmHWM) is its own,
// not the test runner's. The figures are printed for the report; the test asserts only a generous
// memory bound, never a time.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { Runner } from '../../src/runner.js';
import { postgresVerifyTarget } from '../../src/verify/postgres-target.js';
import { runVerify } from '../../src/verify/run-verify.js';
import type { TableReport } from '../../src/verify/report.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { assertNoLeaks, makeConfig, pool, testLogger } from '../helpers/replication.js';
import { migrate } from '../../src/commands/migrate.js';

const ROWS = 1_000_000;
const PLANTED = 777_777;
const RSS_BOUND_MB = 300;
const CHILD = 'PG2CRATE_VERIFY_LARGE_CHILD';

interface ChildResult {
  baselineMb: number;
  peakMb: number;
  seconds: number;
  equal: boolean;
  report: TableReport;
}

function statusMb(field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

/** The child: verify the table once and print one JSON line with the figures. */
async function child(env: { source: string; target: string }): Promise<void> {
  const config = makeConfig({ DATABASE_URL: env.source, TARGET_DATABASE_URL: env.target, PG2CRATE_TABLES: 'public.big' });
  const src = pool(env.source, 4);
  const target = postgresVerifyTarget(env.target);
  const baselineMb = statusMb('VmRSS');
  const started = process.hrtime.bigint();
  try {
    const res = await runVerify({ config, pool: src, target, logger: testLogger(), catchUpTimeoutMs: 5_000 });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const out: ChildResult = { baselineMb, peakMb: statusMb('VmHWM'), seconds, equal: res.equal, report: res.reports[0] };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    await target.close();
    await src.end();
  }
}

async function runChild(env: { source: string; target: string }): Promise<ChildResult> {
  const file = fileURLToPath(import.meta.url);
  const proc = spawn(process.execPath, ['--import', 'tsx', file], { env: { ...process.env, [CHILD]: JSON.stringify(env) }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (b: Buffer) => { stdout += b.toString(); });
  proc.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
  assert.equal(code, 0, `verify child failed: ${stderr}`);
  const line = stdout.trim().split('\n').find((l) => l.startsWith('{"baselineMb"'));
  assert.ok(line, `no result from the verify child: ${stdout}\n${stderr}`);
  return JSON.parse(line) as ChildResult;
}

const childEnv = process.env[CHILD];
if (childEnv) {
  await child(JSON.parse(childEnv));
} else {
  let cluster: Cluster;
  let src: pg.Pool;
  let dst: pg.Pool;
  let urls: { source: string; target: string };

  const DDL = `create table public.big (id bigint primary key, a integer, b text, ts timestamptz, d numeric(12,2))`;
  const ROWS_SQL = `insert into public.big select g, g % 1000, 'row ' || g, '2024-01-01 00:00:00.123456+00'::timestamptz + g * interval '1 second', g / 7.0
                    from generate_series(1, ${ROWS}) g`;

  before(async () => {
    cluster = await startCluster();
    const [s, d] = await Promise.all([cluster.createDatabase('src'), cluster.createDatabase('dst')]);
    urls = { source: s, target: d };
    src = pool(s);
    dst = pool(d);
    // Loaded before the table is captured (no trigger), and by hand on the target: the same rows.
    await Promise.all([src.query(DDL).then(() => src.query(ROWS_SQL)), dst.query(DDL).then(() => dst.query(ROWS_SQL))]);
    await Promise.all([src.query('analyze public.big'), dst.query('analyze public.big')]);
    const runner = new Runner(makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.big' }), testLogger());
    try {
      await migrate(runner);
    } finally {
      await runner.close();
    }
    await dst.query(`update public.big set b = 'planted' where id = ${PLANTED}`);
  });

  after(async () => {
    await src?.end();
    await dst?.end();
    await cluster?.stop();
    await assertNoLeaks();
  });

  test(`verify of a ${ROWS.toLocaleString('en')}-row table stays under ${RSS_BOUND_MB} MB and finds the one planted difference`, async () => {
    const r = await runChild(urls);
    console.log(`verify-large: ${ROWS} rows, ${r.report.ranges} ranges, ${r.seconds.toFixed(1)} s, peak RSS ${r.peakMb} MB (baseline before verify ${r.baselineMb} MB)`);
    assert.equal(r.equal, false);
    assert.equal(r.report.sourceRows, ROWS);
    assert.equal(r.report.targetRows, ROWS);
    assert.equal(r.report.ranges, ROWS / 10_000 + 1, 'ranges of 10,000 rows, plus the open tail');
    assert.equal(r.report.differingRanges, 1);
    assert.deepEqual(r.report.differences.different.keys, [`{"id": ${PLANTED}}`]);
    assert.equal(r.report.differences.missing.count + r.report.differences.extra.count, 0);
    assert.equal(r.report.catchUp, 'no-replicator');
    assert.ok(r.peakMb < RSS_BOUND_MB, `peak RSS ${r.peakMb} MB is over ${RSS_BOUND_MB} MB`);
  });
}
