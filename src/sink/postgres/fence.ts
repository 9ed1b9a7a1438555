// The fence of a Postgres target (sink.ts: Fence): one row per stream, in a table under the tool's
// schema name in the target, holding the newest holder's token. A fenced write reads that row FOR
// SHARE first thing in its own transaction and goes on only if the token is its own; raising the
// fence updates the row, so it waits for every fenced write under way and every fenced write after
// it sees the new token. A chunk of an older holder therefore lands before the newer holder raised
// the fence (and so before anything that holder writes), or not at all.
import type pg from 'pg';
import { FencedError } from '../../core/errors.js';
import { qualify, quoteIdent } from '../../core/identifiers.js';
import type { Fence } from '../sink.js';

const RAISE_LOCK_TIMEOUT_MS = 10_000;

function fenceTable(f: Fence): string {
  return qualify(f.schema, 'load_fence');
}

/** Makes `f.token` the stream's newest token; FencedError when a newer one was raised already. */
export async function raiseFence(db: pg.Pool, f: Fence): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await db.query(`create schema if not exists ${quoteIdent(f.schema)}`);
      await db.query(`create table if not exists ${fenceTable(f)} (stream text primary key, token bigint not null)`);
      break;
    } catch (err) {
      // Two holders creating it at once: the loser sees a duplicate in the catalog; it exists now.
      const code = (err as { code?: string }).code;
      if (attempt >= 2 || (code !== '23505' && code !== '42P06' && code !== '42P07')) throw err;
    }
  }
  // Waits for the fenced writes under way; an older holder that keeps one open (a frozen process)
  // makes this fail after a while rather than hang: the caller tries again later.
  const client = await db.connect();
  let res: pg.QueryResult<{ token: string }>;
  try {
    await client.query(`begin; set local lock_timeout = ${RAISE_LOCK_TIMEOUT_MS}`);
    res = await client.query<{ token: string }>(
      `insert into ${fenceTable(f)} as f (stream, token) values ($1, $2::int8)
       on conflict (stream) do update set token = greatest(f.token, excluded.token) returning token::text as token`,
      [f.stream, f.token],
    );
    await client.query('commit');
  } catch (err) {
    await client.query('rollback').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
  if (res.rows[0].token !== f.token) throw new FencedError(`stream ${f.stream} was taken over by a newer holder (token ${res.rows[0].token}, this one ${f.token})`);
}

/** First in the transaction of a fenced write: holds the fence until it commits. */
export async function checkFence(client: pg.ClientBase, f: Fence): Promise<void> {
  const res = await client.query<{ token: string }>(`select token::text as token from ${fenceTable(f)} where stream = $1 for share`, [f.stream]);
  const token = res.rows[0]?.token;
  if (token !== f.token) throw new FencedError(`a write of stream ${f.stream} with token ${f.token} was refused: the newest holder has ${token ?? 'none'}`);
}
