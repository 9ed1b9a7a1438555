// What `pg2crate status` reports, read from the tool's schema: where the stream stands, how much is
// waiting, the captured tables, initial loads and dead letters.
import type pg from 'pg';
import { qualify, quoteIdent } from '../core/identifiers.js';
import { readCaptureState, type CaptureMode } from '../capture/capture-state.js';
import { slotInfo, type SlotInfo } from '../source/pgoutput/slot.js';
import { backfillState, type BackfillProgress } from '../load/backfill.js';

export interface StreamStatus {
  /** the stream's capture mode as the database records it (to-… while a switch is under way) */
  mode: CaptureMode;
  /** the replication slot (pgoutput mode, or one left behind), with the WAL it holds back */
  slot: (SlotInfo & { warn: boolean }) | null;
  schema: string;
  stream: string;
  /** events captured and not yet applied (stranded ones included) */
  backlogEvents: number;
  /** unapplied events below the window's lower id bound, which no window would read (always 0 unless a bound is wrong) */
  strandedEvents: number;
  /** times the window bound guard kept a lower bound that would have skipped events (outbox.ts) */
  boundViolations: number;
  appliedEvents: number;
  windows: number;
  lastAppliedAt: string | null;
  /** seconds since the last page was applied, null if never */
  secondsSinceApplied: number | null;
  /** age of the oldest change that may not be applied yet (0 when nothing waits) */
  lagSeconds: number;
  outboxBytes: number;
  /** the pid of the session holding the stream, null when no drainer runs */
  drainerPid: number | null;
  idle: boolean;
  deadLetters: number;
  tables: TableStatus[];
}

export interface TableStatus {
  name: string;
  target: string;
  key: string[];
  /** its capture triggers are installed */
  captured: boolean;
  /**
   * Relations (the table, its partitions) where a capture trigger is disabled (`ALTER TABLE …
   * DISABLE TRIGGER`): their writes are not captured, and are missing from the target until the
   * trigger is enabled again and `verify --repair` sends them.
   */
  triggersDisabledOn: string[];
  /** its latest initial load (copy): progress, and whether it reached the target; null when it never had one */
  load: (Omit<BackfillProgress, 'table'> & { applied: boolean }) | null;
}

export interface SlotWatch {
  slotName: string;
  /** `slot.warn` is set past this many bytes of retained WAL */
  warnBytes: number;
}

export async function readStatus(db: pg.Pool, schema: string, stream: string, lockText: string, watch?: SlotWatch): Promise<StreamStatus> {
  const s = (t: string) => qualify(schema, t);
  const cp = await db.query(
    `select c.applied_events::text as applied, c.windows::text as windows, c.last_applied_at,
            extract(epoch from now() - c.last_applied_at)::float8 as since,
            extract(epoch from now() - coalesce(c.prev_taken_at, c.updated_at))::float8 as lag,
            (select count(*) from ${s('outbox')} o
              where o.id > c.low_id and (c.prev_snapshot is null or not pg_visible_in_snapshot(o.xid, c.prev_snapshot)))::text as backlog,
            -- events no window will read: at or below the lower id bound yet never applied. Always 0
            -- unless a bound was wrong; counted over the whole outbox so that such a bug cannot hide.
            (select count(*) from ${s('outbox')} o
              where o.id <= c.low_id and c.prev_snapshot is not null and not pg_visible_in_snapshot(o.xid, c.prev_snapshot))::text as stranded,
            c.bound_violations::text as violations
       from ${s('checkpoint')} c where c.stream = $1`,
    [stream],
  );
  const backlogWithoutCheckpoint = cp.rows.length === 0 ? await db.query(`select count(*)::text as n from ${s('outbox')}`) : null;
  const holder = await db.query<{ pid: number }>(
    `select l.pid from pg_locks l
      where l.locktype = 'advisory' and l.granted
        and ((l.classid::int8 << 32) | l.objid::int8) = hashtextextended($1, 0) and l.database = (select oid from pg_database where datname = current_database())`,
    [lockText],
  );
  const state = await db.query<{ idle: boolean }>(`select idle from ${s('state')}`);
  const dead = await db.query<{ n: string }>(`select count(*)::text as n from ${s('dead_letters')} where stream = $1`, [stream]);
  const tables = await db.query(
    `select t.id, t.source_schema, t.source_table, t.target_schema, t.target_table, t.key_columns,
            exists (select 1 from pg_trigger g where g.tgrelid = t.relid and g.tgfoid = f.oid) as captured,
            (select coalesce(array_agg(distinct g.tgrelid::regclass::text order by g.tgrelid::regclass::text), '{}') from pg_trigger g
              where g.tgenabled = 'D' and g.tgfoid = f.oid) as disabled_on,
            b.table_id is not null as loaded
       from ${s('tables')} t left join ${s('backfills')} b on b.table_id = t.id
       left join lateral (select p.oid from pg_proc p where p.proname = 'capture_' || t.id and p.pronamespace = $1::regnamespace) f on true
      order by t.id`,
    [quoteIdent(schema)],
  );
  const loads = new Map((await backfillState(db, schema, stream, tables.rows.filter((t) => t.loaded).map((t) => Number(t.id)))).map(({ table, ...p }) => [table, p]));
  const r = cp.rows[0];
  const bytes = await db.query<{ n: string }>(
    `select coalesce(sum(pg_total_relation_size(c.oid)), 0)::text as n from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = $1::regclass`,
    [s('outbox')],
  );
  const capture = await readCaptureState(db, schema, stream);
  const slot = watch ? await slotInfo(db, watch.slotName) : null;
  // In pgoutput mode the outbox is not read: its leftovers are no backlog, and the lag is the
  // walsender's flush lag (time from a commit's WAL being written until pg2crate confirmed it applied).
  const pgoutput = capture.mode === 'pgoutput';
  const flushLag = pgoutput && slot?.activePid
    ? await db.query<{ s: number | null }>(`select extract(epoch from flush_lag)::float8 as s from pg_stat_replication where pid = $1`, [slot.activePid])
    : null;
  const strandedEvents = pgoutput ? 0 : Number(r?.stranded ?? 0);
  const backlogEvents = pgoutput ? 0 : Number(r?.backlog ?? backlogWithoutCheckpoint?.rows[0].n ?? 0) + strandedEvents;
  return {
    mode: capture.mode,
    slot: slot && watch ? { ...slot, warn: slot.retainedBytes > watch.warnBytes } : null,
    schema,
    stream,
    backlogEvents,
    strandedEvents,
    boundViolations: Number(r?.violations ?? 0),
    lagSeconds: pgoutput ? Math.max(0, Number(flushLag?.rows[0]?.s ?? 0)) : backlogEvents === 0 ? 0 : Math.max(0, Number(r?.lag ?? 0)),
    outboxBytes: Number(bytes.rows[0].n),
    appliedEvents: Number(r?.applied ?? 0),
    windows: Number(r?.windows ?? 0),
    lastAppliedAt: r?.last_applied_at ? new Date(r.last_applied_at).toISOString() : null,
    secondsSinceApplied: r?.since === null || r?.since === undefined ? null : Math.round(Number(r.since)),
    drainerPid: holder.rows[0]?.pid ?? null,
    idle: state.rows[0]?.idle ?? false,
    deadLetters: Number(dead.rows[0].n),
    tables: tables.rows.map((t) => {
      const name = `${t.source_schema}.${t.source_table}`;
      return { name, target: `${t.target_schema}.${t.target_table}`, key: t.key_columns, captured: t.captured, triggersDisabledOn: t.disabled_on as string[], load: loads.get(name) ?? null };
    }),
  };
}
