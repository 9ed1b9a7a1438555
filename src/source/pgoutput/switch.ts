// Switching a stream between trigger and pgoutput capture without a gap (docs/pgoutput.md has the
// procedure and its proof). Each direction is a pair of steps that run inside the source that
// drains the old mode, on the connection holding the stream, so no other instance can move the
// checkpoint in between. Every step is idempotent: after a crash the switch resumes from the state
// recorded in pg2crate.capture.
//
// trigger → pgoutput (FinalWindow of the outbox source):
//   snapshot: check the server and tables, bring the publication in line, create the slot and a
//             snapshot S that matches its start (slot.ts: in three steps, around a PostgreSQL
//             bug), record S (mode to-pgoutput);
//   reached:  the outbox is applied up to exactly S (and the slot holds every transaction not
//             visible in S): drop the triggers, record mode pgoutput.
// pgoutput → trigger (StopAt of the pgoutput source), with what pg2crate.capture says meanwhile:
//   begin:    record to-trigger (no P, no mark: "installing"), read the outbox sequence (lowId),
//             then take an xid X, install the triggers table by table, take a snapshot P once every
//             xid up to X has ended, emit a stop mark M after it, record P, lowId and M ("draining");
//             all before the slot streams;
//   reached:  the slot is applied up to M: record P without a mark ("drained"), drop the slot and
//             the publication, set the outbox checkpoint to continue after P, record mode trigger.
// A restart that finds the slot runs begin() again, keeping the triggers once a P was recorded: a
// new P and a new M, whatever an earlier attempt left (the outbox is read only from trigger mode
// on, and the old mark may lie behind the slot's position). One that finds the slot gone hands
// over at the recorded P ("drained"), or warns that changes were lost (someone dropped the slot).
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { TableError } from '../../core/errors.js';
import { qualify, quoteIdent } from '../../core/identifiers.js';
import type { Logger } from '../../core/logger.js';
import { modeMismatch, readCaptureState, writeCaptureState } from '../../capture/capture-state.js';
import type { FinalWindow } from '../outbox.js';
import { captureTargetOf, listTables } from '../../capture/registry.js';
import { installCapture, removeCapture } from '../../capture/capture-install.js';
import { readOutboxSequence } from '../../capture/outbox-bounds.js';
import { MARK_PREFIX, type StopAt } from './pgoutput-source.js';
import { checkPartitionIdentities, checkServer, checkTables, ensurePublication } from './preflight.js';
import { createSlotWithSnapshot, dropSlot, slotInfo } from './slot.js';
import { parseLsn } from './lsn.js';

export interface SwitchOptions {
  connection: pg.ClientConfig;
  schema: string;
  stream: string;
  slot: string;
  publication: string;
  logger: Logger;
  /** a seam for tests: runs between the steps named below; throwing there is a crash at that step */
  step?: (at: SwitchStep) => Promise<void>;
}

/** The moments between the steps of a switch at which it can stop (switch tests crash it at each). */
export type SwitchStep =
  | 'to-pgoutput:publication' | 'to-pgoutput:slot' | 'to-pgoutput:recorded' | 'to-pgoutput:reached' | 'to-pgoutput:one-dropped'
  | 'to-trigger:recorded' | 'to-trigger:triggers' | 'to-trigger:mark' | 'to-trigger:draining' | 'to-trigger:reached'
  | 'to-trigger:drained' | 'to-trigger:slot-dropped';

async function inTransaction(db: pg.ClientBase, fn: () => Promise<void>): Promise<void> {
  await db.query('begin');
  try {
    await fn();
    await db.query('commit');
  } catch (err) {
    await db.query('rollback').catch(() => {});
    throw err;
  }
}

export function toPgoutput(o: SwitchOptions): FinalWindow {
  const log = o.logger.child({ component: 'pgoutput' });
  return {
    async snapshot(db) {
      const state = await readCaptureState(db, o.schema, o.stream);
      // Half-way back to triggers, the slot still holds changes nobody applied: finish that first.
      if (state.mode === 'to-trigger') throw modeMismatch('trigger', state.mode, o.stream);
      if (state.mode === 'to-pgoutput' && state.finalSnapshot && (await slotInfo(db, o.slot))) return state.finalSnapshot;
      const version = await checkServer(db);
      await checkTables(db, o.schema);
      await checkPartitionIdentities(db, o.schema);
      const loads = await db.query<{ n: number }>(`select count(*)::int as n from ${qualify(o.schema, 'backfills')} where status <> 'done'`);
      if (loads.rows[0].n > 0) {
        throw new TableError(`the initial load of ${loads.rows[0].n} table(s) is not finished; let the replicator finish it in trigger mode (pg2crate status), then switch`);
      }
      await ensurePublication(db, o.schema, o.publication);
      await o.step?.('to-pgoutput:publication');
      // A slot left by an attempt that crashed before recording its snapshot: nothing read from it yet.
      if (await dropSlot(db, o.slot)) log.info({ slot: o.slot }, 'dropped a slot left by an interrupted switch');
      const created = await createSlotWithSnapshot(o.connection, db, o.slot, o.publication, version);
      await o.step?.('to-pgoutput:slot');
      await writeCaptureState(db, o.schema, o.stream, {
        mode: 'to-pgoutput', slotName: o.slot, publicationName: o.publication, finalSnapshot: created.snapshot,
        resumeSnapshot: null, resumeLowId: null, stopMarker: null, stopMarkLsn: null, switchedAt: new Date(), slotStartLsn: created.consistentPoint,
      });
      log.info({ slot: o.slot, consistentPoint: created.consistentPoint }, 'created the slot; draining the outbox up to its snapshot');
      await o.step?.('to-pgoutput:recorded');
      return created.snapshot;
    },
    async reached(db) {
      await o.step?.('to-pgoutput:reached');
      const state = await readCaptureState(db, o.schema, o.stream);
      for (const [i, t] of (await listTables(db, o.schema)).entries()) {
        // A partitioned table keeps its truncate triggers and guard (capture-install.ts).
        await inTransaction(db, () => removeCapture(db, o.schema, t.id, 'pgoutput'));
        if (i === 0) await o.step?.('to-pgoutput:one-dropped');
      }
      await writeCaptureState(db, o.schema, o.stream, { ...state, mode: 'pgoutput', switchedAt: new Date() });
      log.info({ slot: o.slot }, 'the outbox is applied up to the slot\'s snapshot; triggers dropped, capturing with pgoutput');
    },
  };
}

export function toTrigger(o: SwitchOptions): StopAt {
  const log = o.logger.child({ component: 'pgoutput' });
  return {
    async begin(db, slot) {
      const state = await readCaptureState(db, o.schema, o.stream);
      if (!slot) {
        // Drained (the mark was reached, reached() dropped the slot and stopped before recording
        // trigger mode): hand over at the recorded P. A mark still pending means someone dropped the
        // slot before it was drained: what it held is lost, so the tables need a backfill.
        if (state.mode === 'to-trigger' && state.resumeSnapshot !== null && state.resumeLowId !== null) {
          if (state.stopMarker !== null) log.warn({ slot: o.slot }, 'the slot was dropped before it was drained: changes it held are lost; run `pg2crate backfill` to load the tables again');
          return state.stopMarker ?? '';
        }
        log.warn({ slot: o.slot }, 'the slot is gone: switching to trigger mode without draining it; run `pg2crate backfill` to load the tables again');
      }
      // An earlier attempt handed over (P recorded, triggers in place) and emitted its mark M: drain
      // to that same M while the slot's confirmed position is still before it. The drain only ever
      // confirms commits of transactions it applied before M (pgoutput-source.ts), so M is decoded
      // again from there. Handing over afresh at every restart put a new mark at the end of the
      // WAL each time: under writers, a slot far behind and failures every few minutes (the soak's
      // faults), the mark moved on faster than the drain caught up, and the switch never ended.
      const installed = state.mode === 'to-trigger' && state.resumeSnapshot !== null;
      if (installed && state.stopMarker !== null && state.stopMarkLsn !== null) {
        const confirmed = (await slotInfo(db, o.slot))?.confirmedFlushLsn ?? null;
        if (confirmed !== null && parseLsn(confirmed) < parseLsn(state.stopMarkLsn)) {
          log.info({ slot: o.slot, mark: state.stopMarkLsn, confirmed }, 'draining the slot up to the stop mark of the earlier attempt');
          return state.stopMarker;
        }
        log.warn({ slot: o.slot, mark: state.stopMarkLsn, confirmed }, 'the slot is past the earlier attempt\'s stop mark; handing over afresh');
      }
      // Otherwise hand over afresh: a new P and a new mark M after it. That is right whatever an
      // earlier attempt left (the outbox is read only from trigger mode on), and the new mark lies
      // after the slot's confirmed position, so it is decoded. Triggers are in place once a P was
      // recorded; that state stays as it is until the new P.
      if (!installed) {
        // Recorded first: a stream with triggers half installed is half-way, and replicators refuse it.
        await writeCaptureState(db, o.schema, o.stream, {
          mode: 'to-trigger', slotName: o.slot, publicationName: o.publication, finalSnapshot: null,
          resumeSnapshot: null, resumeLowId: null, stopMarker: null, stopMarkLsn: null, switchedAt: new Date(), slotStartLsn: state.slotStartLsn,
        });
      }
      await o.step?.('to-trigger:recorded');
      // The lower id bound of the outbox's first window, then an xid X assigned after it (as the
      // outbox's window marks do): a transaction with a larger xid got it later, so all its outbox
      // ids are above the bound (outbox-bounds.ts: a writer has its xid before its first id).
      // (A snapshot's xmax would not do: it is one past the latest *completed* xid.)
      let lowId = '';
      let xid = '';
      await inTransaction(db, async () => {
        lowId = await readOutboxSequence(db, o.schema);
        xid = (await db.query<{ x: string }>(`select pg_current_xact_id()::text as x`)).rows[0].x;
      });
      if (!installed) {
        // One table per transaction: a transaction holding one table's lock while waiting for the
        // next could deadlock with an application transaction that writes both.
        for (const t of await listTables(db, o.schema)) {
          // with the table's shape: columns left out or hashed, the row filter (table-shape.ts)
          const target = captureTargetOf(t);
          // the table and every partition of a partitioned one
          await inTransaction(db, () => installCapture(db, o.schema, target));
        }
      }
      await o.step?.('to-trigger:triggers');
      const p = await handOverSnapshot(db, o.schema, o.stream, lowId, xid, log);
      // P after every trigger is in place, the mark after P: a transaction visible in P committed
      // before the mark, so the slot applies it; one not visible in P is in the outbox after P.
      const mark = `${o.stream}:switch:${randomUUID()}`;
      const at = await db.query<{ lsn: string }>(`select pg_logical_emit_message(false, $1, $2)::text as lsn`, [MARK_PREFIX, mark]);
      await o.step?.('to-trigger:mark');
      await writeCaptureState(db, o.schema, o.stream, {
        mode: 'to-trigger', slotName: o.slot, publicationName: o.publication, finalSnapshot: null,
        resumeSnapshot: p.snapshot, resumeLowId: p.lowId, stopMarker: mark, stopMarkLsn: at.rows[0].lsn, switchedAt: new Date(), slotStartLsn: state.slotStartLsn,
      });
      log.info({ slot: o.slot, mark: at.rows[0].lsn }, 'triggers installed; draining the slot up to the stop mark');
      await o.step?.('to-trigger:draining');
      return mark;
    },
    async reached(db) {
      await o.step?.('to-trigger:reached');
      const state = await readCaptureState(db, o.schema, o.stream);
      if (state.mode === 'trigger') return;
      // Drained: no mark pending. A restart that finds the slot still there hands over afresh; one
      // that finds it gone hands over at P without a warning.
      if (state.stopMarker !== null) await writeCaptureState(db, o.schema, o.stream, { ...state, stopMarker: null, stopMarkLsn: null });
      await o.step?.('to-trigger:drained');
      await dropSlot(db, o.slot, 10_000);
      await o.step?.('to-trigger:slot-dropped');
      await db.query(`drop publication if exists ${quoteIdent(o.publication)}`);
      await inTransaction(db, async () => {
        await db.query(
          `update ${qualify(o.schema, 'checkpoint')}
              set prev_snapshot = $2::pg_snapshot, prev_taken_at = now(), cur_snapshot = null, cur_taken_at = null, cur_upper = null,
                  after_id = 0, low_id = $3::int8, updated_at = now()
            where stream = $1`,
          [o.stream, state.resumeSnapshot, state.resumeLowId],
        );
        await db.query(`delete from ${qualify(o.schema, 'window_marks')} where stream = $1`, [o.stream]);
        await writeCaptureState(db, o.schema, o.stream, {
          mode: 'trigger', slotName: null, publicationName: null, finalSnapshot: null, resumeSnapshot: null, resumeLowId: null, stopMarker: null, stopMarkLsn: null, switchedAt: new Date(), slotStartLsn: null,
        });
      });
      log.info({ slot: o.slot }, 'the slot is applied up to the stop mark; slot dropped, capturing with triggers');
    },
  };
}

const XMIN_WAIT_MS = 5000;

/**
 * P, taken once every transaction with an xid up to `xid` has ended (xmin(P) > xid), so that every
 * transaction not visible in P has its outbox ids above `lowId`. A transaction that stays
 * open longer keeps that from happening: the checkpoint's own low_id is then used, which bounds
 * every transaction not visible in any later snapshot (outbox.ts), at the price of a longer first
 * walk of the id index.
 */
async function handOverSnapshot(db: pg.ClientBase, schema: string, stream: string, lowId: string, xid: string, log: Logger): Promise<{ snapshot: string; lowId: string }> {
  const deadline = Date.now() + XMIN_WAIT_MS;
  for (;;) {
    const res = await db.query<{ s: string; ok: boolean }>(
      `select s::text as s, pg_snapshot_xmin(s) > $1::xid8 as ok from (select pg_current_snapshot() as s) x`,
      [xid],
    );
    if (res.rows[0].ok) return { snapshot: res.rows[0].s, lowId };
    if (Date.now() >= deadline) {
      const cp = await db.query<{ low: string | null }>(`select low_id::text as low from ${qualify(schema, 'checkpoint')} where stream = $1`, [stream]);
      const low = cp.rows[0]?.low ?? '0';
      log.info({ lowId: low }, 'a long transaction is open: the outbox starts from an older id bound');
      return { snapshot: res.rows[0].s, lowId: BigInt(low) < BigInt(lowId) ? low : lowId };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
