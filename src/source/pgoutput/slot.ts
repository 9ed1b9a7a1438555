// The logical replication slot: created with an exported snapshot (for a switch without a gap),
// dropped on request, and watched for the WAL it holds back.
import pg from 'pg';
import { ConfigError } from '../../core/errors.js';
import { quoteIdent, quoteLiteral } from '../../core/identifiers.js';
import { WALSENDER_OPTIONS } from './wal-stream.js';

type Queryable = pg.ClientBase | pg.Pool;

export interface CreatedSlot {
  consistentPoint: string;
  /** the exported snapshot as a pg_snapshot: exactly the transactions that committed before the consistent point */
  snapshot: string;
}

/**
 * Creates the slot on a replication connection with SNAPSHOT 'export', and reads the exported
 * snapshot through `db` (SET TRANSACTION SNAPSHOT) while that connection is still open: the
 * snapshot lives only as long as it. Transactions visible in the snapshot are not in the slot's
 * stream; every later one is.
 */
export async function createSlotWithSnapshot(connection: pg.ClientConfig, db: pg.ClientBase, slot: string, serverVersion: number): Promise<CreatedSlot> {
  const repl = new pg.Client({ ...connection, replication: 'database', application_name: `pg2crate ${slot} create`, options: WALSENDER_OPTIONS } as pg.ClientConfig);
  repl.on('error', () => {});
  await repl.connect();
  try {
    const sql = serverVersion >= 150000
      ? `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput (SNAPSHOT 'export')`
      : `CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput EXPORT_SNAPSHOT`;
    const res = await repl.query<{ consistent_point: string; snapshot_name: string }>(sql);
    const { consistent_point: consistentPoint, snapshot_name: name } = res.rows[0];
    await db.query('begin isolation level repeatable read');
    try {
      await db.query(`set transaction snapshot ${quoteLiteral(name)}`);
      const snap = await db.query<{ s: string }>(`select pg_current_snapshot()::text as s`);
      await db.query('commit');
      return { consistentPoint, snapshot: snap.rows[0].s };
    } catch (err) {
      await db.query('rollback').catch(() => {});
      throw err;
    }
  } finally {
    await repl.end().catch(() => {});
  }
}

export interface SlotInfo {
  name: string;
  active: boolean;
  activePid: number | null;
  confirmedFlushLsn: string | null;
  /** WAL written since the slot's confirmed position: what it holds back (pg_current_wal_lsn() - confirmed_flush_lsn) */
  retainedBytes: number;
  /** reserved, extended, unreserved or lost */
  walStatus: string | null;
}

export async function slotInfo(db: Queryable, slot: string): Promise<SlotInfo | null> {
  const res = await db.query(
    `select slot_name, active, active_pid, confirmed_flush_lsn::text as confirmed,
            coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::int8::text as retained, wal_status
       from pg_replication_slots where slot_name = $1 and database = current_database()`,
    [slot],
  );
  const r = res.rows[0];
  if (!r) return null;
  return { name: r.slot_name, active: r.active, activePid: r.active_pid, confirmedFlushLsn: r.confirmed, retainedBytes: Math.max(0, Number(r.retained)), walStatus: r.wal_status };
}

/** Drops the slot; false when there was none. Refuses while a session streams from it. */
export async function dropSlot(db: Queryable, slot: string, waitMs = 0): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const info = await slotInfo(db, slot);
    if (!info) return false;
    if (!info.active) {
      await db.query(`select pg_drop_replication_slot($1)`, [slot]);
      return true;
    }
    if (Date.now() >= deadline) {
      throw new ConfigError('slot', `slot ${slot} is in use by the session with pid ${info.activePid} (a running replicator); stop it first`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
