// The capture mode of a stream as the database records it (pg2crate.capture), shared by both
// sources: each checks it after taking the stream, so that a replicator configured for one mode
// never reads a stream that is in the other. See migrations/000003_capture_mode.sql for the states.
import type pg from 'pg';
import { ConfigError } from '../core/errors.js';
import { qualify } from '../core/identifiers.js';

type Queryable = pg.ClientBase | pg.Pool;

export type CaptureMode = 'trigger' | 'to-pgoutput' | 'pgoutput' | 'to-trigger';

export interface CaptureState {
  mode: CaptureMode;
  slotName: string | null;
  publicationName: string | null;
  finalSnapshot: string | null;
  resumeSnapshot: string | null;
  resumeLowId: string | null;
  stopMarker: string | null;
  /** the end of the stop mark's WAL record (migration 000011) */
  stopMarkLsn: string | null;
  switchedAt: Date | null;
  /** pgoutput: where the slot was advanced to when it was created; streaming starts no earlier (migration 000010) */
  slotStartLsn: string | null;
}

export async function readCaptureState(db: Queryable, schema: string, stream: string): Promise<CaptureState> {
  const res = await db.query(
    `select mode, slot_name, publication_name, final_snapshot::text as final_snapshot, resume_snapshot::text as resume_snapshot,
            resume_low_id::text as resume_low_id, stop_marker, stop_mark_lsn::text as stop_mark_lsn, switched_at, slot_start_lsn::text as slot_start_lsn
       from ${qualify(schema, 'capture')} where stream = $1`,
    [stream],
  );
  const r = res.rows[0];
  if (!r) return { mode: 'trigger', slotName: null, publicationName: null, finalSnapshot: null, resumeSnapshot: null, resumeLowId: null, stopMarker: null, stopMarkLsn: null, switchedAt: null, slotStartLsn: null };
  return {
    mode: r.mode, slotName: r.slot_name, publicationName: r.publication_name, finalSnapshot: r.final_snapshot, resumeSnapshot: r.resume_snapshot,
    resumeLowId: r.resume_low_id, stopMarker: r.stop_marker, stopMarkLsn: r.stop_mark_lsn, switchedAt: r.switched_at, slotStartLsn: r.slot_start_lsn,
  };
}

export async function writeCaptureState(db: Queryable, schema: string, stream: string, s: CaptureState): Promise<void> {
  await db.query(
    `insert into ${qualify(schema, 'capture')} as c (stream, mode, slot_name, publication_name, final_snapshot, resume_snapshot, resume_low_id, stop_marker, stop_mark_lsn, switched_at, slot_start_lsn)
     values ($1, $2, $3, $4, $5::pg_snapshot, $6::pg_snapshot, $7::int8, $8, $9::pg_lsn, $10, $11::pg_lsn)
     on conflict (stream) do update set mode = excluded.mode, slot_name = excluded.slot_name, publication_name = excluded.publication_name,
       final_snapshot = excluded.final_snapshot, resume_snapshot = excluded.resume_snapshot, resume_low_id = excluded.resume_low_id,
       stop_marker = excluded.stop_marker, stop_mark_lsn = excluded.stop_mark_lsn, switched_at = excluded.switched_at, slot_start_lsn = excluded.slot_start_lsn, updated_at = now()`,
    [stream, s.mode, s.slotName, s.publicationName, s.finalSnapshot, s.resumeSnapshot, s.resumeLowId, s.stopMarker, s.stopMarkLsn, s.switchedAt, s.slotStartLsn],
  );
}

/** The one-line refusal for a replicator whose configured mode is not the stream's. */
export function modeMismatch(configured: 'trigger' | 'pgoutput', actual: CaptureMode, stream: string): ConfigError {
  if (actual === 'to-pgoutput' || actual === 'to-trigger') {
    const to = actual === 'to-pgoutput' ? 'pgoutput' : 'trigger';
    return new ConfigError('PG2CRATE_CAPTURE', `stream ${stream} is half-way through a switch to ${to} mode; finish it with \`pg2crate switch-capture ${to}\``);
  }
  return new ConfigError(
    'PG2CRATE_CAPTURE',
    `stream ${stream} is in ${actual} mode but this replicator is configured for ${configured}; set PG2CRATE_CAPTURE=${actual}, or switch with \`pg2crate switch-capture ${configured}\``,
  );
}
