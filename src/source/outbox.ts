// Reads the trigger outbox in windows between two transaction snapshots.
//
// States of a stream's checkpoint: no window (cur_snapshot null) → window open (cur_snapshot set,
// after_id = position of the last applied page) → window done (prev := cur, cur := null).
//
// Ids come from a sequence when the trigger fires, not at commit, so "everything after the last id"
// loses a transaction that took its ids first and committed last. A window instead holds every
// event whose transaction is visible in `cur` and not in `prev`; each committed transaction falls
// into exactly one window, and in-progress ones wait for a later window. Inside a window, pages
// follow id order, which for any one row is commit order (a second writer waits on the row lock
// before its trigger runs). The page position is saved after each applied page, so a restart
// resumes inside the window; replaying a page is harmless because sinks are idempotent.
//
// Id bounds of a window: no event of a window has an id above `cur_upper` (the sequence read after
// the snapshot was taken: a visible transaction committed before it, so all its nextval() calls
// came before). No event of a transaction not visible in `cur` has an id at or below the next
// `low_id`: such a transaction has xid >= xmin(cur); the mark chosen has xid_after < xmin(cur), and
// its seq_before was read before xid_after was assigned, so before that transaction had its xid and
// thus before its first nextval(); with CACHE 1 every later nextval() is larger. The trade-off: a
// transaction left open for hours holds `low_id` back, and the first page of each window then
// walks the index over ids written since it began.
//
// One active drainer per stream: a session advisory lock held on the same connection that reads
// pages and writes the checkpoint, so an instance that lost its connection cannot write either.
//
// A final window (the switch to pgoutput, `finalWindow`): the last window's snapshot is not taken
// but given, the one exported with the replication slot. Once that window is done, every
// transaction visible in it is applied and the slot has every later one; the source then hands out
// nothing more.
import pg from 'pg';
import type { SourceCatalog } from '../core/change.js';
import { StreamBusyError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { qualify } from '../core/identifiers.js';
import type { ChangeSource, DeadLetter, Page } from './change-source.js';
import { modeMismatch, readCaptureState } from '../capture/capture-state.js';
import { streamLockText } from '../capture/names.js';
import { RegistryCatalog } from '../capture/registry.js';
import { noteColumns } from '../capture/column-watch.js';
import { PageKeys } from './page-keys.js';
import { copyPageSql, readCopyRows } from './copy-page.js';
import { outboxSequenceSql, readOutboxSequence } from '../capture/outbox-bounds.js';
import { createPool } from '../core/pg-pool.js';
import { sleep } from '../core/sleep.js';
import { parkLetters } from './park.js';

interface Checkpoint {
  prev: string | null;
  cur: string | null;
  upper: string | null;
  after: string;
  low: string;
}

export interface OutboxOptions {
  connection: pg.ClientConfig;
  schema: string;
  stream: string;
  standbyRetryMs: number;
  logger: Logger;
  /** switching to pgoutput: end with a window whose snapshot is the slot's exported one */
  finalWindow?: FinalWindow;
}

/** Both run on the connection that holds the stream. */
export interface FinalWindow {
  /** creates the slot (or finds the one created before a crash) and returns its exported snapshot */
  snapshot(db: pg.ClientBase): Promise<string>;
  /** the window ending at that snapshot is applied: drop the triggers, record the new mode */
  reached(db: pg.ClientBase): Promise<void>;
}

export class OutboxSource implements ChangeSource {
  readonly catalog: SourceCatalog;
  readonly #opts: OutboxOptions;
  readonly #log: Logger;
  readonly #t: { outbox: string; checkpoint: string; marks: string; state: string; dead: string; tables: string };
  #client: pg.Client | null = null;
  #catalogPool: pg.Pool;
  #cp: Checkpoint | null = null;
  readonly #pageKeys: PageKeys;
  /** the snapshot of the final window, once known; #finalDone once it is applied */
  #final: string | null = null;
  #finalDone = false;

  constructor(opts: OutboxOptions) {
    this.#opts = opts;
    this.#log = opts.logger.child({ component: 'outbox' });
    const s = opts.schema;
    this.#t = {
      outbox: qualify(s, 'outbox'), checkpoint: qualify(s, 'checkpoint'), marks: qualify(s, 'window_marks'),
      state: qualify(s, 'state'), dead: qualify(s, 'dead_letters'), tables: qualify(s, 'tables'),
    };
    this.#catalogPool = createPool({ ...opts.connection, max: 2, application_name: 'pg2crate catalog' }, this.#log, 'catalog');
    this.catalog = new RegistryCatalog(this.#catalogPool, s);
    this.#pageKeys = new PageKeys(this.#t.tables);
  }

  get #db(): pg.Client {
    if (!this.#client) throw new Error('outbox source is not connected');
    return this.#client;
  }

  #queue: Promise<unknown> = Promise.resolve();

  /**
   * Runs one operation on the drainer connection at a time: a page read ahead must not interleave
   * its statements with a checkpoint write (which could then land inside, or be lost with, another
   * operation's transaction).
   */
  #serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(op, op);
    this.#queue = run.catch(() => {});
    return run;
  }

  async acquire(signal: AbortSignal, wait = true): Promise<void> {
    if (this.#client) return;
    const client = new pg.Client({ ...this.#opts.connection, application_name: 'pg2crate drainer', keepAlive: true });
    client.on('error', (err) => this.#log.warn({ err }, 'drainer connection failed'));
    await client.connect();
    // Pages must be read by an ordered walk of the id indexes that stops after `limit` rows. Right
    // after a burst the outbox's statistics are stale, and the planner would rather scan the whole
    // rest of the window and sort it: every page would then cost as much as the window, and a
    // million-row transaction would drain in quadratic time. This connection reads nothing else
    // that needs a sort.
    await client.query('set enable_sort = off');
    let announced = false;
    try {
      for (;;) {
        const res = await client.query<{ ok: boolean }>(`select pg_try_advisory_lock(hashtextextended($1, 0)) as ok`, [
          streamLockText(this.#opts.schema, this.#opts.stream),
        ]);
        if (res.rows[0].ok) break;
        if (!wait) throw new StreamBusyError(`another pg2crate instance holds stream ${this.#opts.stream} of schema ${this.#opts.schema}; it is applying changes already (use --wait to wait for it)`);
        if (!announced) {
          this.#log.info({ stream: this.#opts.stream }, 'standby: another instance holds the stream, waiting to take over');
          announced = true;
        }
        await sleep(this.#opts.standbyRetryMs, signal);
        if (signal.aborted) throw signal.reason ?? new Error('aborted');
      }
      await client.query(`insert into ${this.#t.checkpoint} (stream) values ($1) on conflict (stream) do nothing`, [this.#opts.stream]);
      const { mode } = await readCaptureState(client, this.#opts.schema, this.#opts.stream);
      const fw = this.#opts.finalWindow;
      if (fw) {
        this.#finalDone = mode === 'pgoutput';
        if (!this.#finalDone) this.#final = await fw.snapshot(client);
      } else if (mode !== 'trigger') {
        throw modeMismatch('trigger', mode, this.#opts.stream);
      }
    } catch (err) {
      await client.end().catch(() => {});
      throw err;
    }
    this.#client = client;
    this.#cp = null;
    this.#log.info({ stream: this.#opts.stream }, announced ? 'took over the stream' : 'holding the stream');
  }

  async #loadCheckpoint(): Promise<Checkpoint> {
    if (this.#cp) return this.#cp;
    const res = await this.#db.query(
      `select prev_snapshot::text as prev, cur_snapshot::text as cur, cur_upper::text as upper, after_id::text as after, low_id::text as low
         from ${this.#t.checkpoint} where stream = $1`,
      [this.#opts.stream],
    );
    this.#cp = res.rows[0] as Checkpoint;
    return this.#cp;
  }

  async #openWindow(cp: Checkpoint): Promise<void> {
    const db = this.#db;
    await db.query('begin');
    try {
      // A mark: the sequence read first, then an xid assigned to this transaction. Any transaction
      // with a larger xid got it afterwards, so its ids exceed seq_before.
      // Two statements, so that the order of the two reads does not depend on the executor.
      // The read takes the sequence's lock (outbox-bounds.ts): a read of the page without it can
      // see a value up to 31 too high, and a mark that high would skip events.
      const seq = await readOutboxSequence(db, this.#opts.schema);
      await db.query(`insert into ${this.#t.marks} (stream, seq_before, xid_after) values ($1, $2, pg_current_xact_id()) on conflict do nothing`, [
        this.#opts.stream, seq,
      ]);
      await db.query('commit');
    } catch (err) {
      await db.query('rollback').catch(() => {});
      throw err;
    }
    // The snapshot, and in the same statement but after it was taken, the upper id bound.
    // statement_timestamp() is no later than the snapshot: what committed before it is in the window.
    // A final window's snapshot was taken earlier still, so the bound read now holds for it too.
    const snap = await db.query<{ snap: string; upper: string; at: Date }>(
      `select coalesce($1::pg_snapshot, pg_current_snapshot())::text as snap, statement_timestamp() as at,
              ${outboxSequenceSql(this.#opts.schema)}::text as upper`,
      [this.#final],
    );
    const { snap: cur, upper, at } = snap.rows[0];
    await db.query(`update ${this.#t.checkpoint} set cur_snapshot = $2, cur_upper = $3, cur_taken_at = $4, after_id = low_id, updated_at = now() where stream = $1`, [
      this.#opts.stream, cur, upper, at,
    ]);
    cp.cur = cur;
    cp.upper = upper;
    cp.after = cp.low;
  }

  readonly readsAhead = true;

  readPage(limit: number, after?: Page): Promise<Page> {
    return this.#serial(() => this.#readPage(limit, after));
  }

  async #readPage(limit: number, after?: Page): Promise<Page> {
    const cp = await this.#loadCheckpoint();
    if (this.#final !== null && !this.#finalDone && cp.cur === null && cp.prev === this.#final) {
      await this.#opts.finalWindow!.reached(this.#db);
      this.#finalDone = true;
    }
    if (this.#finalDone) return { changes: [], position: cp.after, windowDone: true };
    if (cp.cur === null) await this.#openWindow(cp);
    // Reading ahead stays inside the window: the drainer asks only after a page that did not end it.
    const from = after ? after.position : cp.after;
    // The page must walk the id indexes in order and stop after `limit` rows; enable_sort is off on
    // this connection for that (see acquire()).
    // The rows as binary COPY (copy-page.ts): no message, field array or row array per event for
    // the driver to build.
    const rows = await readCopyRows(this.#db, copyPageSql(this.#t.outbox, from, cp.upper!, cp.cur!, cp.prev, limit));
    // The rows stay text: only the key and the member names are read (row-text.ts, page-keys.ts).
    const keyed = await this.#pageKeys.read(this.#db, rows);
    const page: Page = {
      changes: keyed.changes,
      position: rows.length > 0 ? rows[rows.length - 1][0] : from,
      windowDone: rows.length < limit,
    };
    if (keyed.rekeyed) page.rekeyed = keyed.rekeyed;
    if (keyed.unkeyed) page.unkeyed = true;
    return page;
  }

  confirm(page: Page): Promise<void> {
    return this.#serial(() => this.#confirm(page));
  }

  async #confirm(page: Page): Promise<void> {
    const cp = await this.#loadCheckpoint();
    const db = this.#db;
    const n = page.changes.length;
    if (!page.windowDone) {
      await db.query(
        `update ${this.#t.checkpoint} set after_id = $2, applied_events = applied_events + $3, last_applied_at = case when $3 > 0 then now() else last_applied_at end, updated_at = now() where stream = $1`,
        [this.#opts.stream, page.position, n],
      );
      cp.after = page.position;
      return;
    }
    // Window done: prev := cur. Every transaction not visible in cur has an xid >= xmin(cur), so the
    // newest mark with xid_after < xmin(cur) bounds the ids of all events still to come.
    await db.query('begin');
    try {
      const low = await db.query<{ seq: string | null; xmax: string | null }>(
        `select seq_before::text as seq, xid_after::text as xmax from ${this.#t.marks}
          where stream = $1 and xid_after < pg_snapshot_xmin($2::pg_snapshot) order by xid_after desc limit 1`,
        [this.#opts.stream, cp.cur],
      );
      const newLow = await this.#guardedLow(cp, low.rows[0]?.seq ?? cp.low);
      if (low.rows[0]?.xmax) {
        await db.query(`delete from ${this.#t.marks} where stream = $1 and xid_after < $2::xid8`, [this.#opts.stream, low.rows[0].xmax]);
      }
      await db.query(
        `update ${this.#t.checkpoint}
            set prev_snapshot = cur_snapshot, prev_taken_at = cur_taken_at, cur_snapshot = null, cur_taken_at = null, cur_upper = null, after_id = 0, low_id = $2,
                applied_events = applied_events + $3, windows = windows + 1,
                last_applied_at = case when $3 > 0 then now() else last_applied_at end, updated_at = now()
          where stream = $1`,
        [this.#opts.stream, newLow, n],
      );
      await db.query('commit');
      cp.prev = cp.cur;
      cp.cur = null;
      cp.upper = null;
      cp.after = '0';
      cp.low = newLow;
    } catch (err) {
      await db.query('rollback').catch(() => {});
      this.#cp = null;
      throw err;
    }
  }

  /**
   * The guard of the lower bound: no event with an id in (old, new] may belong to a transaction the
   * closing window did not see, for the next windows read only above the new bound. Events of
   * transactions still running are invisible here, so this cannot prove the bound, but it turns the
   * usual shape of a wrong bound (a writer that committed just after the snapshot) from silent loss
   * into an error: the bound stays where it was, so those events are read by a later window.
   */
  async #guardedLow(cp: Checkpoint, proposed: string): Promise<string> {
    if (BigInt(proposed) <= BigInt(cp.low)) return proposed;
    const res = await this.#db.query<{ id: string }>(
      `select o.id::text as id from ${this.#t.outbox} o
        where o.id > $1 and o.id <= $2 and not pg_visible_in_snapshot(o.xid, $3::pg_snapshot)
        order by o.id limit 20`,
      [cp.low, proposed, cp.cur],
    );
    if (res.rows.length === 0) return proposed;
    const eventIds = res.rows.map((r) => r.id);
    await this.#db.query(`update ${this.#t.checkpoint} set bound_violations = bound_violations + $2 where stream = $1`, [this.#opts.stream, eventIds.length]);
    this.#log.error(
      { stream: this.#opts.stream, lowId: cp.low, proposedLowId: proposed, eventIds },
      'window bound guard: events below the proposed lower id bound belong to transactions the window did not see; keeping the old bound so they are applied (please report this)',
    );
    return cp.low;
  }

  park(letters: DeadLetter[]): Promise<void> {
    return this.#serial(() => this.#park(letters));
  }

  async #park(letters: DeadLetter[]): Promise<void> {
    // Outbox event ids stay the same when a page is read again (park.ts).
    await parkLetters(this.#db, this.#t.dead, this.#opts.stream, letters, 'event');
  }

  columnsChanged(tableId: number): Promise<void> {
    return this.#serial(async () => {
      const added = await noteColumns(this.#db, this.#opts.schema, tableId);
      if (added.length > 0) this.#log.info({ tableId, columns: added }, 'columns with a default were added; copying the table again so existing rows carry them');
    });
  }

  setIdle(idle: boolean): Promise<void> {
    return this.#serial(() => this.#setIdle(idle));
  }

  async #setIdle(idle: boolean): Promise<void> {
    await this.#db.query(`update ${this.#t.state} set idle = $1 where idle is distinct from $1`, [idle]);
  }

  async reset(): Promise<void> {
    const c = this.#client;
    this.#client = null;
    this.#cp = null;
    if (c) await c.end().catch(() => {});
  }

  async close(): Promise<void> {
    await this.reset();
    await this.#catalogPool.end().catch(() => {});
  }
}

