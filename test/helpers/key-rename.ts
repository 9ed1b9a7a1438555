// Helpers for the key-rename tests: a table's key and value rows, its column names, its dead
// letters, a window in which the key watch cannot act on a table, and a table streamed in pgoutput mode.
import assert from 'node:assert/strict';
import type pg from 'pg';
import { deadLetters } from '../../src/commands/dead-letters.js';
import { switchCapture } from '../../src/commands/switch-capture.js';
import { Runner } from '../../src/runner.js';
import type { FileCluster, SettledDatabases } from './file-cluster.js';
import { makeConfig, settle, startReplicator, testLogger, waitFor, type Running } from './replication.js';

/** [key, v] of every row, by key; `key` names the key column as the table has it now. */
export const rows = async (db: pg.Pool, table: string, key: string) =>
  (await db.query(`select ${key} as k, v from ${table} order by 1`)).rows.map((r) => [r.k, r.v]);

export const columns = async (db: pg.Pool, table: string) =>
  (await db.query(`select column_name from information_schema.columns where table_schema = 'public' and table_name = $1 order by ordinal_position`, [table])).rows.map((r) => r.column_name);

export const lettersOf = async (runner: Runner, table: string) => (await deadLetters(runner)).filter((l) => l.table === table);

/** Runs `fn` with the registry row of `table` held: the watch cannot act before the application has met the window. */
export async function keyWatchHeld(src: pg.Pool, table: string, fn: () => Promise<void>): Promise<void> {
  const hold = await src.connect();
  try {
    await hold.query('begin');
    await hold.query(`select 1 from pg2crate.tables where source_table = $1 for update`, [table]);
    await fn();
  } finally {
    await hold.query('rollback');
    hold.release();
  }
}

export interface StreamingPgoutput extends SettledDatabases {
  rep: Running;
}

/**
 * Fresh databases with `ddl` run and its table captured and loaded, the stream switched to pgoutput
 * and a replicator streaming it: its last row (by `id`) changed to 'streaming' has reached the
 * target. Streaming first: a replicator that starts after a key rename, before the watch's pass,
 * refuses the table's replica identity (loudly), which is not what these tests are about.
 */
export async function streamingPgoutput(bed: FileCluster, ddl: string, table: string, slot: string): Promise<StreamingPgoutput> {
  const dbs = await bed.settled(ddl, { PG2CRATE_TABLES: `public.${table}`, PG2CRATE_SLOT: slot, PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_PARTITION_WATCH_MS: '300' });
  const r = new Runner(makeConfig(dbs.env), testLogger());
  try {
    assert.equal(await switchCapture(r, 'pgoutput'), 'switched');
  } finally {
    await r.close();
  }
  const rep = await startReplicator(makeConfig({ ...dbs.env, PG2CRATE_CAPTURE: 'pgoutput' }));
  await dbs.src.query(`update ${table} set v = 'streaming' where id = (select max(id) from ${table})`);
  await waitFor('the replicator to stream', async () => (await rows(dbs.dst, table, 'id')).at(-1)?.[1] === 'streaming');
  return { ...dbs, rep };
}

export interface SwitchedPgoutput {
  src: pg.Pool;
  dst: pg.Pool;
  /** starts a replicator in pgoutput mode with the same environment and configuration file */
  start(): Promise<Running>;
}

/**
 * Fresh databases with `ddl` run and the tables of `file` captured and loaded (trigger mode), then
 * the stream switched to pgoutput, no replicator running.
 */
export async function switchedPgoutput(bed: FileCluster, ddl: string, slot: string, file: Record<string, unknown>): Promise<SwitchedPgoutput> {
  const { srcUrl, dstUrl, src, dst } = await bed.databases();
  await src.query(ddl);
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_SLOT: slot, PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_PARTITION_WATCH_MS: '300' };
  await settle(makeConfig(env, file), src);
  const r = new Runner(makeConfig(env, file), testLogger());
  try {
    assert.equal(await switchCapture(r, 'pgoutput'), 'switched');
  } finally {
    await r.close();
  }
  return { src, dst, start: () => startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' }, file)) };
}
