// The end of a soak: once the writers have stopped, wait until the target equals the source (that is
// what caught up means here; the replicator's own counters and status are never asked), then stop
// the replicators, compare every table row by row, check every event against the windows, and
// either print the totals or keep the evidence.
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { checkWindows, countEvents, undrainedEvents, type WindowReport } from './audit.js';
import { compareTable, differences, sameRows, tablesToCompare, type TableDiff, type TargetSide } from './compare.js';
import { writeEvidence } from './evidence.js';
import { retryDeadLetters } from './operations.js';
import { pause } from './random.js';
import type { ReplicatorPair } from './replicators.js';
import { formatCounts, type Tally, type Timeline } from './tally.js';

export interface FinishDeps {
  src: pg.Pool;
  side: TargetSide;
  replicators: ReplicatorPair;
  tally: Tally;
  timeline: Timeline;
  runDir: string;
  catchUpTimeoutMs: number;
  /** ends the waiting early (Ctrl-C, a void run) */
  signal: AbortSignal;
}

/**
 * Waits until every registered table is equal on both sides; returns the tables that still differ at
 * the deadline. The deadline moves on while the drain makes progress (fewer events outside done
 * windows than before: a big backlog takes its time), up to half an hour more. It gives up early when
 * nothing is left that could still change the target: every committed event in a done window, no
 * initial load running, no dead letter waiting, for a minute.
 */
export async function waitUntilEqual(d: FinishDeps): Promise<string[]> {
  const start = Date.now();
  let deadline = start + d.catchUpTimeoutMs;
  let pendingBefore = Infinity;
  let lastRetry = Date.now();
  let lastNote = 0;
  let settledSince: number | null = null;
  let differing: string[] = [];
  for (;;) {
    d.replicators.fill();
    differing = [];
    try {
      for (const t of await tablesToCompare(d.src)) {
        if (!(await sameRows(d.src, d.side, t))) differing.push(t.source);
      }
    } catch (err) {
      differing = [`(comparison failed: ${(err as Error).message})`];
    }
    if (differing.length === 0) return [];
    const pending = await undrainedEvents(d.src).catch(() => Infinity);
    if (pending < pendingBefore) deadline = Math.min(start + 30 * 60_000, Math.max(deadline, Date.now() + 120_000));
    pendingBefore = pending;
    if (Date.now() > deadline || d.signal.aborted) return differing;
    if (await settled(d)) {
      settledSince ??= Date.now();
      if (Date.now() - settledSince > 60_000) return differing;
    } else {
      settledSince = null;
    }
    // Letters parked before the poison phase ended are sent again (an operator would do the same).
    if (Date.now() - lastRetry > 15_000) {
      lastRetry = Date.now();
      const parked = await d.src.query<{ n: number }>(`select count(*)::int as n from pg2crate.dead_letters`).then((r) => r.rows[0].n, () => 0);
      if (parked > 0) {
        const n = await retryDeadLetters(d);
        d.timeline.note(`catching up: ${parked} dead letter(s) parked, ${n} re-sent`);
      }
    }
    if (Date.now() - lastNote > 10_000) {
      lastNote = Date.now();
      d.timeline.note(`catching up: not equal yet: ${differing.join(', ')}; ${Number.isFinite(pending) ? pending.toLocaleString('en') : '?'} committed event(s) not in a done window yet`);
    }
    await pause(2000, d.signal);
  }
}

/** Nothing is in flight: every event drained, every initial load done, no dead letter parked. */
async function settled(d: FinishDeps): Promise<boolean> {
  try {
    const busy = await d.src.query<{ n: number }>(
      `select (select count(*) from pg2crate.backfills where status <> 'done')::int + (select count(*) from pg2crate.dead_letters)::int as n`,
    );
    return busy.rows[0].n === 0 && (await undrainedEvents(d.src)) === 0;
  } catch {
    return false;
  }
}

/** Waits until every audited event is in a done window (visible in the checkpoint's prev_snapshot). */
export async function waitDrained(d: FinishDeps, timeoutMs = 120_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const n = await undrainedEvents(d.src).catch(() => -1);
    if (n === 0 || Date.now() > deadline || d.signal.aborted) return n;
    await pause(1000);
  }
}

export interface Outcome {
  diffs: TableDiff[];
  windows: WindowReport;
  events: number;
  /** events by operation: I, U, D, T (truncate), B (initial load through the outbox) */
  eventsByOp: Map<string, number>;
  differences: number;
}

/** With the replicators stopped: every table row by row, every event against the windows. */
export async function finalChecks(d: FinishDeps): Promise<Outcome> {
  const diffs: TableDiff[] = [];
  for (const t of await tablesToCompare(d.src)) diffs.push(await compareTable(d.src, d.side, t));
  await d.src.query(`create index if not exists soak_events_id on soak_audit.events (id)`);
  const windows = await checkWindows(d.src);
  const events = await countEvents(d.src);
  const byOp = await d.src.query<{ op: string; n: string }>(`select op::text, count(*)::text as n from soak_audit.events group by op`);
  const eventsByOp = new Map(byOp.rows.map((r) => [r.op, Number(r.n)]));
  const differences_ = diffs.reduce((s, x) => s + differences(x), 0) + windows.violationCount;
  return { diffs, windows, events, eventsByOp, differences: differences_ };
}

/**
 * Read from the replicators' logs, only to show what ran: retention's work, and how often the
 * drainer's guard of the lower id bound kept a bound that would have skipped events.
 */
export function logTotals(files: string[]): { truncated: number; rotated: number; boundGuard: number } {
  let truncated = 0;
  let rotated = 0;
  let boundGuard = 0;
  for (const f of files) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    truncated += text.split('"msg":"truncated applied outbox generation"').length - 1;
    rotated += text.split('"msg":"outbox writers moved to the next generation"').length - 1;
    boundGuard += text.split('"msg":"window bound guard:').length - 1;
  }
  return { truncated, rotated, boundGuard };
}

export interface Totals {
  minutes: number;
  target: string;
  seed: number;
  repeat: string;
  outcome: Outcome;
  tally: Tally;
  retention: { truncated: number; rotated: number; boundGuard: number };
  extraMs: number;
  crashed: readonly { name: string; code: number | string; reason: string }[];
}

export function printTotals(t: Totals, out: (line: string) => void): void {
  const o = t.outcome;
  const rows = o.diffs.map((d) => `${d.table} ${d.sourceRows.toLocaleString('en')}`).join(', ');
  out(`minutes run: ${t.minutes} of writes and faults (then ${(t.extraMs / 60_000).toFixed(1)} min to catch up and check)`);
  out(`target: ${t.target}`);
  out(`seed: ${t.seed} (repeat: ${t.repeat})`);
  out(`transactions committed: ${t.tally.committed.toLocaleString('en')} (rolled back on purpose ${t.tally.rolledBack}, conflicts skipped ${t.tally.conflicts}, lost to connection errors ${t.tally.connectionErrors}, unexpected errors ${t.tally.unexpected})`);
  out(`  by kind: ${formatCounts(t.tally.byKind)}`);
  out(`events: ${o.events.toLocaleString('en')} committed outbox events (${formatCounts(o.eventsByOp)}); ${o.windows.doneWindows.toLocaleString('en')} windows; window check: ${o.windows.violationCount} violation(s)${o.windows.violationCount ? ` (${Object.entries(o.windows.violationsByKind).map(([k, n]) => `${k} ${n}`).join(', ')})` : ''}${o.windows.slotEvents ? ` (${o.windows.slotEvents} events carried by the slot)` : ''}`);
  out(`faults injected: ${formatCounts(t.tally.faults)}`);
  out(`operations: ${formatCounts(t.tally.operations)}; retention truncated ${t.retention.truncated} generation(s), rotated ${t.retention.rotated} time(s)`);
  out(`rows compared: ${rows}`);
  if (t.retention.boundGuard > 0) out(`the drainer's window bound guard fired ${t.retention.boundGuard} time(s) (it kept a lower id bound that would have skipped events; see the replicator logs)`);
  if (t.crashed.length > 0) {
    // Not a difference (the standby took over), but not a fault the soak injected either.
    const reasons = new Map<string, number>();
    for (const c of t.crashed) reasons.set(c.reason, (reasons.get(c.reason) ?? 0) + 1);
    out(`replicator processes that exited by themselves: ${t.crashed.length} (logs in crashed-replicators/)`);
    for (const [reason, n] of reasons) out(`  ${n}× ${reason}`);
  }
  for (const s of t.tally.unexpectedSamples) out(`  unexpected writer error: ${s}`);
  out(`differences found: ${o.differences}`);
}

export { writeEvidence };
