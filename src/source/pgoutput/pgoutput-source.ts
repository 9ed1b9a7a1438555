// The change source of pgoutput mode: a logical replication slot, read through a publication of
// the captured tables.
//
// States: released → held (the stream's advisory lock on a normal connection, the capture state
// checked, the replication stream started from the slot's confirmed position) → released again on
// reset()/close(). Inside a held stream, per transaction: outside → inside (after BEGIN; its
// changes may be handed out over several pages) → outside (after COMMIT: its end LSN becomes the
// position to acknowledge).
//
// Acknowledgement: a page's position is the end LSN of the last transaction it completes; confirm()
// reports it to the server only after the sink applied the page, so the slot's confirmed position
// never passes a change that is not in the target. A transaction spread over pages is acknowledged
// once, at its commit, after its last page: a crash in between replays it whole (the sinks are
// idempotent). A keepalive's WAL end is acknowledged as well, so that a publication whose tables
// are idle on a busy database holds back no WAL, but only once every message this stream queued
// before that keepalive is applied, and only when it came between transactions: the walsender sent
// everything before its WAL end first. Its place is counted in messages of one stream (wal-stream.ts
// `received`); a keepalive of a stream that failed is forgotten with it. Remembering its WAL end
// across a restart acknowledged changes the restarted stream had not delivered yet, and a second
// failure then lost them for good (the soak found it: pgoutput-ack.test.ts).
//
// Stop marks: a non-transactional logical message (prefix 'pg2crate') is the exact point "every
// transaction that committed before this is delivered". Catch-up emits one when it takes the stream
// and ends there; the switch to trigger mode drains up to the one it emitted after installing the
// triggers (before the stream starts), and nothing after it is handed out. Postgres decodes a
// non-transactional message only if it starts at or after the position decoding starts from (the
// slot's confirmed position), and such a message arrives at its end position, so acknowledging a
// keepalive's WAL end or the mark's own position would make a restarted switch start behind its
// mark and wait for it forever. A switch therefore acknowledges only commits of applied
// transactions: the slot's confirmed position stays at or before the mark until the hand-over is
// recorded, and every restart of the switch emits a fresh mark anyway (switch.ts).
//
// The trade-off: pages are cut from what has arrived, so a trickle gives small pages (low latency)
// and a backlog gives full ones; reading pauses while two pages of messages wait (wal-stream.ts).
//
// The publication lists pg2crate's outbox as well: repair, dead-letter retry and initial-load
// events written there are applied from the slot at their commit (outbox-events.ts).
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { Pgoutput } from 'pg-logical-replication';
import type { Change, SourceCatalog } from '../../core/change.js';
import { ConfigError, StreamBusyError } from '../../core/errors.js';
import { qualify } from '../../core/identifiers.js';
import type { Logger } from '../../core/logger.js';
import { modeMismatch, readCaptureState } from '../../capture/capture-state.js';
import type { ChangeSource, DeadLetter, Page } from '../change-source.js';
import { streamLockText } from '../../capture/names.js';
import { sleep } from '../../core/sleep.js';
import { RegistryCatalog } from '../../capture/registry.js';
import { noteColumns } from '../../capture/column-watch.js';
import { formatLsn, parseLsn } from './lsn.js';
import { OutboxEvents } from './outbox-events.js';
import { checkServer, checkTables, ensurePublication } from './preflight.js';
import { RelationMap } from './relations.js';
import { rowChanges } from './row-changes.js';
import { slotInfo } from './slot.js';
import { WalStream } from './wal-stream.js';
import { sameColumns } from '../page-keys.js';
import { parkLetters } from '../park.js';
import { createPool } from '../../core/pg-pool.js';

/** The switch to trigger mode, run on the connection that holds the stream. */
export interface StopAt {
  /**
   * Installs the triggers and emits a stop mark, before the stream starts (`slot`: the slot exists).
   * Without a slot it only makes sure a hand-over point is recorded: nothing is left to drain.
   */
  begin(db: pg.ClientBase, slot: boolean): Promise<string>;
  /** everything before the mark is applied and the stream is stopped: hand over to the outbox */
  reached(db: pg.ClientBase): Promise<void>;
}

export interface PgoutputOptions {
  connection: pg.ClientConfig;
  schema: string;
  stream: string;
  slot: string;
  publication: string;
  standbyRetryMs: number;
  /** the drainer's page size; reading pauses while twice this many messages wait */
  pageSize: number;
  slotWarnBytes: number;
  logger: Logger;
  /** changes arrived (wakes an idle drainer) */
  onData?: () => void;
  /** catch-up: end once everything committed before the stream was taken is applied */
  catchUp?: boolean;
  stopAt?: StopAt;
}

export const MARK_PREFIX = 'pg2crate';
const STATUS_INTERVAL_MS = 10_000;
const SLOT_CHECK_MS = 60_000;
/** How often the outbox checkpoint's applied horizon moves (#advanceHorizon). */
const HORIZON_MS = 1000;

export class PgoutputSource implements ChangeSource {
  readonly catalog: SourceCatalog;
  readonly #opts: PgoutputOptions;
  readonly #log: Logger;
  readonly #catalogPool: pg.Pool;
  #db: pg.Client | null = null;
  #wal: WalStream | null = null;
  #relations: RelationMap | null = null;
  /** per page: relations (and, for outbox events, tables) whose key was read again, tables whose key changed, and whether a change lacks its key */
  readonly #replanned = new Set<number>();
  readonly #reread = new Set<number>();
  readonly #rekeyed = new Set<number>();
  #unkeyed = false;
  #checked = false;
  #seq = 0;
  #inTxn = false;
  /** end LSN of the last transaction handed out whole */
  #complete = 0n;
  #confirmed = 0n;
  /** the newest keepalive between transactions: its WAL end, and how many messages came before it */
  #keepalive: { walEnd: bigint; after: number } | null = null;
  /** messages of this stream taken into pages that were applied */
  #appliedUpTo = 0;
  /** messages taken by the end of each page handed out, and from which stream */
  readonly #pageEnds = new WeakMap<Page, { wal: WalStream; taken: number }>();
  #mark: string | null = null;
  #markReached = false;
  #finished = false;
  #unknown = new Set<number>();
  readonly #outbox: OutboxEvents;
  /** by table id, the key columns its last change was keyed by (#keyedBy) */
  readonly #keys = new Map<number, string[]>();
  /** the open transaction changed a published table: its outbox inserts are trigger events */
  #txnWroteTables = false;
  #pendingApplied = 0;
  #statsAt = 0;
  /** Snapshots, each with the WAL insert position read after it, oldest first (#advanceHorizon). */
  #horizon: { snapshot: string; lsn: bigint; takenAt: Date }[] = [];
  #horizonAt = 0;
  #slotTimer: NodeJS.Timeout | null = null;
  #arrived: (() => void) | null = null;

  constructor(opts: PgoutputOptions) {
    this.#opts = opts;
    this.#log = opts.logger.child({ component: 'pgoutput' });
    this.#catalogPool = createPool({ ...opts.connection, max: 2, application_name: 'pg2crate catalog' }, this.#log, 'catalog');
    this.catalog = new RegistryCatalog(this.#catalogPool, opts.schema);
    this.#outbox = new OutboxEvents(this.#catalogPool, opts.schema);
  }

  async acquire(signal: AbortSignal, wait = true): Promise<void> {
    if (this.#db) return;
    const o = this.#opts;
    const db = new pg.Client({ ...o.connection, application_name: 'pg2crate drainer', keepAlive: true });
    db.on('error', (err) => this.#log.warn({ err }, 'drainer connection failed'));
    await db.connect();
    let announced = false;
    try {
      for (;;) {
        const res = await db.query<{ ok: boolean }>(`select pg_try_advisory_lock(hashtextextended($1, 0)) as ok`, [streamLockText(o.schema, o.stream)]);
        if (res.rows[0].ok) break;
        if (!wait) throw new StreamBusyError(`another pg2crate instance holds stream ${o.stream} of schema ${o.schema}; it is applying changes already (use --wait to wait for it)`);
        if (!announced) {
          this.#log.info({ stream: o.stream }, 'standby: another instance holds the stream, waiting to take over');
          announced = true;
        }
        await sleep(o.standbyRetryMs, signal);
        if (signal.aborted) throw signal.reason ?? new Error('aborted');
      }
      await this.#start(db);
    } catch (err) {
      await this.#wal?.stop();
      this.#wal = null;
      await db.end().catch(() => {});
      throw err;
    }
    this.#db = db;
    this.#log.info({ stream: o.stream, slot: o.slot, from: formatLsn(this.#confirmed) }, announced ? 'took over the stream' : 'holding the stream');
  }

  async #start(db: pg.Client): Promise<void> {
    const o = this.#opts;
    const state = await readCaptureState(db, o.schema, o.stream);
    if (o.stopAt && state.mode === 'trigger') {
      this.#finished = true;
      return;
    }
    if (state.mode !== 'pgoutput' && !(o.stopAt && state.mode === 'to-trigger')) throw modeMismatch('pgoutput', state.mode, o.stream);
    if (!this.#checked) {
      await checkServer(db);
      await checkTables(db, o.schema);
      if (await ensurePublication(db, o.schema, o.publication)) this.#log.info({ publication: o.publication }, 'publication brought in line with the captured tables');
      this.#checked = true;
    }
    const slot = await slotInfo(db, o.slot);
    if (!slot?.confirmedFlushLsn && o.stopAt) {
      // Either the switch dropped the slot once the mark was reached and stopped before recording
      // it, or someone dropped the slot (`slot drop --force`): then nothing can be drained, and
      // the switch goes on (begin() tells which, and asks for a backfill in the second case).
      await o.stopAt.begin(db, false);
      await o.stopAt.reached(db);
      this.#finished = true;
      return;
    }
    if (!slot?.confirmedFlushLsn) {
      throw new ConfigError(
        'PG2CRATE_SLOT',
        `replication slot ${o.slot} does not exist (dropped?), so changes since then were not captured; resync with \`pg2crate switch-capture trigger\` then \`pg2crate backfill\``,
      );
    }
    await db.query(`insert into ${qualify(o.schema, 'checkpoint')} (stream) values ($1) on conflict (stream) do nothing`, [o.stream]);
    // Never before where the switch advanced the slot: a crash can put an advanced slot back at its
    // creation-time point, which PostgreSQL may fail to decode from (slot.ts, migration 000010).
    const confirmed = parseLsn(slot.confirmedFlushLsn);
    const recorded = state.slotStartLsn ? parseLsn(state.slotStartLsn) : 0n;
    if (recorded > confirmed) this.#log.warn({ slot: o.slot, confirmed: slot.confirmedFlushLsn, start: state.slotStartLsn }, 'the slot is behind where the switch advanced it (a crash?); streaming from there');
    this.#complete = this.#confirmed = recorded > confirmed ? recorded : confirmed;
    this.#inTxn = false;
    this.#keepalive = null;
    this.#appliedUpTo = 0;
    this.#markReached = false;
    this.#relations = new RelationMap(this.#catalogPool, o.schema);
    const wal = new WalStream({
      connection: o.connection, slot: o.slot, publication: o.publication, highWater: Math.max(o.pageSize * 2, 64), statusIntervalMs: STATUS_INTERVAL_MS,
      logger: this.#log, onItem: () => this.#onItem(), onKeepalive: (end, reply) => this.#onKeepalive(wal, end, reply),
    });
    this.#wal = wal;
    wal.assume(this.#confirmed);
    // The mark before the stream: it lies after the slot's confirmed position, so it is decoded and
    // sent, and it is known before anything arrives.
    if (o.stopAt) this.#mark = await o.stopAt.begin(db, true);
    await wal.start();
    if (o.catchUp) {
      this.#mark = `${o.stream}:${randomUUID()}`;
      await db.query(`select pg_logical_emit_message(false, $1, $2)`, [MARK_PREFIX, this.#mark]);
    }
    this.#watchSlot();
  }

  #onItem(): void {
    this.#arrived?.();
    this.#opts.onData?.();
  }

  #onKeepalive(wal: WalStream, walEnd: bigint, replyRequested: boolean): void {
    if (wal !== this.#wal) return;
    // Inside a transaction the WAL end can lie before its commit: nothing to gain from it.
    if (!wal.receivingTxn && walEnd > (this.#keepalive?.walEnd ?? 0n)) this.#keepalive = { walEnd, after: wal.received };
    if (!this.#acknowledgeKeepalive(wal) && replyRequested) wal.acknowledge(this.#confirmed, false);
  }

  /**
   * Acknowledges the newest keepalive's WAL end once every message queued before it is applied;
   * never during a switch (see the top). True if it moved the confirmed position.
   */
  #acknowledgeKeepalive(wal: WalStream): boolean {
    const k = this.#keepalive;
    if (!k || this.#appliedUpTo < k.after || k.walEnd <= this.#confirmed || this.#markReached || this.#opts.stopAt) return false;
    this.#confirmed = k.walEnd;
    wal.acknowledge(k.walEnd, false);
    return true;
  }

  #waitForItem(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(t);
        self.#arrived = null;
        resolve();
      }
      this.#arrived = done;
    });
  }

  async readPage(limit: number): Promise<Page> {
    const wal = this.#wal;
    if (this.#finished || !wal) return { changes: [], position: formatLsn(this.#confirmed), windowDone: true };
    if (wal.failure) throw wal.failure;
    // Mid-transaction or before the mark, an empty queue means "more is coming": wait for it
    // instead of returning empty pages in a tight loop.
    if (wal.length === 0 && (this.#inTxn || (this.#mark !== null && !this.#markReached))) await this.#waitForItem(1000);
    if (wal.failure) throw wal.failure;
    const changes: Change[] = [];
    this.#replanned.clear();
    this.#reread.clear();
    while (changes.length < limit && !this.#markReached) {
      const item = wal.take();
      if (!item) break;
      await this.#message(item.lsn, item.msg, changes);
    }
    const windowDone = this.#mark !== null ? this.#markReached : wal.length === 0 && !this.#inTxn;
    const page: Page = { changes, position: formatLsn(this.#complete), windowDone };
    if (this.#rekeyed.size > 0) page.rekeyed = [...this.#rekeyed];
    if (this.#unkeyed) page.unkeyed = true;
    this.#rekeyed.clear();
    this.#unkeyed = false;
    this.#pageEnds.set(page, { wal, taken: wal.taken });
    return page;
  }

  async #message(lsn: bigint, msg: Pgoutput.Message, out: Change[]): Promise<void> {
    switch (msg.tag) {
      case 'begin':
        this.#inTxn = true;
        this.#txnWroteTables = false;
        return;
      case 'commit':
        this.#inTxn = false;
        if (msg.commitEndLsn) this.#complete = parseLsn(msg.commitEndLsn);
        return;
      case 'relation':
        await this.#relations!.plan(msg);
        return;
      case 'insert':
      case 'update':
      case 'delete':
        await this.#change(msg, out);
        return;
      case 'truncate':
        if (msg.relations.some((r) => !this.#outbox.isOutbox(r))) this.#txnWroteTables = true;
        for (const r of msg.relations) {
          const plan = this.#relations!.get(r.relationOid);
          if (plan?.tableId) out.push({ id: ++this.#seq, tableId: plan.tableId, op: 'T', key: '', row: null, raw: null });
        }
        return;
      case 'message': {
        if (msg.transactional || this.#inTxn) return;
        const ours = msg.prefix === MARK_PREFIX && this.#mark !== null && Buffer.from(msg.content).toString() === this.#mark;
        // Outside a transaction, everything before it is delivered: its position can be acknowledged,
        // except a switch's own mark, which a restarted switch must find again (see the top).
        if (lsn > this.#complete && !(ours && this.#opts.stopAt)) this.#complete = lsn;
        if (ours) {
          this.#markReached = true;
          this.#log.info({ lsn: formatLsn(lsn) }, 'reached the stop mark');
        }
        return;
      }
      default:
        return;
    }
  }

  async #change(msg: Pgoutput.MessageInsert | Pgoutput.MessageUpdate | Pgoutput.MessageDelete, out: Change[]): Promise<void> {
    const rel = this.#relations!;
    if (this.#outbox.isOutbox(msg.relation)) {
      // Trigger events (see outbox-events.ts) are skipped: the row changes before them are their content.
      if (msg.tag === 'insert' && (!this.#txnWroteTables || OutboxEvents.sentOnlyHere(msg))) {
        const keyed = await this.#outbox.change(msg, ++this.#seq, out, this.#reread);
        const change = out[out.length - 1];
        if (change.unkeyed !== undefined) this.#unkeyed = true;
        if (keyed !== null) this.#keyedBy(change.tableId, keyed);
      }
      return;
    }
    this.#txnWroteTables = true;
    let plan = rel.get(msg.relation.relationOid) ?? (await rel.plan(msg.relation));
    if (plan.keyMissing.length > 0 && !this.#replanned.has(plan.relid)) {
      // A key column renamed: once a page, the registry's key is read again (relations.ts replan).
      this.#replanned.add(plan.relid);
      const next = await rel.replan(plan);
      if (next !== plan && next.tableId !== null) this.#rekeyed.add(next.tableId);
      plan = next;
    }
    if (plan.keyMissing.length > 0) this.#unkeyed = true;
    if (plan.tableId !== null && this.#keys.get(plan.tableId) !== plan.keyColumns) this.#keyedBy(plan.tableId, plan.keyColumns);
    if (plan.tableId === null) {
      if (!this.#unknown.has(plan.relid)) {
        this.#unknown.add(plan.relid);
        this.#log.warn({ table: plan.name }, 'the publication sends a table that is not captured; its changes are skipped');
      }
      return;
    }
    await rowChanges(plan, msg, out, { nextId: () => ++this.#seq, db: this.#catalogPool });
  }

  /**
   * Notes the key a table's changes are keyed by. The drainer describes a table once and keeps it
   * until a page says the table was rekeyed; a table's row changes (by its relation's plan) and its
   * outbox events (repair, retry, load, a partition's truncate: by the registry's key when first
   * read) can be keyed otherwise after a key column was renamed, and applied under the drainer's
   * old key the events' deletes would match nothing. So a key other than the last one rekeys the table.
   */
  #keyedBy(tableId: number, key: string[]): void {
    const last = this.#keys.get(tableId);
    if (last !== undefined && !sameColumns(last, key)) this.#rekeyed.add(tableId);
    this.#keys.set(tableId, key);
  }

  async confirm(page: Page): Promise<void> {
    const wal = this.#wal;
    if (!wal || !this.#db) return;
    const pos = parseLsn(page.position);
    if (pos > this.#confirmed) {
      this.#confirmed = pos;
      wal.acknowledge(pos);
    }
    const end = this.#pageEnds.get(page);
    if (end?.wal === wal && end.taken > this.#appliedUpTo) this.#appliedUpTo = end.taken;
    this.#pendingApplied += page.changes.length;
    if (this.#pendingApplied > 0 && Date.now() - this.#statsAt > 1000) await this.#saveStats();
    this.#acknowledgeKeepalive(wal);
    // Not during a switch back: the outbox's checkpoint is set at its hand-over point (switch.ts),
    // and trigger events written meanwhile must stay for it.
    if (Date.now() - this.#horizonAt >= HORIZON_MS && !this.#finished && !this.#opts.stopAt) await this.#advanceHorizon();
    if (this.#markReached && page.windowDone && this.#opts.stopAt && !this.#finished) {
      await this.#saveStats();
      await this.#stopStream();
      await this.#opts.stopAt.reached(this.#db);
      this.#finished = true;
    }
  }

  /**
   * Moves the outbox checkpoint's prev_snapshot, which retention and status read to tell applied
   * outbox events (initial loads, repairs, retries) from pending ones; in this mode those events
   * come through the slot. A snapshot S read together with the WAL insert position L (S is the
   * statement's, taken before L is read) shows only transactions whose commit record ends before
   * L, and the slot decodes in commit order: once the confirmed position passed L, everything
   * visible in S is applied, and S becomes prev_snapshot. A switch back to triggers sets the
   * checkpoint anew (switch.ts), and a later snapshot hides fewer events, so low_id still bounds them.
   */
  async #advanceHorizon(): Promise<void> {
    this.#horizonAt = Date.now();
    let passed: { snapshot: string; takenAt: Date } | undefined;
    while (this.#horizon.length > 0 && this.#horizon[0].lsn <= this.#confirmed) passed = this.#horizon.shift();
    if (passed) {
      await this.#db!.query(
        `update ${qualify(this.#opts.schema, 'checkpoint')} set prev_snapshot = $2::pg_snapshot, prev_taken_at = $3 where stream = $1`,
        [this.#opts.stream, passed.snapshot, passed.takenAt],
      );
    }
    const now = await this.#db!.query<{ s: string; l: string; t: Date }>(
      `select pg_current_snapshot()::text as s, pg_current_wal_insert_lsn()::text as l, statement_timestamp() as t`,
    );
    this.#horizon.push({ snapshot: now.rows[0].s, lsn: parseLsn(now.rows[0].l), takenAt: now.rows[0].t });
    // The slot lags by more than a minute: dropping the oldest only delays the horizon.
    if (this.#horizon.length > 64) this.#horizon.shift();
  }

  async #saveStats(): Promise<void> {
    const n = this.#pendingApplied;
    this.#pendingApplied = 0;
    this.#statsAt = Date.now();
    await this.#db!.query(
      `update ${qualify(this.#opts.schema, 'checkpoint')} set applied_events = applied_events + $2, last_applied_at = case when $2 > 0 then now() else last_applied_at end, updated_at = now() where stream = $1`,
      [this.#opts.stream, n],
    );
  }

  #watchSlot(): void {
    const check = async () => {
      const info = await slotInfo(this.#catalogPool, this.#opts.slot).catch(() => null);
      if (info && info.retainedBytes > this.#opts.slotWarnBytes) {
        this.#log.warn({ slot: info.name, retainedBytes: info.retainedBytes, warnBytes: this.#opts.slotWarnBytes, walStatus: info.walStatus }, 'the replication slot holds back more WAL than PG2CRATE_SLOT_WARN_MB');
      }
    };
    void check();
    this.#slotTimer = setInterval(() => void check(), SLOT_CHECK_MS);
    this.#slotTimer.unref();
  }

  async park(letters: DeadLetter[]): Promise<void> {
    // event_id is the change's number in this stream, which starts again with each stream: a change
    // the slot sends again comes under another one, so letters are told apart by image (park.ts).
    await parkLetters(this.#db!, qualify(this.#opts.schema, 'dead_letters'), this.#opts.stream, letters, 'image');
  }

  async columnsChanged(tableId: number): Promise<void> {
    const client = await this.#catalogPool.connect();
    try {
      const added = await noteColumns(client, this.#opts.schema, tableId);
      if (added.length > 0) this.#log.info({ tableId, columns: added }, 'columns with a default were added; copying the table again so existing rows carry them');
    } finally {
      client.release();
    }
  }

  /** No wake-ups to arrange: the stream itself says when changes arrive. */
  async setIdle(): Promise<void> {}

  async #stopStream(): Promise<void> {
    if (this.#slotTimer) clearInterval(this.#slotTimer);
    this.#slotTimer = null;
    this.#arrived?.();
    const wal = this.#wal;
    this.#wal = null;
    await wal?.stop();
  }

  async reset(): Promise<void> {
    await this.#stopStream();
    const db = this.#db;
    this.#db = null;
    this.#mark = null;
    this.#markReached = false;
    this.#finished = false;
    this.#inTxn = false;
    if (db) await db.end().catch(() => {});
  }

  async close(): Promise<void> {
    await this.reset();
    await this.#catalogPool.end().catch(() => {});
  }
}
