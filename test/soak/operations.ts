// What an operator does while the soak runs, through the CLI (runCli in test/helpers/child-replicator.ts):
//
//   initial load   `tables add soak.big` at 15–40 % of the run: 200,000 rows copied under the writers
//   verify         `verify <tables> --repair --json` every 25–50 s on 1–3 tables (never seq_log,
//                  so that a repair cannot hide a loss there); what it reports is kept in cli.log;
//                  one that finds no replicator running (both stopped for a switch) applies its
//                  repair itself, as catch-up would, or waits for whoever took the stream
//   dead letters   the poison phase: for a while the workload writes owners into soak.accounts that
//                  the target refuses (target.ts: a CHECK on a Postgres target, a text too long to
//                  index for CrateDB), parked as dead letters; `dead-letters retry --all` now and
//                  then, and once the phase is over and the target accepts them again
//   --partitions   a partition added to soak.parted every 30–60 s
//   --switch       `switch-capture pgoutput` / `switch-capture trigger` every 60–120 s (both
//                  replicators stopped first, started again in the new mode)
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import { runCli, runCliUntil } from '../helpers/child-replicator.js';
import { pause, type Rng } from './random.js';
import type { ReplicatorPair } from './replicators.js';
import { BIG_TABLE, INITIAL_REGIONS, REPAIRABLE, SCHEMA } from './source-schema.js';
import type { Tally, Timeline } from './tally.js';
import type { SoakTarget } from './target.js';
import type { Workload } from './writers.js';

export interface OperationDeps {
  rng: Rng;
  tally: Tally;
  timeline: Timeline;
  replicators: ReplicatorPair;
  src: pg.Pool;
  target: SoakTarget;
  workload: Workload;
  runDir: string;
  runMs: number;
  partitions: boolean;
  switchCapture: boolean;
  signal: AbortSignal;
}

export interface CliResult {
  code: number | string;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI with the replicators' settings; the command and its output go to cli.log. With a
 * signal, the run is killed when it aborts (the end of the run must not wait for a verify that
 * waits for the replicator, nor let one write repair events after the final checks began).
 */
export async function cli(d: Pick<OperationDeps, 'replicators' | 'runDir' | 'timeline'>, args: string[], signal?: AbortSignal): Promise<CliResult> {
  const env = { ...d.replicators.env, LOG_LEVEL: 'error' };
  const res = signal ? await runCliUntil(env, args, signal) : await runCli(env, args);
  appendFileSync(join(d.runDir, 'cli.log'), `[${d.timeline.clock()}] pg2crate ${args.join(' ')} → exit ${res.code}\n${res.stdout}${res.stderr}\n`);
  return res;
}

export async function runOperations(d: OperationDeps): Promise<void> {
  const parts = [addBigTable(d), verifyLoop(d), deadLetterLoop(d), poisonPhase(d)];
  if (d.partitions) parts.push(partitionLoop(d));
  if (d.switchCapture) parts.push(switchLoop(d));
  await Promise.all(parts);
}

async function addBigTable(d: OperationDeps): Promise<void> {
  await pause(d.runMs * (0.15 + d.rng.next() * 0.25), d.signal);
  if (d.signal.aborted) return;
  d.timeline.note(`initial load: tables add ${SCHEMA}.${BIG_TABLE} (200,000 rows)`);
  // The source may be restarting, or (--switch) the stream in pgoutput mode: try until it is captured.
  for (;;) {
    const res = await cli(d, ['tables', 'add', `${SCHEMA}.${BIG_TABLE}`], d.signal);
    if (res.code === 0) break;
    if (d.signal.aborted) return;
    await pause(2000, d.signal);
  }
  d.tally.count(d.tally.operations, 'tables add big');
  d.timeline.note(`initial load: ${SCHEMA}.${BIG_TABLE} is captured; its copy runs in the replicator`);
}

async function registered(src: pg.Pool): Promise<string[]> {
  const res = await src.query<{ t: string }>(`select source_table as t from pg2crate.tables where source_schema = $1`, [SCHEMA]);
  return res.rows.map((r) => r.t);
}

async function verifyLoop(d: OperationDeps): Promise<void> {
  let n = 0;
  while (!d.signal.aborted) {
    await pause(d.rng.int(25_000, 50_000), d.signal);
    if (d.signal.aborted) return;
    const candidates = (await registered(d.src).catch(() => [] as string[])).filter((t) => REPAIRABLE.includes(t));
    if (candidates.length === 0) continue;
    const tables = d.rng.shuffle(candidates).slice(0, d.rng.int(1, 3)).map((t) => `${SCHEMA}.${t}`);
    // A verify that lost its connection to a restarting source or an absent target ends with exit 2:
    // try again a little later, a few times, so that some of them run to the end.
    let res = await cli(d, ['verify', ...tables, '--repair', '--json'], d.signal);
    for (let attempt = 1; res.code === 2 && attempt < 3 && !d.signal.aborted; attempt++) {
      await pause(5000, d.signal);
      res = await cli(d, ['verify', ...tables, '--repair', '--json'], d.signal);
    }
    if (d.signal.aborted) return;
    n++;
    d.tally.count(d.tally.operations, `verify --repair exit ${res.code}`);
    const report = verifyReport(res.stdout);
    const found = report?.tables.map((t) => `${t.table} ${t.differences.missing.count}/${t.differences.extra.count}/${t.differences.different.count}${t.catchUp === 'caught-up' || t.catchUp === 'not-needed' ? '' : ` (${t.catchUp})`}`).join(', ');
    const repaired = report?.tables.reduce((s, t) => s + (t.repair?.upserts ?? 0) + (t.repair?.deletes ?? 0), 0) ?? 0;
    if (repaired > 0) d.tally.count(d.tally.operations, 'verify repair events', repaired);
    d.timeline.note(`verify --repair #${n} ${tables.join(' ')}: exit ${res.code}${found ? `; missing/extra/different after re-check: ${found}` : ''}${repaired ? `; ${repaired} repair event(s)` : ''}`);
  }
}

interface VerifyJson {
  equal: boolean;
  tables: { table: string; catchUp: string; differences: Record<'missing' | 'extra' | 'different', { count: number }>; repair?: { upserts: number; deletes: number; catchUp: string } }[];
}

/** The JSON document of `verify --json` (stdout holds nothing else), or null when it did not finish. */
function verifyReport(stdout: string): VerifyJson | null {
  try {
    return JSON.parse(stdout) as VerifyJson;
  } catch {
    return null;
  }
}

/** `dead-letters retry --all` when there are any; returns how many were re-sent. */
export async function retryDeadLetters(d: Pick<OperationDeps, 'replicators' | 'runDir' | 'timeline' | 'tally'>): Promise<number> {
  const res = await cli(d, ['dead-letters', 'retry', '--all', '--json']);
  const n = res.code === 0 ? (JSON.parse(res.stdout) as { retried: number }).retried : 0;
  d.tally.count(d.tally.operations, `dead-letters retry exit ${res.code}`);
  if (n > 0) d.tally.count(d.tally.operations, 'dead letters re-sent', n);
  return n;
}

async function deadLetterLoop(d: OperationDeps): Promise<void> {
  while (!d.signal.aborted) {
    await pause(d.rng.int(20_000, 40_000), d.signal);
    if (d.signal.aborted) return;
    const parked = await d.src.query<{ n: number }>(`select count(*)::int as n from pg2crate.dead_letters`).then((r) => r.rows[0].n, () => -1);
    if (parked <= 0) continue;
    const n = await retryDeadLetters(d);
    d.timeline.note(`dead-letters retry --all: ${parked} parked, ${n} re-sent`);
  }
}

/** The target's name of soak.accounts (the registry knows the target's naming rules). */
async function accountsTarget(src: pg.Pool): Promise<{ schema: string; table: string } | null> {
  const res = await src.query<{ s: string; t: string }>(`select target_schema as s, target_table as t from pg2crate.tables where source_schema = $1 and source_table = 'accounts'`, [SCHEMA]);
  return res.rows[0] ? { schema: res.rows[0].s, table: res.rows[0].t } : null;
}

async function poisonPhase(d: OperationDeps): Promise<void> {
  await pause(d.runMs * (0.1 + d.rng.next() * 0.2), d.signal);
  const until = Date.now() + d.runMs * (0.3 + d.rng.next() * 0.15);
  let target: { schema: string; table: string } | null = null;
  while (!d.signal.aborted && Date.now() < until) {
    target = await accountsTarget(d.src).catch(() => null);
    if (target && (await d.target.poison.start(target.schema, target.table))) break;
    target = null;
    await pause(3000, d.signal);
  }
  if (!target) {
    if (!d.signal.aborted) d.timeline.note('dead letters: the target could not be made to refuse poison values; no poison phase');
    return;
  }
  d.workload.poison = d.target.poison.value;
  d.tally.count(d.tally.operations, 'poison phase');
  d.timeline.note(`dead letters: the target's ${target.schema}.${target.table} refuses the owners the writers now write now and then`);
  await pause(Math.max(0, until - Date.now()), d.signal);
  await endPoison(d, target);
}

/** Ends the poison phase (also called at the end of the run): no new poison, the target accepts it again, letters re-sent. */
export async function endPoison(d: Pick<OperationDeps, 'workload' | 'target' | 'src' | 'replicators' | 'runDir' | 'timeline' | 'tally'>, target?: { schema: string; table: string }): Promise<void> {
  const wasOn = d.workload.poison !== null;
  d.workload.poison = null;
  const t = target ?? (await accountsTarget(d.src).catch(() => null));
  if (!t) return;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      await d.target.poison.end(d.src, t.schema, t.table);
      break;
    } catch {
      await pause(2000);
    }
  }
  if (wasOn) {
    const n = await retryDeadLetters(d);
    d.timeline.note(`dead letters: the target accepts the poisoned rows again; ${n} dead letter(s) re-sent`);
  }
}

async function partitionLoop(d: OperationDeps): Promise<void> {
  let next = INITIAL_REGIONS;
  while (!d.signal.aborted) {
    await pause(d.rng.int(30_000, 60_000), d.signal);
    if (d.signal.aborted) return;
    const c = await d.src.connect().catch(() => null);
    if (!c) continue;
    try {
      await c.query('begin');
      await c.query(`set local lock_timeout = '2s'`);
      await c.query(`create table ${SCHEMA}.parted_r${next} partition of ${SCHEMA}.parted for values in (${next})`);
      await c.query('commit');
      d.workload.regions!.push(next);
      d.tally.count(d.tally.operations, 'partition added');
      d.timeline.note(`partitions: ${SCHEMA}.parted_r${next} added`);
      next++;
    } catch (err) {
      await c.query('rollback').catch(() => {});
      d.timeline.note(`partitions: adding parted_r${next} failed (${(err as Error).message}); trying again later`);
    } finally {
      c.release();
    }
  }
}

const CONNECTION_TROUBLE = /Connection terminated|ECONN|EPIPE|57P0|not yet accepting|shutting down|starting up|timeout/i;

async function switchLoop(d: OperationDeps): Promise<void> {
  let mode: 'trigger' | 'pgoutput' = 'trigger';
  while (!d.signal.aborted) {
    await pause(d.rng.int(60_000, 120_000), d.signal);
    if (d.signal.aborted) return;
    const to: 'trigger' | 'pgoutput' = mode === 'trigger' ? 'pgoutput' : 'trigger';
    d.timeline.note(`switch: stopping both replicators, then switch-capture ${to}`);
    await d.replicators.hold();
    // Tried again when the source or target went away under it, or when the stream was busy (exit 3:
    // a `verify --repair` that found no replicator applies its repair itself and holds the stream
    // meanwhile); a refusal (an initial load not finished yet) waits for the next round, with the
    // replicators running again meanwhile.
    let res = await cli(d, ['switch-capture', to]);
    for (let attempt = 1; res.code !== 0 && attempt < 5 && (res.code === 3 || CONNECTION_TROUBLE.test(res.stderr)); attempt++) {
      await pause(3000);
      res = await cli(d, ['switch-capture', to]);
    }
    if (res.code === 0) {
      mode = to;
      d.replicators.setEnv({ ...d.replicators.env, PG2CRATE_CAPTURE: to });
      d.tally.count(d.tally.operations, `switch-capture ${to}`);
      d.timeline.note(`switch: the stream captures with ${to}; replicators start in that mode`);
    } else {
      d.tally.count(d.tally.operations, `switch-capture ${to} failed`);
      d.timeline.note(`switch: switch-capture ${to} failed (exit ${res.code}): ${res.stderr.trim().split('\n').pop()}`);
    }
    d.replicators.release();
  }
}
