// Tables without a primary key: refused with a message that names the table and the fix, unless
// the user names key columns for them (config file or `tables add --key`); then they replicate.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { runCli } from '../helpers/child-replicator.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp } from '../helpers/replication.js';
import { Runner } from '../../src/runner.js';
import { TableError } from '../../src/core/errors.js';
import { migrate } from '../../src/commands/migrate.js';
import { addTables } from '../../src/commands/tables.js';
import { needsServer, onlyBefore } from '../helpers/server-version.js';

const bed = clusterForFile();
let srcUrl: string;
let dstUrl: string;
let src: pg.Pool;
let dst: pg.Pool;

before(async () => {
  ({ srcUrl, dstUrl, src, dst } = await bed.databases());
  await src.query(`
    create table public.readings (sensor text not null, at timestamptz not null, value double precision, unique (sensor, at));
    create table public."Loose Log" (code integer not null, msg text);
    create table public.with_pk (id integer primary key);
  `);
  const runner = new Runner(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl }), testLogger());
  try { await migrate(runner); } finally { await runner.close(); }
});

test('a table without a primary key is refused with a message that names the table and the fix', async () => {
  const runner = new Runner(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl }), testLogger());
  try {
    await assert.rejects(addTables(runner, [{ schema: 'public', table: 'Loose Log' }]), (err: unknown) => {
      assert.ok(err instanceof TableError, `expected a TableError, got ${String(err)}`);
      assert.match(err.message, /public\."Loose Log"/, 'the message names the table');
      assert.match(err.message, /no primary key/);
      assert.match(err.message, /ADD PRIMARY KEY/, 'the message gives the first fix');
      assert.match(err.message, /keyColumns/, 'the message gives the second fix');
      return true;
    });
  } finally {
    await runner.close();
  }
  // Nothing was half-installed.
  const triggers = await src.query(`select tgname from pg_trigger where tgrelid = 'public."Loose Log"'::regclass`);
  assert.deepEqual(triggers.rows, []);
  assert.deepEqual((await src.query(`select * from pg2crate.tables`)).rows, []);

  const cli = await runCli({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl }, ['tables', 'add', 'public.readings']);
  assert.notEqual(cli.code, 0);
  const lines = cli.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${cli.stderr}`);
  assert.match(lines[0], /^pg2crate: .*public\.readings.*no primary key/);
  assert.match(lines[0], /--key|keyColumns/);
  assert.equal(cli.stdout, '');
});

test('a table without a primary key replicates with key columns named in the config file', async () => {
  const file = { tables: [{ name: 'public."Loose Log"', keyColumns: ['code'] }] };
  const config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl }, file);
  const rep = await startReplicator(config);
  try {
    await src.query(`insert into "Loose Log" select g, 'line ' || g from generate_series(1, 50) g`);
    await src.query(`update "Loose Log" set msg = 'changed' where code % 5 = 0`);
    await src.query(`update "Loose Log" set code = code + 100 where code between 40 and 45`);
    await src.query(`delete from "Loose Log" where code % 7 = 0`);
    await waitCaughtUp(src);
  } finally {
    await rep.stop();
  }
  const listed = (await src.query(`select key_columns, key_origin from pg2crate.tables where source_table = 'Loose Log'`)).rows;
  assert.deepEqual(listed, [{ key_columns: ['code'], key_origin: 'config' }]);
  assert.equal(await assertSameRows(src, dst, 'public."Loose Log"', 'public."Loose Log"', ['code']), 43);
});

test('a table without a primary key replicates with key columns given to `tables add --key`', async () => {
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl };
  const added = await runCli(env, ['tables', 'add', 'public.readings', '--key', 'sensor,at']);
  assert.equal(added.code, 0, added.stderr);
  assert.match(added.stdout, /capturing public\.readings/);
  const listed = await runCli(env, ['tables', 'list']);
  assert.match(listed.stdout, /public\.readings .*key \(sensor, at, config\)/);

  const rep = await startReplicator(makeConfig(env));
  try {
    await src.query(`insert into readings select 's' || (g % 3), timestamptz '2024-01-01 00:00:00.000001+00' + g * interval '1 minute', g / 3.0 from generate_series(1, 90) g`);
    await src.query(`update readings set value = -value where sensor = 's1'`);
    await src.query(`update readings set at = at + interval '1 day' where sensor = 's2' and value > 20`);
    await src.query(`delete from readings where sensor = 's0' and value < 10`);
    await waitCaughtUp(src);
  } finally {
    await rep.stop();
  }
  const n = await assertSameRows(src, dst, 'public.readings', 'public.readings', ['sensor', 'at']);
  assert.ok(n > 70, `only ${n} rows`);
});

test('before PostgreSQL 15 a Postgres target refuses a configured key that may hold NULL, naming the version and the fix', { skip: onlyBefore(15, 'the refusal of NULL in a key by a Postgres target') }, async () => {
  await src.query(`create table public.tags_old (owner integer not null, tag text, weight integer)`);
  const config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl }, { tables: [{ name: 'public.tags_old', keyColumns: ['owner', 'tag'] }] });
  const rep = await startReplicator(config);
  try {
    await assert.rejects(rep.done, (err: unknown) => {
      assert.ok(err instanceof TableError, `expected a TableError, got ${String(err)}`);
      assert.match(err.message, /^public\.tags_old: its key column tag may hold NULL, which a PostgreSQL target keeps apart only with UNIQUE NULLS NOT DISTINCT, from PostgreSQL 15 on \(the target runs 1[34]\.\d+\): declare it NOT NULL in the source table, or replicate into PostgreSQL 15 or later$/);
      return true;
    });
  } finally {
    await rep.stop();
  }
  const created = await dst.query(`select 1 from pg_class where relname = 'tags_old'`);
  assert.equal(created.rows.length, 0, 'no target table is created');
});

test('a configured key column that holds NULL matches NULL: such rows are updated and deleted, not refused', { skip: needsServer(15, 'a Postgres target keeping NULL in a key') }, async () => {
  await src.query(`create table public.tags (owner integer not null, tag text, weight integer)`);
  const config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl }, { tables: [{ name: 'public.tags', keyColumns: ['owner', 'tag'] }] });
  const rep = await startReplicator(config);
  try {
    await src.query(`insert into tags values (1, null, 1), (1, 'a', 2), (2, null, 3), (3, null, 4)`);
    await waitCaughtUp(src);
    await src.query(`update tags set weight = weight * 10 where owner = 1`);
    await src.query(`delete from tags where owner = 2`);
    await src.query(`update tags set tag = 'named' where owner = 3`);
    await src.query(`insert into tags values (4, null, 5)`);
    await waitCaughtUp(src);
  } finally {
    await rep.stop();
  }
  assert.deepEqual((await src.query(`select event_id from pg2crate.dead_letters`)).rows, [], 'no change may be parked');
  assert.equal(await assertSameRows(src, dst, 'public.tags', 'public.tags', ['owner', 'tag']), 4);
});
