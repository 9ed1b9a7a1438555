// What verify reports per table, and its text form. Keys only, never other values: a key is shown as
// the JSON object of its key columns.
import type { CatchUpOutcome } from '../source/catch-up-state.js';
import { DIFF_KINDS, type DiffKind, type DiffSet } from './diff-set.js';

export interface KeyList {
  /** how many keys differ this way */
  count: number;
  /** the first of them (up to the show limit), as key JSON */
  keys: string[];
}

export type Differences = Record<DiffKind, KeyList>;

/** how the repair events of the last round were applied: by the running replicator, or here ('applied-here') */
export type RepairApplied = CatchUpOutcome | 'applied-here';

export interface RepairReport {
  rounds: number;
  /** events written: 'U' for missing and different keys, 'D' for extra keys */
  upserts: number;
  deletes: number;
  catchUp: RepairApplied;
  /** what still differs after the last round (re-checked by key after the replicator caught up) */
  remaining: Differences;
}

export interface TableReport {
  /** source table, schema.table */
  table: string;
  target: string;
  /** equal after everything (with repair: after the repair) */
  equal: boolean;
  sourceRows: number;
  targetRows: number;
  ranges: number;
  differingRanges: number;
  /** differences found in the walk, before waiting for changes in flight */
  firstPass: Record<DiffKind, number>;
  /** waiting for the replicator before the re-check; 'not-needed' when the walk found nothing */
  catchUp: CatchUpOutcome | 'not-needed';
  /** what differs after the re-check (before any repair) */
  differences: Differences;
  /** differences beyond the key limit: counted, not re-checked nor repaired */
  notKept: number;
  repair?: RepairReport;
  notes: string[];
  durationMs: number;
}

export function differencesOf(set: DiffSet, show: number): Differences {
  const out = {} as Differences;
  for (const kind of DIFF_KINDS) out[kind] = { count: 0, keys: [] };
  for (const d of set.diffs()) {
    const l = out[d.kind];
    l.count++;
    if (l.keys.length < show) l.keys.push(d.key.json);
  }
  return out;
}

function countsLine(d: Differences): string {
  return DIFF_KINDS.map((k) => `${k} ${d[k].count}`).join(', ');
}

function keyLines(d: Differences, indent: string): string[] {
  const lines: string[] = [];
  for (const kind of DIFF_KINDS) {
    const l = d[kind];
    if (l.count === 0) continue;
    const more = l.count - l.keys.length;
    lines.push(`${indent}${kind}: ${l.keys.join(' ')}${more > 0 ? ` … and ${more} more` : ''}`);
  }
  return lines;
}

const CATCH_UP_TEXT: Record<TableReport['catchUp'], string> = {
  'not-needed': '',
  'caught-up': 're-checked after the replicator caught up',
  'no-replicator': 'no replicator is running: re-checked without waiting, so changes not yet applied show as differences',
  timeout: 'the replicator did not catch up in time: re-checked anyway, so changes in flight may show as differences',
};

/** The text form: one summary line per table, then the differing keys and notes, indented. */
export function formatTableReport(r: TableReport): string[] {
  const verdict = r.equal ? 'equal' : 'DIFFERENT';
  const lines = [
    `${r.table} → ${r.target}: ${verdict}; rows ${r.sourceRows} source / ${r.targetRows} target; ` +
      `${r.ranges} range(s) checked, ${r.differingRanges} differing; ${countsLine(r.differences)} (${(r.durationMs / 1000).toFixed(1)} s)`,
  ];
  lines.push(...keyLines(r.differences, '  '));
  const first = DIFF_KINDS.reduce((n, k) => n + r.firstPass[k], 0);
  const now = DIFF_KINDS.reduce((n, k) => n + r.differences[k].count, 0);
  if (first > now) lines.push(`  ${first - now} difference(s) of the first pass did not hold up on re-check (changes in flight, or keys the two sides order differently)`);
  if (CATCH_UP_TEXT[r.catchUp]) lines.push(`  ${CATCH_UP_TEXT[r.catchUp]}`);
  if (r.notKept > 0) lines.push(`  ${r.notKept} more difference(s) beyond the key limit were counted but not re-checked nor repaired; run again`);
  if (r.repair) {
    const rp = r.repair;
    lines.push(`  repair: ${rp.upserts} row(s) re-copied, ${rp.deletes} delete(s) sent in ${rp.rounds} round(s); remaining: ${countsLine(rp.remaining)}`);
    if (rp.catchUp === 'applied-here') lines.push('  no replicator was running: verify applied the repair itself (as catch-up does) and re-checked');
    else if (rp.catchUp === 'no-replicator') lines.push('  repair events are in the outbox; no replicator is running to apply them (run `pg2crate catch-up`)');
    else if (rp.catchUp === 'timeout') lines.push('  the replicator did not apply the repair in time; run verify again');
    lines.push(...keyLines(rp.remaining, '    '));
  }
  for (const n of r.notes) lines.push(`  note: ${n}`);
  return lines;
}
