// The soak's own record of the outbox and the checkpoint, installed in the source at setup (never in
// the product), and the window check it allows at the end.
//
// - soak_audit.events: (id, xid, table_id, op, key) of every outbox row, copied by statement triggers
//   with a transition table on pg2crate.outbox (inserts that name the parent) and on each partition
//   (inserts that name a partition). It is written in the writer's transaction: events of aborted
//   transactions are not in it, and retention's TRUNCATE of a partition fires no row trigger, so it
//   keeps every committed event.
// - soak_audit.checkpoints: every version of pg2crate.checkpoint (prev/cur snapshot, cur_upper,
//   low_id, after_id), and soak_audit.marks every window mark, in commit order of the one drainer.
//
// The check: windows are read from the checkpoint's versions (a window opens when cur_snapshot is set
// and is done when prev_snapshot takes its value). Every committed event must lie in exactly one
// done window (its xid visible in the window's cur and not in its prev) and within that window's id
// bounds (low_id < id <= cur_upper). Snapshots along the chain only grow, so the first window whose
// cur sees an xid is found by binary search; the chain and its growth are checked too.
// With --switch the chain breaks where the slot took over: from the switch's final snapshot F (the
// last window's cur) to the resume snapshot R (the next window's prev), both recorded in
// pg2crate.capture (soak_audit.capture keeps them). An event not visible in F and visible in R (or
// not visible in F when the run ends in pgoutput mode) was the slot's to carry, not a window's.
import type pg from 'pg';
import { parseSnapshot, visible, type Snapshot } from './snapshot.js';

export async function installAudit(db: pg.Pool, schema = 'pg2crate'): Promise<void> {
  const s = (name: string) => `"${schema}".${name}`;
  await db.query(`
    create schema soak_audit;
    create table soak_audit.events (id bigint not null, xid xid8 not null, table_id integer, op "char", gen smallint, key jsonb, mode text,
                                    at timestamptz not null default clock_timestamp());
    create table soak_audit.checkpoints (seq bigserial primary key, at timestamptz not null default clock_timestamp(), stream text,
                                         prev_snapshot text, cur_snapshot text, cur_upper bigint, low_id bigint, after_id bigint, windows bigint);
    create table soak_audit.marks (seq bigserial primary key, at timestamptz not null default clock_timestamp(), stream text, xid_after xid8, seq_before bigint);

    create function soak_audit.copy_events() returns trigger language plpgsql as $$
    begin
      insert into soak_audit.events (id, xid, table_id, op, gen, key, mode)
      select n.id, n.xid, n.table_id, n.op, n.gen,
             case when n.data is null or t.key_columns is null then null
                  else (select jsonb_object_agg(k, n.data -> k) from unnest(t.key_columns) k) end,
             (select c.mode from ${s('capture')} c where c.stream = 'main')
        from soak_new n left join ${s('tables')} t on t.id = n.table_id;
      return null;
    end $$;
    create trigger soak_audit after insert on ${s('outbox')} referencing new table as soak_new for each statement execute function soak_audit.copy_events();
    create trigger soak_audit after insert on ${s('outbox_0')} referencing new table as soak_new for each statement execute function soak_audit.copy_events();
    create trigger soak_audit after insert on ${s('outbox_1')} referencing new table as soak_new for each statement execute function soak_audit.copy_events();
    create trigger soak_audit after insert on ${s('outbox_2')} referencing new table as soak_new for each statement execute function soak_audit.copy_events();

    create function soak_audit.copy_checkpoint() returns trigger language plpgsql as $$
    begin
      insert into soak_audit.checkpoints (stream, prev_snapshot, cur_snapshot, cur_upper, low_id, after_id, windows)
      values (new.stream, new.prev_snapshot::text, new.cur_snapshot::text, new.cur_upper, new.low_id, new.after_id, new.windows);
      return null;
    end $$;
    create trigger soak_audit after insert or update on ${s('checkpoint')} for each row execute function soak_audit.copy_checkpoint();

    create function soak_audit.copy_mark() returns trigger language plpgsql as $$
    begin
      insert into soak_audit.marks (stream, xid_after, seq_before) values (new.stream, new.xid_after, new.seq_before);
      return null;
    end $$;
    create trigger soak_audit after insert on ${s('window_marks')} for each row execute function soak_audit.copy_mark();

    -- capture-mode switches (--switch): the snapshots where the outbox hands over to the slot and back
    create table soak_audit.capture (seq bigserial primary key, at timestamptz not null default clock_timestamp(), stream text, mode text,
                                     final_snapshot text, resume_snapshot text, resume_low_id bigint);
    create function soak_audit.copy_capture() returns trigger language plpgsql as $$
    begin
      insert into soak_audit.capture (stream, mode, final_snapshot, resume_snapshot, resume_low_id)
      values (new.stream, new.mode, new.final_snapshot::text, new.resume_snapshot::text, new.resume_low_id);
      return null;
    end $$;
    create trigger soak_audit after insert or update on ${s('capture')} for each row execute function soak_audit.copy_capture();
  `);
}

/** Committed events not yet in a done window (not visible in the checkpoint's prev_snapshot). */
export async function undrainedEvents(db: pg.Pool, schema = 'pg2crate'): Promise<number> {
  const res = await db.query<{ n: string }>(
    `select count(*)::text as n from soak_audit.events e, "${schema}".checkpoint c
      where c.stream = 'main' and (c.prev_snapshot is null or not pg_visible_in_snapshot(e.xid, c.prev_snapshot))
        and coalesce(e.mode, 'trigger') = 'trigger'`,
  );
  return Number(res.rows[0].n);
}

export async function countEvents(db: pg.Pool): Promise<number> {
  return Number((await db.query<{ n: string }>(`select count(*)::text as n from soak_audit.events`)).rows[0].n);
}

interface Window {
  /** position in the checkpoint history where it opened */
  seq: number;
  prevText: string | null;
  curText: string;
  prev: Snapshot | null;
  cur: Snapshot;
  low: number;
  upper: number;
  done: boolean;
}

export interface WindowViolation {
  kind: 'no-window' | 'several-windows' | 'below-low' | 'above-upper' | 'not-drained' | 'duplicate-event' | 'chain';
  event?: { id: number; xid: string; tableId: number | null; op: string; mode: string | null };
  windows?: { seq: number; prev: string | null; cur: string; low: number; upper: number; done: boolean }[];
  note?: string;
}

export interface WindowReport {
  events: number;
  windows: number;
  doneWindows: number;
  /** events the slot carried (pgoutput periods of --switch): not the windows' business */
  slotEvents: number;
  violations: WindowViolation[];
  violationCount: number;
  /** every violation counted by kind (the list above keeps the first ones only) */
  violationsByKind: Record<string, number>;
}

const KEEP = 2000;

/** Checks every audited event against the windows of the checkpoint history. */
export async function checkWindows(db: pg.Pool, schema = 'pg2crate'): Promise<WindowReport> {
  const capture = await db.query<{ final: string | null; resume: string | null }>(
    `select c.final_snapshot as final, c.resume_snapshot as resume from soak_audit.capture c where c.stream = 'main' order by c.seq`,
  );
  const finals = new Set(capture.rows.map((r) => r.final).filter((x): x is string => x !== null));
  const resumes = new Set(capture.rows.map((r) => r.resume).filter((x): x is string => x !== null));
  const endMode = (await db.query<{ mode: string }>(`select mode from "${schema}".capture where stream = 'main'`)).rows[0]?.mode ?? 'trigger';
  const history = await db.query<{ seq: string; prev: string | null; cur: string | null; upper: string | null; low: string }>(
    `select seq::text, prev_snapshot as prev, cur_snapshot as cur, cur_upper::text as upper, low_id::text as low
       from soak_audit.checkpoints h where stream = 'main' order by h.seq`, // the column, not its text
  );
  const report: WindowReport = { events: 0, windows: 0, doneWindows: 0, slotEvents: 0, violations: [], violationCount: 0, violationsByKind: {} };
  const violate = (v: WindowViolation) => {
    report.violationCount++;
    report.violationsByKind[v.kind] = (report.violationsByKind[v.kind] ?? 0) + 1;
    if (report.violations.length < KEEP) report.violations.push(v);
  };
  const windows: Window[] = [];
  let open: Window | null = null;
  for (const h of history.rows) {
    if (h.cur !== null) {
      if (open && open.curText === h.cur) continue;
      if (open) violate({ kind: 'chain', note: `window opened at history ${open.seq} was replaced at ${h.seq} before it was done` });
      open = {
        seq: Number(h.seq), prevText: h.prev, curText: h.cur, prev: h.prev === null ? null : parseSnapshot(h.prev), cur: parseSnapshot(h.cur),
        low: Number(h.low), upper: Number(h.upper), done: false,
      };
      windows.push(open);
    } else if (open) {
      if (h.prev === open.curText) open.done = true;
      else violate({ kind: 'chain', note: `window opened at history ${open.seq} was closed at ${h.seq} with prev_snapshot ${h.prev}, not its cur ${open.curText}` });
      open = null;
    }
  }
  report.windows = windows.length;
  const done = windows.filter((w) => w.done);
  report.doneWindows = done.length;
  // Chains of done windows, each one's prev the last one's cur, snapshots growing.
  const chains: Window[][] = [];
  for (const w of done) {
    const chain = chains[chains.length - 1];
    const last = chain?.[chain.length - 1];
    if (last && w.prevText === last.curText) {
      const why = grows(last.cur, w.cur);
      if (why) violate({ kind: 'chain', note: `snapshot of window ${w.seq} does not contain that of window ${last.seq}: ${why}` });
      chain.push(w);
    } else {
      // a break is right only where the slot carried the stream (a switch there and back)
      if (last && !(finals.has(last.curText) && w.prevText !== null && resumes.has(w.prevText))) {
        violate({ kind: 'chain', note: `window ${w.seq} starts from prev ${w.prevText}, not from the cur of window ${last.seq} (${last.curText}), and no capture switch explains it` });
      }
      chains.push([w]);
    }
  }
  const finalPrev = done.length > 0 ? done[done.length - 1].cur : null;
  // where the slot carried the stream: (F, R) between chains, and F alone if the run ended in pgoutput mode
  const slotSpans: { from: Snapshot; to: Snapshot | null }[] = [];
  for (let i = 0; i + 1 < chains.length; i++) {
    slotSpans.push({ from: chains[i][chains[i].length - 1].cur, to: chains[i + 1][0].prev });
  }
  if (endMode !== 'trigger' && finalPrev) slotSpans.push({ from: finalPrev, to: null });
  const bySlot = (xid: number) => slotSpans.some((g) => !visible(g.from, xid) && (g.to === null || visible(g.to, xid)));

  let after = -1;
  let lastId = -1;
  for (;;) {
    const page = await db.query<{ id: string; xid: string; table_id: number | null; op: string; mode: string | null }>(
      `select e.id::text, e.xid::text, e.table_id, e.op, e.mode from soak_audit.events e where e.id > $1 order by e.id limit 50000`, [after],
    );
    for (const e of page.rows) {
      report.events++;
      const id = Number(e.id);
      const xid = Number(e.xid);
      const event = { id, xid: e.xid, tableId: e.table_id, op: e.op, mode: e.mode };
      if (id === lastId) violate({ kind: 'duplicate-event', event, note: 'the audit holds this outbox id twice' });
      lastId = id;
      const inWindows: Window[] = [];
      for (const chain of chains) {
        const w = firstSeeing(chain, xid);
        if (w && !(w.prev && visible(w.prev, xid))) inWindows.push(w);
      }
      if (inWindows.length === 1) {
        const w = inWindows[0];
        if (id <= w.low) violate({ kind: 'below-low', event, windows: [describeWindow(w)] });
        else if (id > w.upper) violate({ kind: 'above-upper', event, windows: [describeWindow(w)] });
      } else if (inWindows.length > 1) {
        violate({ kind: 'several-windows', event, windows: inWindows.map(describeWindow) });
      } else if (bySlot(xid)) {
        report.slotEvents++;
      } else if (!finalPrev || !visible(finalPrev, xid)) {
        violate({ kind: 'not-drained', event, note: 'committed, but not in any done window at the end' });
      } else {
        violate({ kind: 'no-window', event, note: 'visible in the last done window, yet in none of the windows' });
      }
    }
    if (page.rows.length < 50000) break;
    after = Number(page.rows[page.rows.length - 1].id);
  }
  return report;
}

function describeWindow(w: Window) {
  return { seq: w.seq, prev: w.prevText, cur: w.curText, low: w.low, upper: w.upper, done: w.done };
}

/** The first window of the chain whose cur sees the xid (visibility only grows along a chain). */
function firstSeeing(chain: Window[], xid: number): Window | null {
  let lo = 0;
  let hi = chain.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (visible(chain[mid].cur, xid)) hi = mid;
    else lo = mid + 1;
  }
  return lo < chain.length ? chain[lo] : null;
}

/** Why `later` does not see everything `earlier` sees, or null when it does. */
function grows(earlier: Snapshot, later: Snapshot): string | null {
  if (later.xmin < earlier.xmin) return `xmin went back from ${earlier.xmin} to ${later.xmin}`;
  if (later.xmax < earlier.xmax) return `xmax went back from ${earlier.xmax} to ${later.xmax}`;
  for (const x of later.xip) {
    if (x < earlier.xmax && visible(earlier, x)) return `xid ${x} was visible and is in progress again`;
  }
  return null;
}
