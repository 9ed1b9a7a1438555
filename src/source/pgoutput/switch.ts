// Switching a stream between trigger and pgoutput capture without a gap (docs/pgoutput.md has the
// procedure and its proof). Each direction is a pair of steps that run inside the source that
// drains the old mode, on the connection holding the stream, so no other instance can move the
// checkpoint in between. Every step is idempotent: after a crash the switch resumes from the state
// recorded in pg2crate.capture.
//
// trigger → pgoutput (FinalWindow of the outbox source):
//   snapshot: check the server and tables, bring the publication in line, create the slot with an
//             exported snapshot S, record S (mode to-pgoutput);
//   reached:  the outbox is applied up to exactly S (and the slot holds every transaction not
//             visible in S): drop the triggers, record mode pgoutput.
// pgoutput → trigger (StopAt of the pgoutput source):
//   begin:    read the outbox sequence (lowId), install the triggers table by table, take a
//             snapshot P, emit a stop mark M after it, record P, lowId and M (mode to-trigger);
//   reached:  the slot is applied up to M: drop the slot and the publication, set the outbox
//             checkpoint to continue after P, record mode trigger.
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { TableError } from '../../errors.js';
import { qualify, quoteIdent } from '../../identifiers.js';
import type { Logger } from '../../logger.js';
import { readCaptureState, writeCaptureState } from '../capture-state.js';
import type { FinalWindow } from '../outbox.js';
import { captureTargetOf, listTables } from '../registry.js';
import { installCapture, removeCapture } from '../capture-install.js';
import { readOutboxSequence } from '../outbox-bounds.js';
import { MARK_PREFIX, type StopAt } from './pgoutput-source.js';
import { checkServer, checkTables, ensurePublication } from './preflight.js';
import { createSlotWithSnapshot, dropSlot, slotInfo } from './slot.js';

export interface SwitchOptions {
  connection: pg.ClientConfig;
  schema: string;
  stream: string;
  slot: string;
  publication: string;
  logger: Logger;
}

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
      if (state.mode === 'to-pgoutput' && state.finalSnapshot && (await slotInfo(db, o.slot))) return state.finalSnapshot;
      const version = await checkServer(db);
      await checkTables(db, o.schema);
      const loads = await db.query<{ n: number }>(`select count(*)::int as n from ${qualify(o.schema, 'backfills')} where status <> 'done'`);
      if (loads.rows[0].n > 0) {
        throw new TableError(`the initial load of ${loads.rows[0].n} table(s) is not finished; let the replicator finish it in trigger mode (pg2crate status), then switch`);
      }
      await ensurePublication(db, o.schema, o.publication);
      // A slot left by an attempt that crashed before recording its snapshot: nothing read from it yet.
      if (await dropSlot(db, o.slot)) log.info({ slot: o.slot }, 'dropped a slot left by an interrupted switch');
      const created = await createSlotWithSnapshot(o.connection, db, o.slot, version);
      await writeCaptureState(db, o.schema, o.stream, {
        mode: 'to-pgoutput', slotName: o.slot, publicationName: o.publication, finalSnapshot: created.snapshot,
        resumeSnapshot: null, resumeLowId: null, stopMarker: null, switchedAt: new Date(),
      });
      log.info({ slot: o.slot, consistentPoint: created.consistentPoint }, 'created the slot; draining the outbox up to its snapshot');
      return created.snapshot;
    },
    async reached(db) {
      const state = await readCaptureState(db, o.schema, o.stream);
      for (const t of await listTables(db, o.schema)) {
        // A partitioned table keeps its truncate triggers and guard (capture-install.ts).
        await inTransaction(db, () => removeCapture(db, o.schema, t.id, 'pgoutput'));
      }
      await writeCaptureState(db, o.schema, o.stream, { ...state, mode: 'pgoutput', switchedAt: new Date() });
      log.info({ slot: o.slot }, 'the outbox is applied up to the slot\'s snapshot; triggers dropped, capturing with pgoutput');
    },
  };
}

export function toTrigger(o: SwitchOptions): StopAt {
  const log = o.logger.child({ component: 'pgoutput' });
  return {
    async begin(db) {
      const state = await readCaptureState(db, o.schema, o.stream);
      if (state.mode === 'to-trigger' && state.stopMarker) return state.stopMarker;
      // The lower id bound of the first trigger window: read under the sequence's lock (outbox-bounds.ts).
      const lowId = await readOutboxSequence(db, o.schema);
      // One table per transaction: a transaction holding one table's lock while waiting for the
      // next could deadlock with an application transaction that writes both.
      for (const t of await listTables(db, o.schema)) {
        // with the table's shape: columns left out or hashed, the row filter (table-shape.ts)
        const target = captureTargetOf(t);
        // the table and every partition of a partitioned one
        await inTransaction(db, () => installCapture(db, o.schema, target));
      }
      // P after every trigger is in place, the mark after P: a transaction visible in P committed
      // before the mark, so the slot applies it; one not visible in P is in the outbox after P.
      const snap = await db.query<{ s: string }>(`select pg_current_snapshot()::text as s`);
      const mark = `${o.stream}:switch:${randomUUID()}`;
      await db.query(`select pg_logical_emit_message(false, $1, $2)`, [MARK_PREFIX, mark]);
      await writeCaptureState(db, o.schema, o.stream, {
        mode: 'to-trigger', slotName: o.slot, publicationName: o.publication, finalSnapshot: null,
        resumeSnapshot: snap.rows[0].s, resumeLowId: lowId, stopMarker: mark, switchedAt: new Date(),
      });
      log.info({ slot: o.slot }, 'triggers installed; draining the slot up to the stop mark');
      return mark;
    },
    async reached(db) {
      const state = await readCaptureState(db, o.schema, o.stream);
      if (state.mode === 'trigger') return;
      await dropSlot(db, o.slot, 10_000);
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
          mode: 'trigger', slotName: null, publicationName: null, finalSnapshot: null, resumeSnapshot: null, resumeLowId: null, stopMarker: null, switchedAt: new Date(),
        });
      });
      log.info({ slot: o.slot }, 'the slot is applied up to the stop mark; slot dropped, capturing with triggers');
    },
  };
}
