// Helpers for end-to-end tests: configuration, an in-process replicator, waiting for a condition,
// comparing source and target row by row, and a guard against leaked sockets and processes.
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync } from 'node:fs';
import pg from 'pg';
import { loadConfig, type Config } from '../../src/core/config.js';
import { createLogger, type Logger } from '../../src/core/logger.js';
import { Runner, type RunnerOptions } from '../../src/runner.js';
import { qualify } from '../../src/core/identifiers.js';
import { migrate } from '../../src/commands/migrate.js';

export const LOG_DIR = '.tmp/test-logs';

/** Every log line of every in-process replicator, also appended to .tmp/test-logs (scanned for secrets). */
export const logLines: string[] = [];

export function testLogger(level = process.env.TEST_LOG_LEVEL ?? 'warn'): Logger {
  mkdirSync(LOG_DIR, { recursive: true });
  const file = `${LOG_DIR}/${process.pid}.log`;
  return createLogger(level, {
    write(line: string) {
      logLines.push(line);
      appendFileSync(file, line);
      if (process.env.TEST_LOG_ECHO) process.stderr.write(line);
    },
  });
}

export function makeConfig(env: Record<string, string | undefined>, file: Record<string, unknown> = {}): Config {
  return loadConfig({ PG2CRATE_POLL_INTERVAL_MS: '200', PG2CRATE_STANDBY_RETRY_MS: '200', ...env }, file);
}

export interface Running {
  runner: Runner;
  /** settles when the replicator's loop ends */
  done: Promise<void>;
  stop(): Promise<void>;
}

/** Migrates (capturing configured tables) and starts a replicator in this process. */
export async function startReplicator(config: Config, logger = testLogger(), opts: RunnerOptions = {}): Promise<Running> {
  const runner = new Runner(config, logger, opts);
  await migrate(runner);
  const done = runner.run();
  // A replicator that stops on its own is reported here, or a test would only see a timeout.
  done.catch((err: unknown) => process.stderr.write(`replicator stopped: ${(err as Error)?.stack ?? String(err)}\n`));
  return {
    runner,
    done,
    async stop() {
      await runner.close();
      await done.catch(() => {});
    },
  };
}

export async function waitFor<T>(what: string, fn: () => Promise<T | false | null | undefined> | T | false | null | undefined, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${String(lastErr)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** True once every event in the outbox lies in a completed window (is visible in prev_snapshot). */
export async function caughtUp(source: pg.Pool | pg.Client, schema = 'pg2crate', stream = 'main'): Promise<boolean> {
  const res = await source.query<{ ok: boolean }>(
    `select not exists (
       select 1 from ${qualify(schema, 'outbox')} o, ${qualify(schema, 'checkpoint')} c
        where c.stream = $1 and (c.prev_snapshot is null or not pg_visible_in_snapshot(o.xid, c.prev_snapshot))
     ) and exists (select 1 from ${qualify(schema, 'checkpoint')} where stream = $1) as ok`,
    [stream],
  );
  return res.rows[0].ok;
}

/**
 * Waits until the initial loads are done and every change is applied. Loads first: until a direct
 * load has sent its fix-up, the target may hold a chunk older than changes already applied (or,
 * after a truncate it has to redo, nothing), while the outbox alone looks applied.
 */
export async function waitCaughtUp(source: pg.Pool, schema = 'pg2crate', timeoutMs = 60_000): Promise<void> {
  await waitFor('the replicator to finish its initial loads and catch up', async () => (await initialLoadsDone(source, schema)) && caughtUp(source, schema), timeoutMs);
}

/** True once no captured table waits for or is in its initial load. */
export async function initialLoadsDone(source: pg.Pool | pg.Client, schema = 'pg2crate'): Promise<boolean> {
  const res = await source.query<{ ok: boolean }>(`select not exists (select 1 from ${qualify(schema, 'backfills')} where status <> 'done') as ok`);
  return res.rows[0].ok;
}

/**
 * Migrates, runs a replicator until the initial loads of the configured tables are done and
 * everything is applied, and stops it: afterwards the stream holds only what the test writes.
 */
export async function settle(config: Config, source: pg.Pool, logger = testLogger()): Promise<void> {
  const r = await startReplicator(config, logger);
  try {
    await waitFor('the initial loads', () => initialLoadsDone(source, config.schema));
    await waitCaughtUp(source, config.schema);
  } finally {
    await r.stop();
  }
}

/** Rows of a table as canonical JSON text, ordered by key; `columns` limits what is compared. */
export async function tableRows(db: pg.Pool | pg.Client, table: string, keyColumns: string[], columns?: string[]): Promise<string[]> {
  const sel = columns ? `jsonb_build_object(${columns.map((c) => `'${c.replace(/'/g, "''")}', t."${c.replace(/"/g, '""')}"`).join(', ')})` : 'to_jsonb(t.*)'; // t.*: a bare t would mean a column named t
  const order = keyColumns.map((k) => `t."${k.replace(/"/g, '""')}"`).join(', ');
  const res = await db.query<{ r: string }>(`select ${sel}::text as r from ${table} t order by ${order}`);
  return res.rows.map((r) => r.r);
}

/** Asserts that two tables hold the same rows with the same values, comparing row by row. */
export async function assertSameRows(src: pg.Pool, dst: pg.Pool, srcTable: string, dstTable: string, keyColumns: string[], columns?: string[]): Promise<number> {
  const [a, b] = await Promise.all([tableRows(src, srcTable, keyColumns, columns), tableRows(dst, dstTable, keyColumns, columns)]);
  if (a.length !== b.length || a.some((r, i) => r !== b[i])) {
    const firstDiff = a.findIndex((r, i) => r !== b[i]);
    assert.fail(
      `${srcTable} and ${dstTable} differ: ${a.length} vs ${b.length} rows; first difference at row ${firstDiff}:\n  source ${a[firstDiff] ?? '(none)'}\n  target ${b[firstDiff] ?? '(none)'}`,
    );
  }
  return a.length;
}

export function pool(url: string, max = 4): pg.Pool {
  // UTC so that timestamptz renders identically on both sides of a comparison.
  const p = new pg.Pool({ connectionString: url, max, options: '-c timezone=UTC' });
  // A server restarted under a test (the soak's faults) drops connections: one checked out at that
  // moment emits 'error' with nobody listening, which would end the process. The next query on it
  // fails and says so instead.
  p.on('error', () => {});
  p.on('connect', (c) => c.on('error', () => {}));
  return p;
}

/** Fails when sockets or child processes are still open (a test leaked a pool, listener or process). */
export async function assertNoLeaks(): Promise<void> {
  await new Promise((r) => setTimeout(r, 100));
  const open = process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'ProcessWrap' || r === 'TCPServerWrap');
  assert.deepEqual(open, [], `leaked resources after the tests: ${open.join(', ')}`);
}
