// The soak: `npm run soak -- --minutes=N [--seed=S] [--target=postgres|cratedb] [--partitions] [--switch]`.
//
// For N minutes, all at once: 4–8 writers (writers.ts, transactions.ts), faults at random moments
// (faults.ts: SIGKILL of the active replicator with a standby taking over, source restarts fast and
// immediate, the target away), and operations through the CLI (operations.ts: an initial load of
// 200,000 rows that starts mid-run, verify --repair, dead letters and their retry, retention every
// few seconds). Then: writers stopped, wait until the target equals the source, replicators stopped,
// every table compared row by row and every committed event checked against the drainer's windows
// (audit.ts). Exit 0 with the totals when nothing differs; exit 1 with the evidence kept under
// .tmp/soak/<timestamp>/ otherwise; exit 2 when the soak itself could not run (or the pg2crate build in
// the working tree changed under it: a new migration); 130 on Ctrl-C.
// Everything it starts (clusters, processes, the proxy, a CrateDB schema) is stopped on every way out.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { startCluster } from '../helpers/cluster.js';
import { killReplicators, runCli } from '../helpers/child-replicator.js';
import { pool, waitFor } from '../helpers/replication.js';
import { countEvents, installAudit } from './audit.js';
import { runFaults } from './faults.js';
import { finalChecks, logTotals, printTotals, waitDrained, waitUntilEqual, writeEvidence } from './finish.js';
import { endPoison, runOperations } from './operations.js';
import { parseOptions, UsageError, type SoakOptions } from './options.js';
import { pause, Rng } from './random.js';
import { ReplicatorPair } from './replicators.js';
import { BASE_TABLES, createSourceTables, fillBigTable, INITIAL_REGIONS, PARTED_TABLE, qualified } from './source-schema.js';
import { formatCounts, Tally, Timeline } from './tally.js';
import { startCrateTarget, startPostgresTarget, type SoakTarget } from './target.js';
import { runWriter, type Workload } from './writers.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** What was started, stopped in reverse order on every way out. */
class Cleanup {
  readonly #steps: { name: string; fn: () => Promise<void> }[] = [];
  push(name: string, fn: () => Promise<void>): void {
    this.#steps.push({ name, fn });
  }
  async run(): Promise<void> {
    for (let s = this.#steps.pop(); s; s = this.#steps.pop()) {
      try {
        await s.fn();
      } catch (err) {
        process.stderr.write(`soak: cleanup of ${s.name} failed: ${(err as Error)?.message ?? err}\n`);
      }
    }
  }
}

async function soak(opts: SoakOptions, timeline: Timeline, cleanup: Cleanup, runDir: string, interrupted: AbortSignal): Promise<number> {
  const rng = new Rng(opts.seed);
  const tally = new Tally();
  const runMs = opts.minutes * 60_000;
  const writers = opts.writers ?? rng.derive('writers').int(4, 8);
  // (pages of 100 cannot keep up with the writers on 2 cores; 250 still makes many pages per window)
  const pageSize = rng.derive('page').pick([250, 1000, 5000]);
  const repeat = `npm run soak -- --minutes=${opts.minutes} --seed=${opts.seed} --target=${opts.target}${opts.partitions ? ' --partitions' : ''}${opts.switchCapture ? ' --switch' : ''}`;
  timeline.note(`seed ${opts.seed}; ${opts.minutes} min against ${opts.target}, ${writers} writers, page size ${pageSize}${opts.partitions ? ', partitions' : ''}${opts.switchCapture ? ', capture switches' : ''}`);
  timeline.note(`repeat with: ${repeat}`);
  timeline.note(`run folder: ${runDir}`);

  // The source: a cluster of its own (never a system service, never TEST_DATABASE_URL's server).
  delete process.env.TEST_DATABASE_URL;
  const source = await startCluster();
  cleanup.push('source cluster', () => source.stop());
  const srcUrl = await source.createDatabase('soak_src');
  const src: pg.Pool = pool(srcUrl, 6);
  src.on('error', () => {});
  cleanup.push('source pool', () => src.end());
  // Async commit would let an immediate shutdown take back a commit the drainer already applied.
  await src.query(`alter database "${new URL(srcUrl).pathname.slice(1)}" set synchronous_commit = on`);
  const target: SoakTarget = opts.target === 'cratedb' ? await startCrateTarget(process.env.CRATEDB_URL!) : await startPostgresTarget();
  cleanup.push('target', () => target.close());
  timeline.note(`source ${srcUrl}; target ${target.describe()}`);
  if (interrupted.aborted) return 130;

  await createSourceTables(src, opts.partitions);
  await fillBigTable(src);
  const tables = [...BASE_TABLES, ...(opts.partitions ? [PARTED_TABLE] : [])].map(qualified);
  const env: Record<string, string> = {
    DATABASE_URL: srcUrl, ...target.env, PG2CRATE_TABLES: tables.join(','), PG2CRATE_PAGE_SIZE: String(pageSize),
    // retention every 4 seconds, generations rotated once they hold 64 kB
    PG2CRATE_RETENTION_CRON: '*/4 * * * * *', PG2CRATE_RETENTION_ROTATE_KB: '64',
    PG2CRATE_BACKFILL_CHUNK_ROWS: '5000', PG2CRATE_REJECT_ATTEMPTS: '2', PG2CRATE_CAPTURE: 'trigger', LOG_LEVEL: 'info',
  };
  const migrated = await runCli({ ...env, LOG_LEVEL: 'warn' }, ['migrate']);
  if (migrated.code !== 0) throw new Error(`pg2crate migrate failed (${migrated.code}): ${migrated.stderr || migrated.stdout}`);
  await installAudit(src);

  // The working tree may change under a long run (a new migration): the replicators started after
  // that refuse the schema, and what the run would prove is no longer about one build.
  const voided = new AbortController();
  const halt = AbortSignal.any([interrupted, voided.signal]);
  const replicators = new ReplicatorPair(env, timeline, (reason) => {
    if (voided.signal.aborted) return;
    timeline.note(`the pg2crate build changed during the run (${reason}); the run is void: run it again on a tree that stays put`);
    voided.abort();
  });
  cleanup.push('replicators', async () => {
    await replicators.close();
    await killReplicators();
  });
  replicators.fill();
  await waitFor('a replicator to hold the stream', () => replicators.active() !== null, 60_000, 200);
  timeline.note(`replicators: ${replicators.describe()} (* holds the stream); writers start`);

  const stopWriters = new AbortController();
  const stopFaults = new AbortController();
  halt.addEventListener('abort', () => { stopWriters.abort(); stopFaults.abort(); }, { once: true });
  const merge = Number((await src.query<{ v: string }>(`select current_setting('server_version_num') as v`)).rows[0].v) >= 150000;
  if (!merge) timeline.note('no MERGE transactions: MERGE needs PostgreSQL 15+');
  const workload: Workload = {
    srcUrl, tally, signal: stopWriters.signal, poison: null, merge, regions: opts.partitions ? Array.from({ length: INITIAL_REGIONS }, (_, i) => i) : null,
    longOpen: 0, nextExclusiveAt: Date.now() + 10_000, nextColumn: 1, note: (line) => timeline.note(line),
  };
  const writing = Promise.all(Array.from({ length: writers }, (_, i) => runWriter(i + 1, rng.derive(`writer ${i + 1}`), workload)));
  const faulting = runFaults({ rng: rng.derive('faults'), tally, timeline, replicators, source, target, short: opts.minutes <= 3, signal: stopFaults.signal });
  const operating = runOperations({
    rng: rng.derive('operations'), tally, timeline, replicators, src, target, workload, runDir, runMs, partitions: opts.partitions,
    switchCapture: opts.switchCapture, signal: stopFaults.signal,
  });
  const progress = startProgress(src, tally, timeline, replicators);
  cleanup.push('progress', async () => progress.stop());

  await pause(runMs, halt);
  if (interrupted.aborted) return 130;
  if (voided.signal.aborted) return 2;
  timeline.note('time is up: faults and operations end, then the writers stop');
  stopFaults.abort();
  await Promise.all([faulting, operating]);
  stopWriters.abort();
  await writing;
  const endedAt = Date.now();
  timeline.note(`writers stopped after ${tally.committed.toLocaleString('en')} committed transactions; waiting until the target equals the source`);
  await endPoison({ workload, target, src, replicators, runDir, timeline, tally });

  const finish = { src, side: target.side, replicators, tally, timeline, runDir, catchUpTimeoutMs: 180_000 + runMs / 4, signal: halt };
  const differing = await waitUntilEqual(finish);
  if (interrupted.aborted) return 130;
  if (voided.signal.aborted) return 2;
  if (differing.length === 0) timeline.note(`target equals source (${((Date.now() - endedAt) / 1000).toFixed(0)} s after the writers stopped)`);
  else timeline.note(`the target did not become equal to the source in time: ${differing.join(', ')}`);
  const undrained = await waitDrained(finish);
  if (undrained !== 0) timeline.note(`${undrained} committed event(s) are still not in a done window`);
  progress.stop();
  await replicators.close();
  timeline.note('replicators stopped; comparing every table row by row and checking every event against the windows');

  const outcome = await finalChecks(finish);
  const totals = {
    minutes: opts.minutes, target: target.describe(), seed: opts.seed, repeat, outcome, tally,
    retention: logTotals(replicators.processes.map((p) => p.logFile)), extraMs: Date.now() - endedAt, crashed: replicators.crashed,
  };
  if (replicators.crashed.length > 0) {
    mkdirSync(join(runDir, 'crashed-replicators'), { recursive: true });
    for (const c of replicators.crashed) copyFileSync(c.logFile, join(runDir, 'crashed-replicators', basename(c.logFile)));
  }
  const summary = {
    options: opts, writers, pageSize, repeat, committed: tally.committed, rolledBack: tally.rolledBack, conflicts: tally.conflicts,
    connectionErrors: tally.connectionErrors, unexpected: tally.unexpected, unexpectedSamples: tally.unexpectedSamples,
    byKind: Object.fromEntries(tally.byKind), faults: Object.fromEntries(tally.faults), operations: Object.fromEntries(tally.operations),
    replicatorsExitedByThemselves: replicators.crashed.map((c) => ({ name: c.name, pid: c.pid, code: c.code, reason: c.reason })),
    events: outcome.events, windows: outcome.windows.doneWindows, windowViolations: outcome.windows.violationCount, retention: totals.retention,
    tables: outcome.diffs.map((d) => ({ table: d.table, target: d.target, sourceRows: d.sourceRows, targetRows: d.targetRows, missing: d.missing, extra: d.extra, different: d.different })),
    differences: outcome.differences,
  };
  writeFileSync(join(runDir, 'summary.json'), JSON.stringify(summary, null, 2));
  const out = (line: string) => timeline.note(line);
  if (outcome.differences > 0) {
    const files = await writeEvidence({ runDir, src, diffs: outcome.diffs, windows: outcome.windows, replicators: replicators.processes, summary });
    printTotals(totals, out);
    for (const d of outcome.diffs.filter((x) => x.missing + x.extra + x.different > 0)) {
      out(`DIFFERENT ${d.table} → ${d.target}: ${d.missing} missing, ${d.extra} extra, ${d.different} different (source ${d.sourceRows}, target ${d.targetRows} rows); first keys: ${d.rows.slice(0, 5).map((r) => r.key).join(' ')}`);
    }
    for (const v of outcome.windows.violations.slice(0, 10)) out(`WINDOW ${v.kind}: ${JSON.stringify(v.event ?? {})} ${v.note ?? ''}`);
    out(`evidence kept in ${runDir} (${files.join(', ')})`);
    return 1;
  }
  printTotals(totals, out);
  return 0;
}

interface Progress {
  stop(): void;
}

/** A line every ten seconds for a person watching. */
function startProgress(src: pg.Pool, tally: Tally, timeline: Timeline, replicators: ReplicatorPair): Progress {
  let last = 0;
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const [events, backlog] = await Promise.all([
        countEvents(src).catch(() => null),
        src.query<{ n: number }>(`select count(*)::int as n from pg2crate.outbox o, pg2crate.checkpoint c
                                   where c.stream = 'main' and (c.prev_snapshot is null or not pg_visible_in_snapshot(o.xid, c.prev_snapshot))`).then((r) => r.rows[0].n, () => null),
      ]);
      timeline.note(`tx ${tally.committed.toLocaleString('en')} (+${(tally.committed - last).toLocaleString('en')}), events ${events?.toLocaleString('en') ?? '(source down)'}, backlog ${backlog ?? '?'}, `
        + `replicators ${replicators.describe()}, faults ${formatCounts(tally.faults)}, conflicts ${tally.conflicts}, connection errors ${tally.connectionErrors}, unexpected ${tally.unexpected}`);
      last = tally.committed;
    } finally {
      busy = false;
    }
  }, 10_000);
  return { stop: () => clearInterval(timer) };
}

async function main(): Promise<number> {
  let opts: SoakOptions;
  try {
    opts = parseOptions(process.argv.slice(2), process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message ? `soak: ${err.message}\n` : ''}${err.usage}`);
      return 2;
    }
    throw err;
  }
  const runDir = join(ROOT, '.tmp', 'soak', new Date().toISOString().replace(/[:.]/g, '-'));
  mkdirSync(runDir, { recursive: true });
  const timeline = new Timeline();
  timeline.writeTo(join(runDir, 'soak.log'));
  const cleanup = new Cleanup();
  const interrupt = new AbortController();
  let signals = 0;
  let cleaning: Promise<void> | null = null;
  const onSignal = (sig: NodeJS.Signals) => {
    if (++signals > 1) process.exit(130); // the helpers' exit hooks still kill the clusters and children
    timeline.note(`${sig}: stopping everything the soak started (again to exit at once)`);
    interrupt.abort();
    cleaning = cleanup.run();
    cleaning.finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('unhandledRejection', (err) => timeline.note(`unhandled rejection: ${(err as Error)?.stack ?? err}`));
  try {
    return await soak(opts, timeline, cleanup, runDir, interrupt.signal);
  } catch (err) {
    if (interrupt.signal.aborted) return 130;
    timeline.note(`the soak itself failed: ${(err as Error)?.stack ?? err}`);
    return 2;
  } finally {
    // after a signal the handler is cleaning up already: wait for it
    await (cleaning ?? cleanup.run());
  }
}

main().then((code) => process.exit(code), (err) => {
  process.stderr.write(`soak: ${(err as Error)?.stack ?? err}\n`);
  process.exit(2);
});
