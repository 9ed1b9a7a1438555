// Verifying one table: is the target a faithful copy of the source?
//
// Phases:
// 1. counts on both sides (after the target's refresh).
// 2. the walk: the SOURCE in key order, `rangeRows` rows at a time. One statement per range returns
//    the range's digest and its last key (keyset pagination on the key index; no OFFSET, no open
//    cursor or long transaction on the source). The target digests the same key range (after, upTo];
//    the last range is open-ended, so rows the target holds beyond the source's last key are in it.
//    The next source range is read while the target answers.
// 3. narrowing: a range whose digests differ is compared row by row. The source's (key, hash) list
//    of the range is held (at most rangeRows; a source that grew past that since the walk is split
//    at its own rangeRows-th key), and the target's rows of the range are paged through by the
//    target's own keys, rangeRows at a time, and matched against it. Only source keys ever bound the
//    source, and the target is only paged by its own keys, so this ends whatever order each side
//    keeps; if the orders disagree, rows may show up in a foreign range, never go unseen.
// 4. in-flight changes: replication is live, so a difference may just not be applied yet. After the
//    walk, verify waits until the replicator has applied everything committed before a snapshot
//    taken then (catch-up-state.ts), refreshes, and re-checks exactly the differing keys by key
//    lookup on both sides. Without a running replicator it re-checks at once and says so. The exact
//    lookup also clears rows that only looked different because the two sides order keys apart.
// 5. repair (optional): events into the outbox for what still differs (resend.ts), wait for catch-up,
//    re-check those keys; up to `repairRounds` rounds. With no replicator running, the caller may
//    apply them in this process (`applyRepairHere`: a catch-up, as `pg2crate catch-up` runs it).
//
// Memory: the rows of one range (rangeRows source hashes plus one page of rangeRows target hashes)
// plus the differing keys, capped at `maxKeys` (beyond it differences are counted only). Not the
// table.
import type { TableInfo } from '../core/change.js';
import type { Logger } from '../core/logger.js';
import { displayName } from '../core/identifiers.js';
import type { CatchUpOutcome } from '../source/catch-up-state.js';
import { DiffSet, type Diff } from './diff-set.js';
import type { ResendCounts } from '../resend.js';
import { differencesOf, type RepairApplied, type RepairReport, type TableReport } from './report.js';
import type { KeyRange, KeyRef, RowHash, VerifySource, VerifyTarget } from './verify-target.js';

export interface VerifySettings {
  /** rows per range of the walk */
  rangeRows: number;
  /** differing keys kept per table (re-checked, repaired, listed) */
  maxKeys: number;
  /** keys listed per kind in the report */
  showKeys: number;
  catchUpTimeoutMs: number;
  repair: boolean;
  repairRounds: number;
}

export const DEFAULT_SETTINGS: VerifySettings = {
  rangeRows: 10_000, maxKeys: 100_000, showKeys: 100, catchUpTimeoutMs: 120_000, repair: false, repairRounds: 3,
};

export interface VerifyTableOptions {
  table: TableInfo;
  /** the source in the target's digest form */
  source: VerifySource;
  target: VerifyTarget;
  settings: VerifySettings;
  /** waits until the replicator applied what is committed now (catch-up-state.ts waitCaughtUp) */
  waitForReplicator: () => Promise<CatchUpOutcome>;
  /** writes repair events: 'U' for `upserts` (source keys), 'D' for `deletes` (target keys) */
  writeRepair: (upserts: KeyRef[], deletes: KeyRef[]) => Promise<ResendCounts>;
  /**
   * applies what is committed now in this process, asked when no replicator runs after a repair
   * round; absent, the repair events wait in the outbox for the next replicator or catch-up
   */
  applyRepairHere?: () => Promise<RepairApplied>;
  logger: Logger;
  signal?: AbortSignal;
}

const RECHECK_BATCH = 10_000;

export async function verifyTable(o: VerifyTableOptions): Promise<TableReport> {
  const started = Date.now();
  const { table: t, source, target, settings: s } = o;
  const name = displayName(t.sourceSchema, t.sourceTable);
  const log = o.logger.child({ component: 'verify', table: name });
  const notes = [...(await target.inspect(t)).notes];
  await target.refresh(t);
  const [sc, tc] = await Promise.all([source.count(t), target.count(t)]);
  log.info({ sourceRows: sc.rows, targetRows: tc.rows }, 'verifying table');
  if (sc.nullKeys > 0 || tc.nullKeys > 0) {
    notes.push(`rows with a NULL key column are compared by count only: ${sc.nullKeys} source / ${tc.nullKeys} target`);
  }

  const first = new DiffSet(s.maxKeys);
  const walk = await walkRanges(o, first);
  const firstPass = first.counts();
  log.info({ ranges: walk.ranges, differingRanges: walk.differing, ...firstPass, notKept: first.dropped }, 'walk done');

  let catchUp: TableReport['catchUp'] = 'not-needed';
  let found = first;
  if (first.size > 0) {
    catchUp = await o.waitForReplicator();
    await target.refresh(t);
    found = await recheck(o, first.keys());
    log.info({ catchUp, ...found.counts() }, 're-checked differing keys');
  }

  let remaining = found;
  let repair: RepairReport | undefined;
  if (s.repair && found.size > 0) {
    const r = await repairRounds(o, found, log);
    remaining = r.remaining;
    repair = { rounds: r.rounds, upserts: r.upserts, deletes: r.deletes, catchUp: r.catchUp, remaining: differencesOf(r.remaining, s.showKeys) };
  }
  const equal = remaining.size === 0 && first.dropped === 0 && sc.nullKeys === tc.nullKeys;
  const report: TableReport = {
    table: name,
    target: displayName(t.targetSchema, t.targetTable),
    equal,
    sourceRows: sc.rows,
    targetRows: tc.rows,
    ranges: walk.ranges,
    differingRanges: walk.differing,
    firstPass,
    catchUp,
    differences: differencesOf(found, s.showKeys),
    notKept: first.dropped,
    repair,
    notes,
    durationMs: Date.now() - started,
  };
  log.info({ equal, ...found.counts(), durationMs: report.durationMs }, 'table verified');
  return report;
}

/** Phases 2 and 3: the walk over source ranges, narrowing each differing range into `diffs`. */
async function walkRanges(o: VerifyTableOptions, diffs: DiffSet): Promise<{ ranges: number; differing: number }> {
  const { table: t, source, target } = o;
  const R = o.settings.rangeRows;
  let ranges = 0;
  let differing = 0;
  let after: KeyRef | null = null;
  let next = source.nextRange(t, null, R);
  for (;;) {
    const walked = await next;
    const range: KeyRange = { after, upTo: walked.rows < R ? null : walked.last };
    ranges++;
    if (range.upTo) {
      next = source.nextRange(t, range.upTo, R);
      next.catch(() => {}); // awaited in the next turn; a failure there must not go unhandled meanwhile
    }
    if ((await target.rangeDigest(t, range)) !== walked.digest) {
      differing++;
      await narrow(o, range, diffs);
    }
    if (!range.upTo || o.signal?.aborted) break;
    after = range.upTo;
  }
  if (o.signal?.aborted) throw o.signal.reason ?? new Error('verify aborted');
  return { ranges, differing };
}

/** Compares a range row by row (phase 3). */
async function narrow(o: VerifyTableOptions, range: KeyRange, diffs: DiffSet): Promise<void> {
  const { table: t, source, target } = o;
  const R = o.settings.rangeRows;
  const todo: KeyRange[] = [range];
  while (todo.length > 0) {
    const r = todo.pop()!;
    const [src, firstPage] = await Promise.all([source.rowHashes(t, r, R + 1), target.rowHashes(t, r, R)]);
    if (src.length > R) {
      // The source grew since the walk: split at its own R-th key. (after, m] holds R source rows,
      // (m, upTo] fewer than before, so this ends; on the target the two halves still cover r.
      const m = src[R - 1].key;
      todo.push({ after: m, upTo: r.upTo }, { after: r.after, upTo: m });
      continue;
    }
    const unseen = new Map<string, RowHash>();
    for (const h of src) unseen.set(h.key.text, h);
    let page = firstPage;
    for (;;) {
      for (const h of page) {
        const s = unseen.get(h.key.text);
        if (!s) diffs.add('extra', h.key);
        else {
          if (s.hash !== h.hash) diffs.add('different', s.key);
          unseen.delete(h.key.text);
        }
      }
      if (page.length < R) break;
      // The next page after the target's own last key: inside r on the target, whatever its order.
      page = await target.rowHashes(t, { after: page[page.length - 1].key, upTo: r.upTo }, R);
    }
    for (const s of unseen.values()) diffs.add('missing', s.key);
  }
}

/** Looks the keys up on both sides by exact key and keeps what still differs. */
async function recheck(o: VerifyTableOptions, keys: KeyRef[]): Promise<DiffSet> {
  const { table: t, source, target } = o;
  const out = new DiffSet(o.settings.maxKeys);
  for (let i = 0; i < keys.length; i += RECHECK_BATCH) {
    const batch = keys.slice(i, i + RECHECK_BATCH);
    const [src, dst] = await Promise.all([source.rowHashesByKeys(t, batch), target.rowHashesByKeys(t, batch)]);
    out.compare(src, dst);
  }
  return out;
}

async function repairRounds(o: VerifyTableOptions, found: DiffSet, log: Logger): Promise<{ remaining: DiffSet; rounds: number; upserts: number; deletes: number; catchUp: RepairApplied }> {
  let pending = found;
  let rounds = 0;
  let upserts = 0;
  let deletes = 0;
  let catchUp: RepairApplied = 'caught-up';
  while (pending.size > 0 && rounds < o.settings.repairRounds) {
    rounds++;
    const diffs: Diff[] = [...pending.diffs()];
    const written = await o.writeRepair(
      diffs.filter((d) => d.kind !== 'extra').map((d) => d.key),
      diffs.filter((d) => d.kind === 'extra').map((d) => d.key),
    );
    upserts += written.upserts;
    deletes += written.deletes;
    log.info({ round: rounds, ...written }, 'repair events written');
    catchUp = await o.waitForReplicator();
    if (catchUp === 'no-replicator' && o.applyRepairHere) {
      catchUp = await o.applyRepairHere();
      log.info({ round: rounds, catchUp }, 'no replicator was running: applied the repair here');
    }
    if (catchUp === 'no-replicator') break;
    await o.target.refresh(o.table);
    pending = await recheck(o, pending.keys());
  }
  return { remaining: pending, rounds, upserts, deletes, catchUp };
}
