// Every connection pool of the process. A connection that breaks while it is checked out, between
// two queries, emits 'error' on its client; pg-pool listens only while a client is idle in the
// pool, and an 'error' event nobody listens to ends the Node process. So every client gets a
// listener for its whole life: the error is logged, and the next query on that client fails with
// it, which the caller's retry handles like any lost connection.
import pg from 'pg';
import type { Logger } from './logger.js';

export function createPool(config: pg.PoolConfig, log: Logger | undefined, what: string): pg.Pool {
  const pool = new pg.Pool(config);
  pool.on('error', (err) => log?.warn({ err }, `idle ${what} connection failed`));
  pool.on('connect', (client) => {
    client.on('error', (err) => log?.warn({ err }, `${what} connection failed`));
  });
  return pool;
}
