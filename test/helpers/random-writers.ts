// Writers for the concurrency tests: connections that commit random transactions against the
// source until time is up — single statements and multi-statement transactions, some held open
// while others commit, some rolled back. The test supplies the statements (its scenario); the
// seeds make a failing run repeatable.
import pg from 'pg';
import { Rng } from '../soak/random.js';

/** A seeded generator in [0, 1) (the soak's mulberry32), so that a failing run can be repeated with its seed. */
export function rng(seed: number): () => number {
  const g = new Rng(seed);
  return () => g.next();
}

export interface WriteTally {
  commits: number;
  rollbacks: number;
  /** transactions lost to a key conflict or a deadlock between the writers */
  conflicts: number;
  /** counted by the test's statement generator */
  keyChanges: number;
  statements: number;
}

/** One random statement and its parameters; counts key changes in `tally`. */
export type RandomStatement = (r: () => number, tally: WriteTally) => [string, unknown[]];

export interface RandomWriters {
  url: string;
  /** one connection per seed */
  seeds: number[];
  durationMs: number;
  statement: RandomStatement;
  /** a multi-statement transaction has 2 to this many statements (default 5) */
  maxStatements?: number;
  /** the longest pause, holding a transaction open, after one of its statements (default 150 ms) */
  maxPauseMs?: number;
}

/**
 * Runs the writers until `durationMs` is over and returns what they did. Key collisions and
 * deadlocks between the writers are part of the game; any other error fails the call.
 */
export async function writeAtRandom(opts: RandomWriters): Promise<WriteTally> {
  const tally: WriteTally = { commits: 0, rollbacks: 0, conflicts: 0, keyChanges: 0, statements: 0 };
  const until = Date.now() + opts.durationMs;
  await Promise.all(opts.seeds.map((seed) => writer(opts, seed, until, tally)));
  return tally;
}

async function writer(opts: RandomWriters, seed: number, until: number, tally: WriteTally): Promise<void> {
  const { maxStatements = 5, maxPauseMs = 150 } = opts;
  const r = rng(seed);
  const c = new pg.Client({ connectionString: opts.url, application_name: `writer ${seed}` });
  await c.connect();
  try {
    while (Date.now() < until) {
      const multi = r() < 0.4;
      const n = multi ? 2 + Math.floor(r() * (maxStatements - 1)) : 1;
      const rollback = multi && r() < 0.15;
      try {
        if (multi) await c.query('begin');
        for (let i = 0; i < n; i++) {
          const [sql, params] = opts.statement(r, tally);
          await c.query(sql, params);
          tally.statements++;
          // Some transactions stay open while others take later ids and commit.
          if (multi && r() < 0.1) await new Promise((res) => setTimeout(res, Math.floor(r() * maxPauseMs)));
        }
        if (multi) await c.query(rollback ? 'rollback' : 'commit');
        if (rollback) tally.rollbacks++;
        else tally.commits++;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code !== '23505' && code !== '40P01') throw err;
        tally.conflicts++;
        if (multi) await c.query('rollback');
      }
    }
  } finally {
    await c.end();
  }
}
