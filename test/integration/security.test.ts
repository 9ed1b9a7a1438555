// Privileges (design §2): application roles write captured tables without any grant on the tool's
// schema and cannot touch the outbox; functions planted on their search_path cannot hijack capture;
// and a plain table owner — no superuser, no REPLICATION — can migrate and run trigger capture.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertSameRows, makeConfig, settle, startReplicator, waitCaughtUp, initialLoadsDone, waitFor, type Running } from '../helpers/replication.js';

const bed = clusterForFile();
let srcUrl: string;
let dstUrl: string;
let src: pg.Pool;
let dst: pg.Pool;
let app: pg.Pool;
let rep: Running | undefined;
bed.onClose(async () => {
  await rep?.stop();
  await app?.end();
});

function as(url: string, user: string): string {
  const u = new URL(url);
  u.username = user;
  return u.toString();
}

/** Runs `sql` as the application role and returns the SQLSTATE it failed with ('' when it did not fail). */
async function sqlstate(sql: string): Promise<string> {
  try {
    await app.query(sql);
    return '';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

before(async () => {
  ({ srcUrl, dstUrl, src, dst } = await bed.databases());
  await src.query(`
    create role app login nosuperuser noreplication;
    create table public.accounts (id integer primary key, owner text not null, balance numeric(12,2) not null default 0);
    grant usage on schema public to app;
    grant select, insert, update, delete, truncate on public.accounts to app;
  `);
  const config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.accounts' });
  await settle(config, src);
  rep = await startReplicator(config);
  app = new pg.Pool({ connectionString: as(srcUrl, 'app'), max: 2 });
});

test('an application role without any grant on the pg2crate schema writes captured tables and cannot read or change the outbox', async () => {
  const priv = await src.query(`select has_schema_privilege('app', 'pg2crate', 'USAGE') as usage, has_schema_privilege('app', 'pg2crate', 'CREATE') as create`);
  assert.deepEqual(priv.rows[0], { usage: false, create: false }, 'the role must have no grant on the schema');

  await app.query(`insert into accounts select g, 'owner ' || g, g * 1.5 from generate_series(1, 20) g`);
  await app.query(`update accounts set balance = balance + 100 where id <= 5`);
  await app.query(`update accounts set id = id + 100 where id = 6`);
  await app.query(`delete from accounts where id = 7`);
  await waitCaughtUp(src);
  assert.equal(await assertSameRows(src, dst, 'public.accounts', 'public.accounts', ['id']), 19);

  const denied = '42501';
  for (const sql of [
    'select * from pg2crate.outbox',
    `insert into pg2crate.outbox (gen, table_id, op, data) values (0, 1, 'I', '{"id": 666}')`,
    'delete from pg2crate.outbox',
    'truncate pg2crate.outbox',
    'update pg2crate.state set idle = true',
    'update pg2crate.checkpoint set after_id = 0',
    'select * from pg2crate.tables',
    `select nextval('pg2crate.outbox_id_seq')`,
    'alter table pg2crate.outbox add column x int',
    'create table pg2crate.planted (x int)',
    'select pg2crate.capture_1()',
    'drop trigger pg2crate_capture_i on public.accounts',
  ]) {
    assert.equal(await sqlstate(sql), denied, `the application role must not be able to run: ${sql}`);
  }
});

test('functions and operators planted earlier on the writer\'s search_path cannot hijack capture', async () => {
  await src.query(`insert into accounts select g, 'before the plants', g from generate_series(300, 319) g`);
  await src.query(`
    create schema evil;
    create table evil.calls (what text);
    grant usage on schema evil to public;
    grant insert on evil.calls to public;
    create function evil.to_jsonb(r public.accounts) returns jsonb language sql as $$ select '{"id": 666, "owner": "hijacked", "balance": 0}'::jsonb $$;
    create function evil.jsonb_build_object(k text, v integer) returns jsonb language sql as $$ select '{"id": 666}'::jsonb $$;
    create function evil.pg_notify(c text, p text) returns void language sql as $$ insert into evil.calls values ('pg_notify ' || c) $$;
    create function evil.int4_always_equal(a integer, b integer) returns boolean language sql as $$ select true $$;
    create operator evil.= (leftarg = integer, rightarg = integer, function = evil.int4_always_equal);
    alter role app set search_path = evil, pg_catalog, public;
  `);
  // The plants work: in the application's own session, unqualified calls reach them.
  const c = new pg.Client({ connectionString: as(srcUrl, 'app') });
  await c.connect();
  try {
    assert.equal((await c.query(`show search_path`)).rows[0].search_path, 'evil, pg_catalog, public');
    assert.deepEqual((await c.query(`select to_jsonb(a.*) ->> 'owner' as o from accounts a limit 1`)).rows[0].o, 'hijacked');
    assert.deepEqual((await c.query(`select jsonb_build_object('id', 1) as j`)).rows[0].j, { id: 666 });
    assert.equal((await c.query(`select 1 = 2 as eq`)).rows[0].eq, true);
    await c.query(`select pg_notify('x', '')`);
    assert.equal((await src.query(`select count(*)::int as n from evil.calls`)).rows[0].n, 1);
    await src.query(`truncate evil.calls`);

    // The drainer is idle, so the capture trigger will notify: that must be pg_catalog.pg_notify.
    // (First the initial loads: a chunk still to come would make the drainer busy again.)
    await waitFor('the initial loads', () => initialLoadsDone(src));
    await waitCaughtUp(src);
    await waitFor('the drainer to be idle', async () => (await src.query('select idle from pg2crate.state')).rows[0].idle);
    const watcher = new pg.Client({ connectionString: srcUrl });
    await watcher.connect();
    let notified = 0;
    watcher.on('notification', () => { notified++; });
    await watcher.query('LISTEN "pg2crate_wakeup"');
    try {
      // The application's own statements avoid "=": the planted one would hit them too.
    await c.query(`insert into accounts values (400, 'planted path', 1), (401, 'planted path', 2)`);
      await waitFor('the capture NOTIFY', () => notified > 0);
    } finally {
      await watcher.end();
    }
    await c.query(`update accounts set balance = balance * 2 where id between 300 and 310`);
    // A key change: with the planted "=" (always true) no delete of the old keys would be written.
    await c.query(`update accounts set id = id + 1000 where id between 308 and 310`);
    await c.query(`delete from accounts where id between 311 and 311`);
  } finally {
    await c.end();
  }
  await waitCaughtUp(src);
  assert.equal((await src.query(`select count(*)::int as n from evil.calls`)).rows[0].n, 0, 'the planted pg_notify was called');
  assert.equal((await dst.query(`select count(*)::int as n from accounts where id = 666 or owner = 'hijacked'`)).rows[0].n, 0);
  assert.equal((await dst.query(`select count(*)::int as n from accounts where id between 1308 and 1310`)).rows[0].n, 3);
  assert.equal((await dst.query(`select count(*)::int as n from accounts where id between 308 and 311`)).rows[0].n, 0);
  assert.ok(await assertSameRows(src, dst, 'public.accounts', 'public.accounts', ['id']) >= 21);
});

test('a role that owns its tables, without superuser or REPLICATION, can migrate and run trigger capture', async () => {
  const ownDb = await bed.cluster.createDatabase('own');
  const ownDst = await bed.cluster.createDatabase('owndst');
  const dbName = new URL(ownDb).pathname.slice(1);
  const admin = bed.pool(ownDb);
  await admin.query(`create role plain_owner login nosuperuser noreplication nocreaterole; grant create on database "${dbName}" to plain_owner`);
  const roles = await admin.query(`select rolsuper, rolreplication, rolbypassrls from pg_roles where rolname = 'plain_owner'`);
  assert.deepEqual(roles.rows[0], { rolsuper: false, rolreplication: false, rolbypassrls: false });

  const ownerUrl = as(ownDb, 'plain_owner');
  const owner = bed.pool(ownerUrl);
  await owner.query(`create schema shop; create table shop.items (sku text primary key, qty integer not null)`);

  const config = makeConfig({ DATABASE_URL: ownerUrl, TARGET_DATABASE_URL: ownDst, PG2CRATE_TABLES: 'shop.items' });
  const r = await startReplicator(config);
  const target = bed.pool(ownDst);
  try {
    await owner.query(`insert into shop.items select 'sku-' || g, g from generate_series(1, 100) g`);
    await owner.query(`update shop.items set qty = qty - 1 where qty > 50`);
    await owner.query(`update shop.items set sku = sku || '-renamed' where qty < 5`);
    await owner.query(`delete from shop.items where qty between 20 and 29`);
    await waitCaughtUp(owner);
  } finally {
    await r.stop();
  }
  const schemaOwner = await admin.query(`select pg_get_userbyid(nspowner) as o from pg_namespace where nspname = 'pg2crate'`);
  assert.equal(schemaOwner.rows[0].o, 'plain_owner');
  assert.equal(await assertSameRows(owner, target, 'shop.items', 'shop.items', ['sku']), 90);
});
