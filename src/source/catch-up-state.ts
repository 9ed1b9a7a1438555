// Has the replicator applied everything up to a given moment? Read from the checkpoint alone, so any
// process (verify, tests, status) can ask without talking to the drainer.
//
// A stream is caught up past a mark (a snapshot taken at that moment) when no outbox event of a
// transaction visible in the mark is outside the last completed window, i.e. not visible in
// prev_snapshot. Without a mark the question is "is every event in the outbox applied", which under
// constant load may never become true; a mark makes the wait finite.
//
// Events of transactions visible in the mark all have ids at or below the sequence value read right
// after the mark was taken. Events not visible in prev_snapshot all have ids above low_id (outbox.ts
// explains why), so the check asked while waiting looks there; it looks below low_id as well before
// it says yes, so that a wrong bound shows as "not caught up" instead of a silent loss.
//
// In pgoutput mode the outbox checkpoint only trails the slot: the mark is then a logical message
// emitted now, and the stream is caught up past it once the slot's confirmed position passed it (the
// source confirms only applied commits, and a message outside a transaction once everything before
// it is applied). Outbox events (repairs, retries) come through the slot, so they are covered too.
//
// A replicator is "running" when some session holds the stream's advisory lock (pg_locks is readable
// by every role). With nobody holding it, waiting is pointless and the caller is told so.
import type pg from 'pg';
import { qualify } from '../core/identifiers.js';
import { readCaptureState } from '../capture/capture-state.js';
import { streamLockText } from '../capture/names.js';
import { sleep } from '../core/sleep.js';
import { outboxSequenceSql } from '../capture/outbox-bounds.js';

type Queryable = pg.ClientBase | pg.Pool;

/** A moment to catch up to: a snapshot and the outbox sequence value read just after it. */
export interface CatchUpMark {
  snapshot: string;
  upper: string;
}

export type CatchUpOutcome = 'caught-up' | 'no-replicator' | 'timeout';

export async function takeMark(db: Queryable, schema: string): Promise<CatchUpMark> {
  const res = await db.query<{ snapshot: string; upper: string }>(
    `select pg_current_snapshot()::text as snapshot,
            ${outboxSequenceSql(schema)}::text as upper`,
  );
  return res.rows[0];
}

/**
 * True when every event committed before `mark` (or, without a mark, every event in the outbox) lies
 * in a completed window of the stream. False while the stream has no checkpoint yet.
 */
export async function caughtUp(db: Queryable, schema: string, stream: string, mark?: CatchUpMark): Promise<boolean> {
  const outbox = qualify(schema, 'outbox');
  const checkpoint = qualify(schema, 'checkpoint');
  // First above the lower id bound (cheap, and asked again and again while waiting); once that says
  // yes, below it as well: a wrong bound would leave events there that no window reads, and a
  // check that trusted the bound could not see them.
  const pending = (above: boolean) => db.query<{ ok: boolean }>(
    `select exists (select 1 from ${checkpoint} where stream = $1)
        and not exists (
          select 1 from ${outbox} o, ${checkpoint} c
           where c.stream = $1
             and ${above ? 'o.id > c.low_id' : 'o.id <= c.low_id'}
             and ($3::bigint is null or o.id <= $3::bigint)
             and ($2::pg_snapshot is null or pg_visible_in_snapshot(o.xid, $2::pg_snapshot))
             and (c.prev_snapshot is null or not pg_visible_in_snapshot(o.xid, c.prev_snapshot))
        ) as ok`,
    [stream, mark?.snapshot ?? null, mark?.upper ?? null],
  );
  return (await pending(true)).rows[0].ok && (await pending(false)).rows[0].ok;
}

/** True when some session holds the stream (a replicator, or a catch-up run, is draining it). */
export async function streamHeld(db: Queryable, schema: string, stream: string): Promise<boolean> {
  const res = await db.query<{ held: boolean }>(
    `select exists (
       select 1 from pg_locks l
        where l.locktype = 'advisory' and l.granted and l.objsubid = 1
          and ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended($1, 0)
     ) as held`,
    [streamLockText(schema, stream)],
  );
  return res.rows[0].held;
}

export interface WaitOptions {
  schema: string;
  stream: string;
  timeoutMs: number;
  pollMs?: number;
  signal?: AbortSignal;
}

/**
 * Waits until the stream is caught up past a mark taken now. Returns 'no-replicator' at once (or as
 * soon as the replicator goes away) when nobody holds the stream, 'timeout' after `timeoutMs`.
 */
export async function waitCaughtUp(db: Queryable, opts: WaitOptions): Promise<CatchUpOutcome> {
  const state = await readCaptureState(db, opts.schema, opts.stream);
  const slot = state.mode === 'pgoutput' ? state.slotName : null;
  const mark = slot === null ? await takeMark(db, opts.schema) : null;
  const lsn = slot === null ? null : await emitWaitMark(db);
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    if (slot !== null ? await slotPassed(db, slot, lsn!) : await caughtUp(db, opts.schema, opts.stream, mark!)) return 'caught-up';
    if (!(await streamHeld(db, opts.schema, opts.stream))) return 'no-replicator';
    if (Date.now() >= deadline || opts.signal?.aborted) return 'timeout';
    await sleep(Math.min(opts.pollMs ?? 100, Math.max(1, deadline - Date.now())), opts.signal);
  }
}

/** pgoutput mode: a point in the WAL after everything committed so far (outside any transaction). */
export async function emitWaitMark(db: Queryable): Promise<string> {
  const res = await db.query<{ lsn: string }>(`select pg_logical_emit_message(false, 'pg2crate-wait', '')::text as lsn`);
  return res.rows[0].lsn;
}

/** pgoutput mode: the slot's confirmed position passed `lsn` (so everything committed before it is applied). */
export async function slotPassed(db: Queryable, slot: string, lsn: string): Promise<boolean> {
  const res = await db.query<{ ok: boolean }>(`select confirmed_flush_lsn >= $1::pg_lsn as ok from pg_replication_slots where slot_name = $2`, [lsn, slot]);
  return res.rows[0]?.ok ?? false;
}
