// The logical replication slot: created with a snapshot that matches its start exactly (for a
// switch without a gap), dropped on request, and watched for the WAL it holds back.
//
// Creating it takes three steps because of a PostgreSQL bug (14 to 18 reproduce it; reported on
// pgsql-hackers, not fixed): a slot's historic catalog snapshots are built in phases, and commits are not decoded
// before the second phase (decode.c xact_decode returns below SNAPBUILD_FULL_SNAPSHOT). A catalog
// change (TRUNCATE, ALTER TABLE …) that commits in the first phase is therefore missing from the
// snapshots built in the second whenever an older transaction is still open then, and every
// session that decodes the slot rebuilds those snapshots from its start: a transaction that began
// before the slot was consistent, or before the next catalog change, reads the table's old catalog
// rows ("could not map filenode … to relation OID" at every start, or a stale column list). The
// snapshot exported at creation is right; the slot's decoding is not. So:
//   1. create the slot (no snapshot);
//   2. commit a catalog change (a comment on the publication) after its consistent point: from
//      there on its decoding builds snapshots afresh, after every transaction of the first phases;
//   3. create a temporary slot with an exported snapshot S and consistent point P: S sees exactly
//      the transactions that committed before P, and every transaction that was open when it was
//      created (so every one that wrote before step 2) committed before P. Advance the slot to P.
// The slot then streams exactly the transactions that commit after P, each decoded with snapshots
// built after step 2; those before P are in S. The temporary slot's own decoding is never used.
import pg from 'pg';
import { ConfigError } from '../../core/errors.js';
import { quoteIdent, quoteLiteral } from '../../core/identifiers.js';
import { WALSENDER_OPTIONS } from './wal-stream.js';

type Queryable = pg.ClientBase | pg.Pool;

export interface CreatedSlot {
  /** the slot's confirmed position: it streams the transactions that commit after it */
  consistentPoint: string;
  /** a pg_snapshot that sees exactly the transactions that committed before the consistent point */
  snapshot: string;
}

const PUBLICATION_COMMENT = 'pg2crate: the captured tables and the outbox, read through a logical replication slot';

/** Creates the slot as the header says; `db` (not in a transaction) reads the snapshot and moves the slot. */
export async function createSlotWithSnapshot(
  connection: pg.ClientConfig, db: pg.ClientBase, slot: string, publication: string, serverVersion: number,
): Promise<CreatedSlot> {
  const v15 = serverVersion >= 150000;
  await replicationCommand(connection, `pg2crate ${slot} create`, async (repl) => {
    await repl.query(`CREATE_REPLICATION_SLOT ${quoteIdent(slot)} LOGICAL pgoutput ${v15 ? `(SNAPSHOT 'nothing')` : 'NOEXPORT_SNAPSHOT'}`);
  });
  await db.query(`comment on publication ${quoteIdent(publication)} is ${quoteLiteral(PUBLICATION_COMMENT)}`);
  const temporary = `${slot.slice(0, 54)}_snapshot`;
  return replicationCommand(connection, `pg2crate ${slot} snapshot`, async (repl) => {
    const res = await repl.query<{ consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT ${quoteIdent(temporary)} TEMPORARY LOGICAL pgoutput ${v15 ? `(SNAPSHOT 'export')` : 'EXPORT_SNAPSHOT'}`,
    );
    const { consistent_point: consistentPoint, snapshot_name: name } = res.rows[0];
    // The exported snapshot lives only while this connection is open.
    const snapshot = await importSnapshot(db, name);
    const moved = await db.query<{ ok: boolean; at: string }>(
      `select end_lsn = $2::pg_lsn as ok, end_lsn::text as at from pg_replication_slot_advance($1, $2::pg_lsn)`, [slot, consistentPoint],
    );
    if (!moved.rows[0].ok) throw new Error(`slot ${slot} moved to ${moved.rows[0].at} instead of ${consistentPoint}`);
    return { consistentPoint, snapshot };
  });
}

/** Runs `fn` on a `replication=database` connection, closed afterwards (which drops a temporary slot). */
async function replicationCommand<T>(connection: pg.ClientConfig, name: string, fn: (repl: pg.Client) => Promise<T>): Promise<T> {
  const repl = new pg.Client({ ...connection, replication: 'database', application_name: name, options: WALSENDER_OPTIONS } as pg.ClientConfig);
  repl.on('error', () => {});
  await repl.connect();
  try {
    return await fn(repl);
  } catch (err) {
    if ((err as { code?: string }).code === '53400') {
      throw new ConfigError('slot', `creating the slot needs two free replication slots for a moment (max_replication_slots): ${(err as Error).message}`);
    }
    throw err;
  } finally {
    await repl.end().catch(() => {});
  }
}

/** The exported snapshot as a pg_snapshot's text. */
async function importSnapshot(db: pg.ClientBase, name: string): Promise<string> {
  await db.query('begin isolation level repeatable read');
  try {
    await db.query(`set transaction snapshot ${quoteLiteral(name)}`);
    const snap = await db.query<{ s: string }>(`select pg_current_snapshot()::text as s`);
    await db.query('commit');
    return normalSnapshot(snap.rows[0].s);
  } catch (err) {
    await db.query('rollback').catch(() => {});
    throw err;
  }
}

/**
 * An exported slot snapshot can have xmin > xmax (snapbuild.c advances its xmax only at catalog
 * commits), which pg_snapshot's input refuses. Visibility tests xmin first, so xmin:xmin: is the
 * same snapshot (no xid lies in [xmin, xmax), so there is no xip list either).
 */
export function normalSnapshot(text: string): string {
  const [xmin, xmax] = text.split(':');
  return BigInt(xmin) > BigInt(xmax) ? `${xmin}:${xmin}:` : text;
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
