// The drainer: reads pages from a change source, applies them to a sink, then saves the checkpoint.
//
// States: stopped → acquiring (a standby waits here while another instance holds the stream) →
// draining ⇄ idle (waiting for a wake-up or the poll timer) → stopping → stopped. On a retryable
// error it drops its source connection, waits with jittered backoff and acquires again; on a fatal
// one it stops and reports.
//
// Order of a page: read → coalesce per key → make sure target tables have every column the rows
// carry → apply → handle rejections (retry, then park or halt) → confirm. The checkpoint moves only
// after the sink confirmed, so a crash anywhere replays the page (the sink is idempotent).
//
// Overlap: while page N is applied, page N+1 is read, coalesced and handed to Sink.stage (the
// CrateDB sink builds its parameter rows), so the target is not left waiting between pages. A table
// that must be described (or altered) is left to the in-order path, and on any error the read-ahead
// is dropped and reading starts again at the checkpoint (test/integration/staged-pages.test.ts).
// N+1 is applied after N is confirmed, except with a sink that offers Sink.applier: there N+1's
// writes may begin while N's are in flight, when both came staged for the same tables, neither has
// a truncate, a history or a partial image, and no key is in both. The two then commute (each key
// gets only its own page's change), so per-key order holds; N is confirmed first, N+1 after it, and
// a failure of either settles both before the checkpoint's page is read again
// (test/integration/overlapped-pages.test.ts). Without it an insert drain into CrateDB left one
// request in flight for a page of 5,000 rows, where the target takes two.
//
// Wake-ups: the triggers NOTIFY only while the state row says idle. Before sleeping the drainer sets
// idle and reads once more, so a change committed before that flag flipped is not left waiting; a
// change whose trigger ran just before the flip waits at most one poll interval.
import type { Change, TableInfo } from '../core/change.js';
import { backoffDelay, classify, describe, HaltError, StreamBusyError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { ChangeSource, DeadLetter, Page } from '../source/change-source.js';
import { backOffAfter, type ApplyResult, type Sink, type SinkTableBatch } from '../sink/sink.js';
import { coalesce, type TableBatch } from './coalesce.js';

interface KnownTable {
  info: TableInfo;
  columns: Set<string>;
  seen: WeakSet<readonly string[]>;
  /** the one of them met last: rows in a row mostly share one array, and this is cheaper to ask than the set */
  last: readonly string[] | null;
}

/** A page worked out ahead (#stage): its batches, and the tables (id, description) they were made for. */
interface StagedPage {
  batches: SinkTableBatch[];
  tables: Array<[number, TableInfo]>;
  /** each table's keys (coalesce) */
  keys: Map<number, ReadonlyMap<string, Change>>;
  /** no truncate, history or partial image: the page may overlap another (#overlaps) */
  plain: boolean;
}

/** A page whose apply has begun: its promise, and what it was staged as when it came staged. */
interface Applying {
  page: Page;
  done: Promise<void>;
  staged: StagedPage | null;
  /** the apply failed (the next page does not begin beside it) */
  failed: boolean;
}

/** `p`, with a handler attached so that it never counts as unhandled: whoever awaits it still gets its error. */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

export interface DrainerOptions {
  pageSize: number;
  pollIntervalMs: number;
  deadLetterPolicy: 'park' | 'halt';
  rejectAttempts: number;
  stopTimeoutMs: number;
  /** catch-up: return once everything committed before start is applied */
  untilCaughtUp?: boolean;
  /**
   * false: read no page ahead (and so begin none beside another). The drain of a capture switch
   * stays one page at a time, as its hand-over (docs/pgoutput.md) was built, tested and soaked.
   */
  readAhead?: boolean;
  /** false: fail with StreamBusyError instead of waiting as a standby */
  waitForStream?: boolean;
}

export interface DrainerStats {
  state: 'stopped' | 'acquiring' | 'draining' | 'idle' | 'stopping';
  appliedEvents: number;
  appliedRows: number;
  pages: number;
  windows: number;
  deadLetters: number;
  errors: Record<string, number>;
  lastAppliedAt: Date | null;
}

export class Drainer {
  readonly #source: ChangeSource;
  readonly #sink: Sink;
  readonly #opts: DrainerOptions;
  readonly #log: Logger;
  readonly #tables = new Map<number, KnownTable>();
  readonly stats: DrainerStats = {
    state: 'stopped', appliedEvents: 0, appliedRows: 0, pages: 0, windows: 0, deadLetters: 0, errors: {}, lastAppliedAt: null,
  };
  #abort = new AbortController();
  #loop: Promise<void> | null = null;
  /** the sink's apply for the drainer's pages (Sink.applier where offered: the pages may overlap) */
  readonly #applyPage: (batches: SinkTableBatch[]) => Promise<ApplyResult>;
  /** whether #applyPage lets pages overlap */
  readonly #overlapping: boolean;
  #wakeRequested = false;
  #wake: (() => void) | null = null;
  #idle: boolean | undefined;
  #windowEvents = 0;

  constructor(source: ChangeSource, sink: Sink, opts: DrainerOptions, logger: Logger) {
    this.#source = source;
    this.#sink = sink;
    this.#opts = opts;
    this.#log = logger.child({ component: 'drainer' });
    const applier = sink.applier?.();
    this.#applyPage = applier ?? ((batches) => sink.apply(batches));
    this.#overlapping = applier !== undefined;
  }

  /** Starts the loop; the returned promise settles when the loop ends (stop, catch-up done, fatal error). */
  start(): Promise<void> {
    if (!this.#loop) {
      this.#abort = new AbortController();
      this.#loop = this.#run();
    }
    return this.#loop;
  }

  /** A hint that changes may be waiting (NOTIFY, reconnect). */
  wake(): void {
    this.#wakeRequested = true;
    this.#wake?.();
  }

  /**
   * No page begins from now on; the pages in flight go on. stop() waits for them. (The runner calls
   * this before it stops its other parts, so that no page begins while they stop.)
   */
  halt(): void {
    if (!this.#loop) return;
    if (this.stats.state !== 'stopped') this.stats.state = 'stopping';
    this.#abort.abort();
    this.#wake?.();
  }

  /** Finishes the page in flight (within stopTimeoutMs), saves its checkpoint, and stops. Safe to call twice. */
  async stop(): Promise<void> {
    const loop = this.#loop;
    if (loop) {
      this.halt();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), this.#opts.stopTimeoutMs); });
      const outcome = await Promise.race([loop.then(() => 'done' as const, () => 'done' as const), timeout]);
      clearTimeout(timer);
      if (outcome === 'timeout') this.#log.warn({ timeoutMs: this.#opts.stopTimeoutMs }, 'page in flight did not finish in time; it will be replayed on the next start');
    }
    // Also after a loop that ended by itself (catch-up done, fatal error): release the stream.
    await this.#source.close().catch(() => {});
  }

  get #stopping(): boolean {
    return this.#abort.signal.aborted;
  }

  async #run(): Promise<void> {
    let attempt = 0;
    let windowsDone = 0;
    let ahead: Promise<{ page: Page; staged: StagedPage | null }> | null = null;
    /** the page being applied */
    let current: Applying | null = null;
    /** the page after it, already being applied beside it (#overlaps) */
    let early: Applying | null = null;
    try {
      // A page begun beside the last one is finished and confirmed before a stop.
      while (!this.#stopping || early) {
        try {
          if (early) {
            // The stream is still held: nothing failed since this page began.
            current = early;
            early = null;
          } else {
            this.stats.state = 'acquiring';
            await this.#source.acquire(this.#abort.signal, this.#opts.waitForStream ?? true);
            if (this.#stopping) break;
            this.stats.state = this.#idle ? 'idle' : 'draining';
            const { page, staged }: { page: Page; staged: StagedPage | null } = ahead ? await ahead : { page: await this.#source.readPage(this.#opts.pageSize), staged: null };
            ahead = null;
            // A table whose key changed in the registry is described again: its key, and the target's,
            // are checked before anything of it is applied (source/page-keys.ts, the sinks' prepare()).
            // Forgotten here, when the page is taken, not when it is applied: a failure in between
            // would lose what the page says (see the catch). A page begun beside another is never
            // re-keyed (#tryStage), so every page that says so passes here.
            for (const id of page.rekeyed ?? []) this.#tables.delete(id);
            if (page.changes.length > 0 && this.#idle !== false) { await this.#source.setIdle(false); this.#idle = false; this.stats.state = 'draining'; }
            current = this.#begin(page, staged);
          }
          const { page } = current;
          // Read the next page while this one is applied, and work out its batches as soon as it is
          // there: the source, this process and the target work at once. The next page's
          // checkpoint is saved only after this one's; it is applied after it too, or beside it
          // where the two may overlap.
          if (this.#source.readsAhead && this.#opts.readAhead !== false && !page.windowDone && !this.#stopping) {
            ahead = handled(this.#source.readPage(this.#opts.pageSize, page).then((next) => ({ page: next, staged: this.#tryStage(next) })));
            if (this.#overlapping && current.staged?.plain) {
              const next = await ahead;
              if (this.#overlaps(current, next.page, next.staged)) {
                ahead = null;
                early = this.#begin(next.page, next.staged);
              }
            }
          }
          await current.done;
          await this.#source.confirm(page);
          current = null;
          attempt = 0;
          this.#count(page);
          if (!page.windowDone) continue;
          windowsDone++;
          this.stats.windows++;
          const windowEvents = this.#windowEvents;
          this.#windowEvents = 0;
          if (this.#opts.untilCaughtUp && windowsDone >= 2) break;
          if (windowEvents > 0 || this.#opts.untilCaughtUp) continue;
          if (this.#idle !== true) {
            // Declare idle, then read once more before sleeping.
            await this.#source.setIdle(true);
            this.#idle = true;
            continue;
          }
          this.stats.state = 'idle';
          await this.#sleep();
        } catch (err) {
          const dropped = ahead;
          ahead = null;
          // Nothing of a failed attempt may still be writing when its pages are read again (sink.ts).
          const writing = [current?.done, early?.done].filter((p) => p !== undefined);
          current = null;
          early = null;
          await Promise.allSettled(writing);
          if (err instanceof HaltError || err instanceof StreamBusyError) throw err;
          const kind = classify(err);
          this.stats.errors[kind] = (this.stats.errors[kind] ?? 0) + 1;
          if (kind === 'fatal' || this.#stopping) {
            if (this.#stopping) break;
            throw err;
          }
          const delay = backoffDelay(attempt++, 200, 30_000);
          this.#log.warn({ err, kind, attempt, retryInMs: delay }, `page failed (${describe(err)}); retrying`);
          await this.#source.reset();
          this.#idle = undefined;
          // A page read ahead and never begun may have found its tables' keys changed (Page.rekeyed),
          // and the source's key cache already follows: read again, it no longer says so. Those
          // tables are described again; all of them when that read failed, as it may have got that
          // far (test/integration/rekeyed-read-ahead.test.ts).
          const lost = dropped ? await dropped.then((r) => r.page, () => null) : undefined;
          if (lost === null) this.#tables.clear();
          for (const id of lost?.rekeyed ?? []) this.#tables.delete(id);
          await this.#backOff(delay, err);
        }
      }
    } finally {
      this.stats.state = 'stopped';
      this.#loop = null;
    }
  }

  /**
   * Begins applying `page`: its staged batches where they are still valid (every table the same
   * description), else worked out in order in #apply. Returns at once.
   */
  #begin(page: Page, staged: StagedPage | null): Applying {
    const valid = staged !== null && this.#stagedHolds(staged) ? staged : null;
    const applying: Applying = { page, staged: valid, done: Promise.resolve(), failed: false };
    if (page.changes.length > 0) {
      applying.done = this.#apply(page, valid);
      // also what keeps a failure from counting as unhandled: whoever awaits `done` still gets it
      applying.done.catch(() => { applying.failed = true; });
    }
    return applying;
  }

  /** Whether the tables `staged` was worked out for are still described as they were. */
  #stagedHolds(staged: StagedPage): boolean {
    return staged.tables.every(([id, info]) => this.#tables.get(id)?.info === info);
  }

  /**
   * Whether `next` may be applied while `current` still is (Sink.applier): both staged for the same
   * descriptions of their tables and plain, neither empty, and no key of `next` in `current`, table by
   * table. Then each key gets only its own page's change, whichever lands first.
   */
  #overlaps(current: Applying, next: Page, staged: StagedPage | null): boolean {
    if (this.#stopping || current.failed || !current.staged?.plain || !staged?.plain || next.changes.length === 0 || this.#idle !== false) return false;
    if (!this.#stagedHolds(staged)) return false;
    for (const [tableId, keys] of staged.keys) {
      const before = current.staged.keys.get(tableId);
      if (!before) continue;
      const [small, large] = keys.size <= before.size ? [keys, before] : [before, keys];
      for (const key of small.keys()) if (large.has(key)) return false;
    }
    return true;
  }

  #count(page: Page): void {
    const n = page.changes.length;
    this.#windowEvents += n;
    if (n === 0) return;
    this.stats.appliedEvents += n;
    this.stats.pages++;
    this.stats.lastAppliedAt = new Date();
  }

  /** Waits `ms` before the next try; after a target that could not be reached, only until it answers (backOffAfter). */
  async #backOff(ms: number, err: unknown): Promise<void> {
    const saved = await backOffAfter(err, ms, this.#sink, (slice) => this.#sleep(slice), () => this.#stopping);
    if (saved > 0) this.#log.info({ skippedMs: saved }, 'the target answers again; retrying now');
  }

  #sleep(ms = this.#opts.pollIntervalMs): Promise<void> {
    if (this.#wakeRequested) {
      this.#wakeRequested = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = null;
        this.#wakeRequested = false;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
      if (this.#stopping) done();
    });
  }

  /**
   * A full row image carries exactly the table's current columns; any other set means the table
   * changed (a column added, dropped or renamed) and is described again. Sources that know a row's
   * names without parsing it share one array between rows with the same names, so each distinct
   * array is compared once.
   */
  #columnsDiffer(e: KnownTable, upserts: Change[]): boolean {
    return upserts.some((c) => {
      if (c.partial) return false;
      if (c.columns !== undefined && (c.columns === e.last || e.seen.has(c.columns))) {
        e.last = c.columns;
        return false;
      }
      const keys = c.columns ?? (c.row === null ? null : Object.keys(c.row));
      if (keys === null) return false;
      const differs = keys.length !== e.columns.size || keys.some((k) => !e.columns.has(k));
      if (!differs && c.columns !== undefined) {
        e.seen.add(c.columns);
        e.last = c.columns;
      }
      return differs;
    });
  }

  async #tableFor(tableId: number, upserts: Change[]): Promise<TableInfo> {
    let entry = this.#tables.get(tableId);
    if (!entry || this.#columnsDiffer(entry, upserts)) {
      const info = await this.#source.catalog.describe(tableId);
      entry = { info, columns: new Set(info.columns.map((c) => c.name)), seen: new WeakSet(), last: null };
      // Before the target gets new columns: a copy the source schedules for them then survives a
      // crash between the two (column-watch.ts).
      await this.#source.columnsChanged?.(tableId);
      await this.#sink.prepare(info);
      this.#tables.set(tableId, entry);
    }
    return entry.info;
  }

  /**
   * The page's batches, worked out ahead while the page before it is applied: coalesced, and the
   * sink's share (parameter rows) built. Only when every table of the page is known with the
   * columns its rows carry: describing a table, and the DDL that may follow, happen in page order
   * in #apply. Nothing here writes anywhere; #apply checks that the tables are still the ones
   * staged for and works the page out again otherwise.
   */
  #stage(page: Page): StagedPage | null {
    if (page.changes.length === 0 || page.rekeyed || page.unkeyed) return null;
    const batches: SinkTableBatch[] = [];
    const tables: Array<[number, TableInfo]> = [];
    const keys = new Map<number, ReadonlyMap<string, Change>>();
    let plain = true;
    let changesByTable: Map<number, Change[]> | null = null;
    for (const b of coalesce(page.changes)) {
      const entry = this.#tables.get(b.tableId);
      if (!entry || this.#columnsDiffer(entry, b.upserts)) return null;
      tables.push([b.tableId, entry.info]);
      keys.set(b.tableId, b.keys);
      if (plain && (b.truncate || entry.info.shape?.history || b.upserts.some((c) => c.partial))) plain = false;
      changesByTable = this.#addBatch(batches, entry.info, b, page, changesByTable);
    }
    this.#sink.stage?.(batches);
    return { batches, tables, keys, plain };
  }

  /** #stage, or null when it failed: #apply then works the page out in order and meets the error there. */
  #tryStage(page: Page): StagedPage | null {
    try {
      return this.#stage(page);
    } catch (err) {
      this.#log.debug({ err }, 'could not stage the next page ahead; it is worked out when applied');
      return null;
    }
  }

  /** Appends the sink's batch of one table's coalesced changes; returns the page's changes by table when it needed them. */
  #addBatch(batches: SinkTableBatch[], table: TableInfo, b: TableBatch, page: Page, byTable: Map<number, Change[]> | null): Map<number, Change[]> | null {
    const batch: SinkTableBatch = { table, truncate: b.truncate, deletes: b.deletes, upserts: b.upserts };
    if (b.truncatedAt !== undefined) batch.truncatedAt = b.truncatedAt;
    if (table.shape?.history) {
      // A history keeps every change, so it gets the page's changes before coalescing.
      byTable ??= groupByTable(page.changes);
      batch.history = byTable.get(b.tableId) ?? [];
    }
    batches.push(batch);
    return byTable;
  }

  async #apply(page: Page, staged: StagedPage | null): Promise<void> {
    let batches: SinkTableBatch[] = [];
    const letters: DeadLetter[] = [];
    if (page.unkeyed) {
      // Rows without their key values match no row of the target: applied, a delete would do nothing.
      for (const change of page.changes) if (change.unkeyed !== undefined) letters.push({ change, code: undefined, message: change.unkeyed, attempts: 1 });
      page = { ...page, changes: page.changes.filter((c) => c.unkeyed === undefined) };
    }
    const unkeyed = letters.length;
    // #begin checked that the staged batches were made for the tables as they are.
    if (staged) {
      batches = staged.batches;
    } else {
      let changesByTable: Map<number, Change[]> | null = null;
      for (const b of coalesce(page.changes)) {
        let table: TableInfo;
        try {
          table = await this.#tableFor(b.tableId, b.upserts);
        } catch (err) {
          if (classify(err) !== 'fatal') throw err;
          // The table cannot be described (dropped, unregistered, its key gone) or its target does not
          // fit (another key): its changes cannot be applied, its truncates neither.
          const truncates = b.truncate ? page.changes.filter((c) => c.tableId === b.tableId && c.op === 'T') : [];
          for (const change of [...truncates, ...b.deletes, ...b.upserts]) letters.push({ change, code: undefined, message: describe(err), attempts: 1 });
          continue;
        }
        changesByTable = this.#addBatch(batches, table, b, page, changesByTable);
      }
    }
    let rejected = (await this.#applyPage(batches)).rejected;
    for (let attempt = 2; rejected.length > 0 && attempt <= this.#opts.rejectAttempts; attempt++) {
      this.#log.warn({ rows: rejected.length, attempt }, 'target rejected rows; retrying them');
      await new Promise((r) => setTimeout(r, backoffDelay(attempt - 2, 100, 2000)));
      const byTable = new Map<number, SinkTableBatch>();
      for (const r of rejected) {
        const table = this.#tables.get(r.change.tableId)!.info;
        let b = byTable.get(table.id);
        if (!b) byTable.set(table.id, (b = { table, truncate: false, deletes: [], upserts: [] }));
        if (r.history) (b.history ??= []).push(r.change);
        else (r.change.op === 'D' ? b.deletes : b.upserts).push(r.change);
      }
      rejected = (await this.#applyPage([...byTable.values()])).rejected;
    }
    for (const r of rejected) letters.push({ change: r.change, code: r.code, message: r.message, attempts: this.#opts.rejectAttempts });
    if (letters.length > 0) {
      const sample = letters[0];
      const tableId = sample.change.tableId;
      if (this.#opts.deadLetterPolicy === 'halt') {
        // The target's message can quote the value; it stays out of logs and errors (it is kept
        // with parked letters, which the halt policy does not write).
        throw new HaltError(
          `the target rejected ${letters.length} change(s) (first: event ${sample.change.id} of table id ${tableId}, target error code ${sample.code ?? 'unknown'}); ` +
            'halting as PG2CRATE_DEAD_LETTERS=halt says. Fix the target or the value, or set PG2CRATE_DEAD_LETTERS=park',
        );
      }
      await this.#source.park(letters);
      this.stats.deadLetters += letters.length;
      this.#log.error({ rows: letters.length, tableId, eventId: sample.change.id, code: sample.code }, 'parked rejected changes as dead letters (see `pg2crate dead-letters list`)');
    }
    this.stats.appliedRows += batches.reduce((n, b) => n + b.deletes.length + b.upserts.length, 0) - (letters.length - unkeyed);
  }
}

function groupByTable(changes: readonly Change[]): Map<number, Change[]> {
  const out = new Map<number, Change[]>();
  for (const c of changes) {
    let list = out.get(c.tableId);
    if (!list) out.set(c.tableId, (list = []));
    list.push(c);
  }
  return out;
}
