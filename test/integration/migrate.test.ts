// The tool's own schema: migrating again, or twice at once, is harmless; a schema from a newer build
// and an unmigrated database are refused with messages that say what to do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { runCli } from '../helpers/child-replicator.js';
import { assertSameRows, makeConfig, settle, testLogger } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';
import { SchemaVersionError } from '../../src/core/errors.js';
import { bundledMigrationNames, migrate as migrateSchema } from '../../src/capture/migrate.js';
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

test('upgrading to the json outbox: events written as jsonb before it, by a capture function made before it, and after it all arrive', async () => {
  const { srcUrl, dstUrl, src } = await database();
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl };
  await migrate(runner(env));
  // the table's initial load done first, so that only the stream can bring what follows
  await settle(makeConfig({ PG2CRATE_TABLES: 'public.orders', ...env }), src);
  // The database as a build before 000012_outbox_json left it: a jsonb outbox, and a capture
  // function that writes to_jsonb images and jsonb_build_object keys.
  const fn = (await src.query<{ def: string }>(`select pg_get_functiondef('pg2crate.capture_1'::regproc) as def`)).rows[0].def;
  assert.match(fn, /pg_catalog\.to_json\(n\.\*\)/);
  await src.query(`alter table pg2crate.outbox alter column data type jsonb using data::jsonb`);
  await src.query(`delete from pg2crate.migrations where name = '000012_outbox_json'`);
  await src.query(fn.replaceAll('pg_catalog.to_json(', 'pg_catalog.to_jsonb(').replaceAll('pg_catalog.json_build_object(', 'pg_catalog.jsonb_build_object('));
  await src.query(`insert into orders select g, g * 1.5 from generate_series(1, 50) g`);
  await src.query(`update orders set id = id + 1000 where id <= 10`); // key changes: deletes by key
  await src.query(`delete from orders where id between 20 and 25`);
  // the schema migrated, the old function still in place: it writes jsonb into the json column
  const r = runner(env);
  assert.deepEqual(await migrateSchema(r.pool, 'pg2crate'), ['000012_outbox_json']);
  assert.equal((await src.query(`select format_type(atttypid, atttypmod) as t from pg_attribute where attrelid = 'pg2crate.outbox'::regclass and attname = 'data'`)).rows[0].t, 'json');
  await src.query(`update orders set total = total + 1 where id > 40`);
  await src.query(`insert into orders values (500, 1)`);
  // migrate makes the configured table's function again: json from here on
  await migrate(r);
  assert.match((await src.query<{ def: string }>(`select pg_get_functiondef('pg2crate.capture_1'::regproc) as def`)).rows[0].def, /pg_catalog\.to_json\(n\.\*\)/);
  await src.query(`update orders set id = id + 2000 where id between 30 and 35`);
  await src.query(`delete from orders where id = 500`);
  await src.query(`insert into orders values (501, 2)`);
  const dst = bed.pool(dstUrl);
  await settle(makeConfig({ PG2CRATE_TABLES: 'public.orders', ...env }), src);
  assert.equal(await assertSameRows(src, dst, 'public.orders', 'public.orders', ['id']), 45);
  assert.equal((await src.query(`select count(*)::int as n from pg2crate.dead_letters`)).rows[0].n, 0);
  assert.equal((await src.query(`select count(*)::int as n from pg2crate.backfills`)).rows[0].n, 1, 'one initial load, before the events: the stream brought them');
});
