// The writers: 4–8 connections changing the captured tables at random until told to stop.
//
// A writer does not track what it wrote. A transaction that failed (a deadlock, a key collision, a
// lock timeout, the source going away under it) is simply not committed and so not expected in the
// target; the final comparison is against the source's actual state. Transaction kinds and their
// statements live in transactions.ts; this file is the loop, the error handling and the pacing.
import pg from 'pg';
import { pause, type Rng } from './random.js';
import type { Tally } from './tally.js';
import { KINDS, type KindName, type TxContext } from './transactions.js';

/** What every writer shares: where to write, when to stop, and the switches other parts flip. */
export interface Workload {
  srcUrl: string;
  tally: Tally;
  /** aborts when the writers must stop */
  signal: AbortSignal;
  /** the poison phase: some rows get a value the target refuses (dead letters); SQL of that value */
  poison: string | null;
  /** MERGE exists (PostgreSQL 15+) */
  merge: boolean;
  /** --partitions: the partitions that exist (regions) */
  regions: number[] | null;
  /** transactions held open for seconds, now */
  longOpen: number;
  /** next time a TRUNCATE or an ALTER TABLE may run (they take exclusive locks: rarely) */
  nextExclusiveAt: number;
  /** names of added columns are never reused, so a target column never changes its type */
  nextColumn: number;
  /** a line on the timeline (the rare exclusive statements are worth one) */
  note(line: string): void;
}

const CONFLICTS = new Set(['40P01', '40001', '23505', '55P03', '57014']);
const CONNECTION_CODES = new Set(['57P01', '57P02', '57P03', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTCONN']);

export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (e?.code && (e.code.startsWith('08') || CONNECTION_CODES.has(e.code))) return true;
  return /Connection terminated|not queryable|terminating connection|the database system is|Client was closed|Connection closed|read ECONNRESET|connect ECONNREFUSED/i.test(
    String(e?.message ?? ''),
  );
}

function pickKind(r: Rng, w: Workload): KindName {
  const exclusiveDue = Date.now() >= w.nextExclusiveAt;
  return r.weighted<KindName>([
    [28, 'single'],
    [18, 'multi'],
    [7, 'savepoint'],
    [5, 'insert-delete'],
    [6, 'key-change'],
    [w.merge ? 5 : 0, 'merge'],
    [8, 'multi-row'],
    [10, 'big'],
    [12, 'seq'],
    [0.6, 'seq-burst'],
    [w.longOpen < 2 ? 1.5 : 0, 'long'],
    [exclusiveDue ? 3 : 0, 'truncate'],
    [exclusiveDue ? 4 : 0, 'ddl'],
    [w.poison ? 3 : 0, 'poison'],
    [w.regions ? 10 : 0, 'parted'],
  ]);
}

/** Runs one writer until the workload's signal aborts. */
export async function runWriter(id: number, r: Rng, w: Workload): Promise<void> {
  let client: pg.Client | null = null;
  let backoff = 100;
  try {
    while (!w.signal.aborted) {
      if (!client) {
        client = await connect(w.srcUrl, id).catch(() => null);
        if (!client) {
          await pause(backoff, w.signal);
          backoff = Math.min(backoff * 2, 2000);
          continue;
        }
        backoff = 100;
      }
      const kind = pickKind(r, w);
      const ctx = new Tx(client, r, w, id);
      try {
        const committed = await KINDS[kind](ctx);
        if (committed) w.tally.count(w.tally.byKind, kind);
      } catch (err) {
        if (ctx.inTransaction) await client.query('rollback').catch(() => {});
        if (isConnectionError(err)) {
          w.tally.connectionErrors++;
          await client.end().catch(() => {});
          client = null;
        } else if (CONFLICTS.has((err as { code?: string }).code ?? '')) {
          w.tally.conflicts++;
          if (kind === 'ddl' || kind === 'truncate') {
            // a lock timeout behind a long transaction: its turn comes again soon
            w.tally.count(w.tally.byKind, `${kind} gave up`);
            w.nextExclusiveAt = Date.now() + 2000;
          }
        } else {
          w.tally.unexpectedError(`writer ${id} ${kind}`, err);
        }
      }
      // Pacing: the machine has 2 cores, shared with the replicators and both databases.
      await pause(r.int(2, 20), w.signal);
    }
  } finally {
    await client?.end().catch(() => {});
  }
}

async function connect(url: string, id: number): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url, application_name: `soak writer ${id}` });
  // An idle connection the server drops must not crash the soak; the next query fails and says so.
  c.on('error', () => {});
  await c.connect();
  // A writer that waits behind a transaction held open for seconds gives up and moves on.
  await c.query(`set lock_timeout = '3s'`);
  return c;
}

/** One transaction's context for the kinds in transactions.ts. */
class Tx implements TxContext {
  inTransaction = false;
  readonly #c: pg.Client;
  readonly r: Rng;
  readonly w: Workload;
  readonly writer: number;

  constructor(c: pg.Client, r: Rng, w: Workload, writer: number) {
    this.#c = c;
    this.r = r;
    this.w = w;
    this.writer = writer;
  }

  async q<T extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<T>> {
    return this.#c.query<T>(sql, params);
  }

  async begin(): Promise<void> {
    await this.#c.query('begin');
    this.inTransaction = true;
  }

  async commit(): Promise<void> {
    this.inTransaction = false;
    await this.#c.query('commit');
    this.w.tally.committed++;
  }

  async rollback(): Promise<void> {
    this.inTransaction = false;
    await this.#c.query('rollback');
    this.w.tally.rolledBack++;
  }

  /** an autocommit statement that changed something counts as a committed transaction */
  autocommitted(): void {
    this.w.tally.committed++;
  }
}
