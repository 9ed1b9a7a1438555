// Every Postgres statement of verify runs in a short transaction with the same output settings as
// the capture trigger (triggers.ts), on both the source and a Postgres target: the text of a
// timestamptz, float or bytea must not depend on the server's or the role's defaults, or equal rows
// would hash differently. SET LOCAL (not a session SET) keeps pooled connections clean and works
// behind transaction-pooling proxies.
import type pg from 'pg';

export const OUTPUT_SETTINGS =
  "set local timezone = 'UTC'; set local extra_float_digits = 1; set local datestyle = 'ISO, YMD'; " +
  "set local intervalstyle = 'postgres'; set local bytea_output = 'hex'";

/** Runs `fn` in a transaction with the output settings; read-only unless `write` is set. */
export async function withOutputSettings<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>, write = false): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query(`begin${write ? '' : ' read only'}; ${OUTPUT_SETTINGS}`);
    const out = await fn(client);
    await client.query('commit');
    return out;
  } catch (err) {
    broken = await client.query('rollback').then(() => false, () => true);
    throw err;
  } finally {
    client.release(broken);
  }
}

export async function querySettled<R extends pg.QueryResultRow>(pool: pg.Pool, sql: string, params: unknown[] = []): Promise<R[]> {
  return withOutputSettings(pool, async (c) => (await c.query<R>(sql, params)).rows);
}
