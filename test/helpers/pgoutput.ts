// Helpers for pgoutput-mode tests: "caught up" as the slot sees it, and the capture mode.
import type pg from 'pg';
import { waitFor } from './replication.js';

/**
 * True once the slot's confirmed position passed a logical message written now: every transaction
 * committed before this call is then applied (the source acknowledges only applied commits, or a
 * keepalive's WAL end when nothing is pending).
 */
export async function slotPassedMark(src: pg.Pool, mark: string, slot = 'pg2crate'): Promise<boolean> {
  const res = await src.query<{ ok: boolean }>(`select confirmed_flush_lsn >= $1::pg_lsn as ok from pg_replication_slots where slot_name = $2`, [mark, slot]);
  return res.rows[0]?.ok ?? false;
}

export async function waitSlotCaughtUp(src: pg.Pool, slot = 'pg2crate', timeoutMs = 60_000): Promise<void> {
  const mark = (await src.query<{ lsn: string }>(`select pg_logical_emit_message(false, 'pg2crate-test', 'caught up?')::text as lsn`)).rows[0].lsn;
  await waitFor(`slot ${slot} to pass ${mark}`, () => slotPassedMark(src, mark, slot), timeoutMs);
}

export async function captureMode(src: pg.Pool, stream = 'main', schema = 'pg2crate'): Promise<string> {
  const res = await src.query<{ mode: string }>(`select mode from "${schema}".capture where stream = $1`, [stream]);
  return res.rows[0]?.mode ?? 'trigger';
}
