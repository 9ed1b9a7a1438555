// An excluded or hashed column renamed in the source (README "Shaping the target", "Schema
// changes"): its raw values never leave the source under the new name. In trigger mode the
// table's inserts and updates fail with a message that says what happened and what to do until
// the watch's pass, which follows the rename by attnum; then they work again, and the target ends
// equal to the source through the shape. Through a partitioned table's root and its partitions, in
// cron mode (the catch-up's pass), and in pgoutput mode, where a replicator started before the
// watch's pass keeps the column out of the publication. Every check reads the outbox and the
// target directly for the raw values.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { catchUp } from '../../src/commands/catch-up.js';
import { verify } from '../../src/commands/verify.js';
import { noteColumns } from '../../src/capture/column-watch.js';
import { migrate } from '../../src/commands/migrate.js';
import { addTables } from '../../src/commands/tables.js';
import { Runner } from '../../src/runner.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { columns, keyWatchHeld, switchedPgoutput } from '../helpers/key-rename.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { initialLoadsDone, logLines, makeConfig, startReplicator, tableRows, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { needsServer } from '../helpers/server-version.js';

const SALT = 'salt-R7x';
const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;
let rep: Running;

const shaped = (name: string) => ({ name, excludeColumns: ['ssn'], hashColumns: ['email'] });
const FILE = { tables: [shaped('public.people'), shaped('public.ppl'), shaped('public.cron')] };
const SEED = (g: string) => `${g}, 'name ' || ${g}, 'p' || ${g} || '@example.com', 'ssn-' || ${g}`;

before(async () => {
  let s: string, d: string;
  ({ srcUrl: s, dstUrl: d, src, dst } = await bed.databases());
  await src.query(`
    create table people (id int primary key, name text, email text, ssn text);
    insert into people select ${SEED('g')} from generate_series(1, 5) g;
    create table ppl (id int primary key, name text, email text, ssn text) partition by range (id);
    create table ppl1 partition of ppl for values from (1) to (100);
    create table ppl2 partition of ppl for values from (100) to (200);
    insert into ppl select ${SEED('g')} from generate_series(1, 5) g;
    insert into ppl select ${SEED('g')} from generate_series(101, 105) g;
    create table cron (id int primary key, name text, email text, ssn text);
    insert into cron select ${SEED('g')} from generate_series(1, 5) g;`);
  env = { DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_HASH_SALT: SALT, PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_PARTITION_WATCH_MS: '300' };
  rep = await startReplicator(makeConfig(env, FILE));
  await waitFor('the initial loads', () => initialLoadsDone(src));
  await waitCaughtUp(src);
});

bed.onClose(() => rep?.stop());

/** Every raw value the table's email and ssn columns (under any name) ever held: none may be found outside the source. */
const RAW = `(%s::text like '%%ssn-%%' or %s::text like '%%@example.com%%')`;
const raw = (expr: string) => RAW.replaceAll('%s', expr).replaceAll('%%', '%');

async function assertNoRawValues(table: string, db = dst): Promise<void> {
  const outbox = await src.query(
    `select o.data::text as d from pg2crate.outbox o join pg2crate.tables t on t.id = o.table_id where t.source_table = $1 and ${raw('o.data')}`, [table],
  );
  assert.deepEqual(outbox.rows.map((r) => r.d), [], `no raw value of ${table} in the outbox`);
  const target = await db.query(`select to_jsonb(t.*)::text as r from ${table} t where ${raw('to_jsonb(t.*)')}`);
  assert.deepEqual(target.rows.map((r) => r.r), [], `no raw value of ${table} in the target`);
}

/** The target equals the source through the shape: the same rows, names equal, `mail` the salted hash, no ssn under any name. */
async function assertShapedEqual(table: string): Promise<number> {
  const want = await src.query<{ r: string }>(
    `select jsonb_build_object('id', id, 'name', name, 'mail', encode(sha256(convert_to($1 || mail, 'UTF8')), 'hex'))::text as r from ${table} order by id`, [SALT],
  );
  const got = await tableRows(dst, table, ['id'], ['id', 'name', 'mail']);
  assert.deepEqual(got, want.rows.map((r) => r.r));
  const cols = await columns(dst, table);
  assert.ok(!cols.some((c) => ['ssn', 'social', 'ssn2'].includes(c)), `the target of ${table} has no ssn column under any name: ${cols.join(', ')}`);
  return got.length;
}

const REFUSED = (table: string) => new RegExp(
  `pg2crate: a column of public\\.${table} that pg2crate leaves out or hashes \\(excludeColumns, hashColumns\\) was renamed: .*` +
    `the write is refused so that its values do not leave the database under the new name.*pg2crate tables add public\\.${table}`,
);

async function assertRefused(write: Promise<unknown>, table: string): Promise<void> {
  await assert.rejects(write, (err: Error) => {
    assert.match(err.message, REFUSED(table));
    assert.match(err.message, /ssn \(now social\)/);
    assert.match(err.message, /email \(now mail\)/);
    return true;
  });
}

const writesWork = (table: string, id: number) =>
  waitFor(`writes of ${table} to work again`, () => src.query(`insert into ${table} values (${id}, 'name ${id}', 'p${id}@example.com', 'ssn-${id}')`).then(() => true, () => false), 15_000, 100);

const shapeOf = async (table: string) => (await src.query(`select shape from pg2crate.tables where source_table = $1`, [table])).rows[0].shape;

test('renamed while the replicator runs: inserts and updates fail until the watch\'s pass, which follows the rename; no raw value ever reaches the outbox or the target', async () => {
  await keyWatchHeld(src, 'people', async () => {
    await src.query(`alter table people rename column ssn to social; alter table people rename column email to mail`);
    await assertRefused(src.query(`insert into people values (6, 'name 6', 'p6@example.com', 'ssn-6')`), 'people');
    await assertRefused(src.query(`update people set name = 'renamed' where id = 1`), 'people');
    // a delete writes the key only: it goes on
    await src.query(`delete from people where id = 5`);
  });
  await writesWork('people', 7);
  await src.query(`update people set name = name || ' after', social = social || '!', mail = 'new-' || mail`);
  await waitCaughtUp(src);
  assert.deepEqual([(await shapeOf('people')).excludeColumns, (await shapeOf('people')).hashColumns], [['social'], ['mail']]);
  const told = logLines.filter((l) => l.includes('public.people"') && l.includes('leaves out or hashes'));
  assert.equal(told.length, 1);
  assert.deepEqual(JSON.parse(told[0]).renamed, { ssn: 'social', email: 'mail' });
  assert.match(JSON.parse(told[0]).msg, /so its writes work again\. Give the column its new name in the configuration file too/);
  await assertNoRawValues('people');
  assert.equal(await assertShapedEqual('people'), 5);
  // the configuration file still names the old column: the next `migrate` says so, and changes nothing
  await assert.rejects(migrate(rep.runner), /excludeColumns of public\.people names column\(s\) the table does not have: ssn/);
  assert.deepEqual((await shapeOf('people')).excludeColumns, ['social']);
  // renamed again: followed again, by the same attnum
  await src.query(`alter table people rename column social to ssn2`);
  await writesWork('people', 8);
  await waitCaughtUp(src);
  assert.deepEqual((await shapeOf('people')).excludeColumns, ['ssn2']);
  await assertNoRawValues('people');
  assert.equal(await assertShapedEqual('people'), 6);
});

test('a partitioned table: writes through the root and through a partition fail until the watch\'s pass, then reach the target without a raw value', async () => {
  await keyWatchHeld(src, 'ppl', async () => {
    await src.query(`alter table ppl rename column ssn to social; alter table ppl rename column email to mail`);
    await assertRefused(src.query(`insert into ppl2 values (106, 'name 106', 'p106@example.com', 'ssn-106')`), 'ppl');
    await assertRefused(src.query(`update ppl set name = 'renamed' where id = 1`), 'ppl');
  });
  await writesWork('ppl2', 107);
  await src.query(`update ppl1 set name = name || ' after'; update ppl set mail = 'new-' || mail; insert into ppl1 values (8, 'name 8', 'p8@example.com', 'ssn-8')`);
  await waitCaughtUp(src);
  await assertNoRawValues('ppl');
  assert.equal(await assertShapedEqual('ppl'), 12);
});

test('a column dropped leaks nothing and fails nothing; one added again under the listed name is left out by name', async () => {
  await src.query(`create table dropped (id int primary key, name text, email text, ssn text)`);
  await addTables(rep.runner, [{ schema: 'public', table: 'dropped', excludeColumns: ['ssn'], hashColumns: ['email'], hashSalt: SALT }]);
  await src.query(`alter table dropped drop column ssn`);
  await src.query(`insert into dropped values (1, 'one', 'p1@example.com')`);
  await src.query(`alter table dropped add column ssn text; insert into dropped values (2, 'two', 'p2@example.com', 'ssn-2')`);
  await waitFor('the initial load', () => initialLoadsDone(src));
  await waitCaughtUp(src);
  await assertNoRawValues('dropped');
  assert.equal((await dst.query(`select count(*)::int as n from dropped`)).rows[0].n, 2);
});

test('cron mode: renamed while no replicator runs, the writes fail until the catch-up\'s pass, then work; nothing raw reaches the target', async () => {
  await rep.stop();
  await src.query(`alter table cron rename column ssn to social; alter table cron rename column email to mail`);
  await assertRefused(src.query(`insert into cron values (6, 'name 6', 'p6@example.com', 'ssn-6')`), 'cron');
  // a drainer that describes the table before the watch's pass records its columns: not these, so
  // that the watch still finds the renamed ones by the attnums it saw
  const client = await src.connect();
  try {
    await noteColumns(client, 'pg2crate', (await src.query(`select id from pg2crate.tables where source_table = 'cron'`)).rows[0].id);
  } finally {
    client.release();
  }
  const runner = new Runner(makeConfig(env, FILE), testLogger());
  try {
    // verify --repair reads the source through the shape before the watch's pass too: no raw value goes with it
    await verify(runner, { tables: [{ schema: 'public', table: 'cron' }], repair: true, out: () => {} });
    await assertNoRawValues('cron');
    await catchUp(runner);
    await src.query(`insert into cron values (6, 'name 6', 'p6@example.com', 'ssn-6'); update cron set mail = 'new-' || mail`);
    await catchUp(runner);
  } finally {
    await runner.close();
  }
  await assertNoRawValues('cron');
  assert.equal(await assertShapedEqual('cron'), 6);
});

test('pgoutput mode: an excluded column renamed stays out of the publication, also for a replicator started before the watch\'s pass; the watch follows it', { skip: needsServer(15, 'a publication column list') }, async () => {
  const { src: s, dst: d, start: pgoutput } = await switchedPgoutput(bed,
    `create table pex (id int primary key, name text, ssn text); insert into pex select g, 'name ' || g, 'ssn-' || g from generate_series(1, 5) g`,
    'pex', { tables: [{ name: 'public.pex', excludeColumns: ['ssn'] }] });
  const noRaw = async () => assert.deepEqual((await d.query(`select to_jsonb(t.*)::text as r from pex t where to_jsonb(t.*)::text like '%ssn-%'`)).rows, []);
  let pgo: Running | undefined;
  try {
    // Renamed with the watch held, and a replicator started before the watch's pass: its check of
    // the publication meets a registry that still names the old column. Nothing is written while
    // the registry row is held (a drainer describing the table would wait for it).
    await keyWatchHeld(s, 'pex', async () => {
      await s.query(`alter table pex rename column ssn to social`);
      pgo = await pgoutput();
      // streaming: its check of the publication is done
      await waitFor('the stream to start', async () => (await s.query(`select active from pg_replication_slots where slot_name = 'pex'`)).rows[0]?.active === true);
    });
    // the column is not even decoded: the publication leaves it out under its new name
    assert.deepEqual((await s.query(`select attnames::text[] as c from pg_publication_tables where tablename = 'pex'`)).rows.map((r) => r.c), [['id', 'name']]);
    await s.query(`insert into pex values (6, 'name 6', 'ssn-6'), (7, 'name 7', 'ssn-7'); update pex set social = social || '!', name = name || '!'`);
    await waitSlotCaughtUp(s, 'pex');
    await waitFor('the rows to arrive', async () => (await d.query(`select count(*)::int as n from pex where name like '%!'`)).rows[0].n === 7);
    await noRaw();
    await waitFor('the watch to follow the rename', async () => (await s.query(`select shape->'excludeColumns' as c from pg2crate.tables where source_table = 'pex'`)).rows[0].c[0] === 'social');
    await s.query(`insert into pex values (8, 'name 8', 'ssn-8')`);
    await waitSlotCaughtUp(s, 'pex');
    await waitFor('the last row to arrive', async () => (await d.query(`select count(*)::int as n from pex`)).rows[0].n === 8);
    await noRaw();
    assert.deepEqual(await tableRows(d, 'pex', ['id'], ['id', 'name']), await tableRows(s, 'pex', ['id'], ['id', 'name']));
  } finally {
    await pgo?.stop();
  }
});
