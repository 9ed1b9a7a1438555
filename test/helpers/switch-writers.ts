// The workload of the capture-switch tests: a cluster with three captured tables written by
// several connections at once for as long as the test runs (switches included), and a switch that
// fails the test instead of hanging it.
import assert from 'node:assert/strict';
import pg from 'pg';
import type { Config } from '../../src/core/config.js';
import type { Logger } from '../../src/core/logger.js';
import { Runner, type RunnerOptions } from '../../src/runner.js';
import { startCluster, type Cluster } from './cluster.js';
import { makeConfig, pool, settle } from './replication.js';
import { switchCapture as runSwitchCapture } from '../../src/commands/switch-capture.js';

/** items (updates, deletes, key changes), pairs (a composite key) and log (append-only, one row per transaction). */
export const SWITCH_TABLES_SQL = `
  create table public.items (id integer primary key, qty integer not null, note text);
  create table public.pairs (a integer, b text, val numeric(20,4), primary key (a, b));
  create table public.log (seq bigint primary key, writer integer not null, at timestamptz not null default now());
  create sequence public.log_seq;
  insert into items select g, g, 'seed' from generate_series(1, 300, 2) g;`;

export interface SwitchBed {
  cluster: Cluster;
  srcUrl: string;
  src: pg.Pool;
  dst: pg.Pool;
  /** the replicator's environment: the three tables captured, the slot named */
  env: Record<string, string>;
  close(): Promise<void>;
}

/** A cluster with a source (the three tables, captured and loaded, plus `extraSql`) and a Postgres target. */
export async function startSwitchBed(slot: string, extraSql = ''): Promise<SwitchBed> {
  const cluster = await startCluster();
  const srcUrl = await cluster.createDatabase('src');
  const dstUrl = await cluster.createDatabase('dst');
  const src = pool(srcUrl, 10);
  const dst = pool(dstUrl);
  await src.query(SWITCH_TABLES_SQL + extraSql);
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.items, public.pairs, public.log', PG2CRATE_SLOT: slot };
  await settle(makeConfig(env), src);
  return {
    cluster, srcUrl, src, dst, env,
    async close() {
      await src.end();
      await dst.end();
      await cluster.stop();
    },
  };
}

export interface Writers {
  /** committed transactions so far */
  readonly tx: number;
  /** stops the writers and waits for them; rethrows a writer's unexpected error */
  stop(): Promise<void>;
}

/** Starts `n` connections that each commit one transaction after another until stop(). */
export function startWriters(url: string, n = 4): Writers {
  let stopped = false;
  const tally = { tx: 0 };
  const all = Array.from({ length: n }, (_, i) => writer(url, i + 1, () => stopped, tally));
  all.forEach((w) => w.catch(() => {}));
  return {
    get tx() {
      return tally.tx;
    },
    async stop() {
      stopped = true;
      await Promise.all(all);
    },
  };
}

async function writer(url: string, id: number, stop: () => boolean, tally: { tx: number }): Promise<void> {
  const c = new pg.Client({ connectionString: url, application_name: `writer ${id}` });
  await c.connect();
  let x = id * 7919;
  const next = (n: number) => { x = (x * 1103515245 + 12345) % 2147483648; return 1 + (x % n); };
  try {
    while (!stop()) {
      try {
        await c.query('begin');
        await c.query(`insert into log (seq, writer) values (nextval('log_seq'), $1)`, [id]);
        const k = next(300);
        const op = next(10);
        if (op <= 3) await c.query(`insert into items values ($1, $2, 'w') on conflict (id) do update set qty = items.qty + 1`, [k, k]);
        else if (op <= 6) await c.query(`update items set qty = qty * 2 % 10007, note = note || '.' where id between $1 and $1 + 5`, [k]);
        else if (op === 7) await c.query(`delete from items where id = $1`, [k]);
        else if (op === 8) await c.query(`update items set id = $2 where id = $1`, [k, 300 + next(300)]);
        else if (op === 9) await c.query(`insert into pairs values ($1, 'x', $2) on conflict (a, b) do update set val = pairs.val + 1`, [k % 40, k]);
        else await c.query(`update pairs set a = $2 where a = $1`, [k % 40, next(40)]);
        await c.query('commit');
        tally.tx++;
      } catch (err) {
        await c.query('rollback').catch(() => {});
        // the writers' own conflicts (a key change onto a taken key, a deadlock between two of them)
        const code = (err as { code?: string }).code;
        if (code !== '23505' && code !== '40P01') throw err;
      }
    }
  } finally {
    await c.end();
  }
}

/**
 * Runs `switch-capture <to>` in this process. A switch that has not finished after `timeoutMs`
 * is stopped and fails the test (a switch that waits forever is the bug these tests look for).
 */
export async function switchCapture(config: Config, logger: Logger, to: 'trigger' | 'pgoutput', opts: RunnerOptions = {}, timeoutMs = 90_000): Promise<void> {
  const runner = new Runner(config, logger, opts);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), timeoutMs); });
  const run = runSwitchCapture(runner, to);
  try {
    const outcome = await Promise.race([run, timeout]);
    assert.notEqual(outcome, 'timeout', `the switch to ${to} did not finish within ${timeoutMs} ms`);
    assert.equal(outcome, 'switched');
  } finally {
    clearTimeout(timer);
    await runner.close();
    await run.catch(() => {});
  }
}
