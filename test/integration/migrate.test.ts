// The tool's own schema: migrating again, or twice at once, is harmless; a schema from a newer build
// and an unmigrated database are refused with messages that say what to do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { runCli } from '../helpers/child-replicator.js';
import { makeConfig, testLogger } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';
import { SchemaVersionError } from '../../src/core/errors.js';
import { bundledMigrationNames } from '../../src/capture/migrate.js';
import { migrate } from '../../src/commands/migrate.js';

const bed = clusterForFile();
const runners: Runner[] = [];
bed.onClose(() => Promise.all(runners.map((r) => r.close())));

async function database(): Promise<{ srcUrl: string; dstUrl: string; src: pg.Pool }> {
  const [srcUrl, dstUrl] = await Promise.all([bed.cluster.createDatabase('src'), bed.cluster.createDatabase('dst')]);
  const src = bed.pool(srcUrl);
  await src.query(`create table public.orders (id integer primary key, total numeric(12,2))`);
  return { srcUrl, dstUrl, src };
}

function runner(env: Record<string, string>): Runner {
  const r = new Runner(makeConfig({ PG2CRATE_TABLES: 'public.orders', ...env }), testLogger());
  runners.push(r);
  return r;
}

/** The schema is complete and capture is installed exactly once: one insert gives one event. */
async function assertMigratedOnce(src: pg.Pool): Promise<void> {
  const names = (await src.query<{ name: string }>(`select name from pg2crate.migrations order by name`)).rows.map((r) => r.name);
  assert.deepEqual(names, await bundledMigrationNames());
  const triggers = await src.query(`select tgname from pg_trigger where tgrelid = 'public.orders'::regclass and not tgisinternal`);
  assert.equal(triggers.rows.length, 4, `four capture triggers, got ${triggers.rows.map((r) => r.tgname).join(', ')}`);
  assert.equal((await src.query(`select count(*)::int as n from pg2crate.tables`)).rows[0].n, 1);
  const before = (await src.query(`select count(*)::int as n from pg2crate.outbox`)).rows[0].n;
  await src.query(`insert into orders values ((select coalesce(max(id), 0) + 1 from orders), 9.99)`);
  const after = (await src.query(`select count(*)::int as n from pg2crate.outbox`)).rows[0].n;
  assert.equal(after - before, 1, 'one insert must write exactly one event');
}

test('running migrate twice is harmless', async () => {
  const { srcUrl, dstUrl, src } = await database();
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl };
  const first = await migrate(runner(env));
  assert.deepEqual(first.ran, await bundledMigrationNames());
  const second = await migrate(runner(env));
  assert.deepEqual(second.ran, [], 'the second run has nothing left to do');
  assert.equal(second.tables.length, 1);
  await assertMigratedOnce(src);

  const cli = await runCli(env, ['migrate']);
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(cli.stdout, /already current/);
  await assertMigratedOnce(src);
});

test('running migrate twice at once is harmless', async () => {
  const { srcUrl, dstUrl, src } = await database();
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl };
  // Separate runners, so separate pools and sessions.
  const results = await Promise.all([migrate(runner(env)), migrate(runner(env)), migrate(runner(env))]);
  const ran = results.flatMap((r) => r.ran).sort();
  assert.deepEqual(ran, await bundledMigrationNames(), 'each migration ran exactly once among the three');
  await assertMigratedOnce(src);
});

test('a database migrated by a newer build is refused with a clear message', async () => {
  const { srcUrl, dstUrl, src } = await database();
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl };
  await migrate(runner(env));
  await src.query(`insert into pg2crate.migrations (name, timestamp) values ('999999_from_the_future', now()::text)`);

  await assert.rejects(migrate(runner(env)), (err: unknown) => {
    assert.ok(err instanceof SchemaVersionError, String(err));
    assert.match(err.message, /999999_from_the_future/);
    assert.match(err.message, /newer/);
    return true;
  });
  await assert.rejects(runner(env).run(), (err: unknown) => {
    assert.ok(err instanceof SchemaVersionError, String(err));
    assert.match(err.message, /999999_from_the_future/);
    return true;
  });
  for (const args of [['migrate'], ['start']]) {
    const cli = await runCli(env, args);
    assert.notEqual(cli.code, 0, `${args[0]} must fail`);
    const lines = cli.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, `one line on stderr from ${args[0]}, got:\n${cli.stderr}`);
    assert.match(lines[0], /999999_from_the_future.*newer|newer.*999999_from_the_future/);
  }
  // Refused before anything ran: nothing of the future was touched.
  assert.equal((await src.query(`select count(*)::int as n from pg2crate.migrations`)).rows[0].n, (await bundledMigrationNames()).length + 1);
});

test('start on a database that was never migrated says to run `npm run migrate`', async () => {
  const { srcUrl, dstUrl, src } = await database();
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl };
  await assert.rejects(runner(env).run(), (err: unknown) => {
    assert.ok(err instanceof SchemaVersionError, String(err));
    assert.match(err.message, /npm run migrate/);
    return true;
  });
  const cli = await runCli(env, ['start']);
  assert.notEqual(cli.code, 0);
  const lines = cli.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${cli.stderr}`);
  assert.match(lines[0], /not migrated.*npm run migrate/);
  // And it created nothing.
  assert.equal((await src.query(`select count(*)::int as n from pg_namespace where nspname = 'pg2crate'`)).rows[0].n, 0);
});
