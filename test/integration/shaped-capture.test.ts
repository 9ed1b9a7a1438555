// Shaped targets in a Postgres target, the capture side (issue 12): an excluded column never leaves
// the source (not in the outbox, not in the target), a hashed column arrives as sha256(salt ||
// value), an include list survives columns dropped and added, and a row filter moves rows in and
// out of the target on update. The initial load and verify (with --repair) honour the filters;
// `tables add` refuses shapes that cannot work with a message that says why.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { Config } from '../../src/core/config.js';
import { TableError } from '../../src/core/errors.js';
import { Runner } from '../../src/runner.js';
import { postgresVerifyTarget } from '../../src/verify/postgres-target.js';
import { runVerify } from '../../src/verify/run-verify.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { initialLoadsDone, makeConfig, startReplicator, tableRows, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { addTables } from '../../src/commands/tables.js';

const SALT = 'pepper-Zq9';
const bed = clusterForFile();
let srcUrl: string;
let dstUrl: string;
let src: pg.Pool;
let dst: pg.Pool;
let config: Config;
let rep: Running;

const PEOPLE = { name: 'public.people', excludeColumns: ['ssn'], hashColumns: ['email'], where: `tenant_id = 42 and coalesce(note, '') <> 'hidden'` };
const NARROW = { name: 'public.narrow', includeColumns: ['id', 'a', 'c'] };

before(async () => {
  ({ srcUrl, dstUrl, src, dst } = await bed.databases(6));
  await src.query(`
    create table people (id int primary key, tenant_id int not null, name text, email text, ssn text, note text);
    create table narrow (id int primary key, a text, b text, c text);
    -- rows before capture: the initial load copies them through the filters
    insert into people select g, case when g % 3 = 0 then 7 else 42 end, 'p' || g, 'p' || g || '@example.com', 'ssn-' || g, null from generate_series(1, 30) g;
    update people set note = 'hidden' where id = 1;
    insert into narrow select g, 'a' || g, 'b' || g, 'c' || g from generate_series(1, 10) g;`);
  config = makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_HASH_SALT: SALT }, { tables: [PEOPLE, NARROW] });
  rep = await startReplicator(config);
  await waitFor('the initial loads', () => initialLoadsDone(src));
  await waitCaughtUp(src);
});

bed.onClose(() => rep?.stop());

/** What the target must hold: the rows passing the filter, email hashed, no ssn. */
async function expectedPeople(): Promise<string[]> {
  const res = await src.query<{ r: string }>(
    `select jsonb_build_object('id', id, 'tenant_id', tenant_id, 'name', name, 'note', note,
            'email', encode(sha256(convert_to($1 || email, 'UTF8')), 'hex'))::text as r
       from people where tenant_id = 42 and coalesce(note, '') <> 'hidden' order by id`,
    [SALT],
  );
  return res.rows.map((r) => r.r);
}

const targetPeople = () => tableRows(dst, 'public.people', ['id'], ['id', 'tenant_id', 'name', 'note', 'email']);

async function outboxLeaks(): Promise<number> {
  const r = await src.query(
    `select count(*)::int as n from pg2crate.outbox o join pg2crate.tables t on t.id = o.table_id
      where t.source_table = 'people' and (o.data::jsonb ? 'ssn' or o.data::text like '%@example.com%' or o.data::text like '%ssn-%')`,
  );
  return r.rows[0].n;
}

test('the initial load copies only the rows that pass the filter, without the excluded column, the hashed one hashed', async () => {
  assert.deepEqual(await targetPeople(), await expectedPeople());
  assert.equal((await targetPeople()).length, 19);
  const cols = (await dst.query(`select column_name, data_type from information_schema.columns where table_name = 'people' order by ordinal_position`)).rows;
  assert.deepEqual(cols.map((c) => c.column_name), ['id', 'tenant_id', 'name', 'email', 'note'], 'the target has no ssn column');
  assert.equal(cols.find((c) => c.column_name === 'email').data_type, 'text');
  assert.equal(await outboxLeaks(), 0, 'no excluded or raw hashed value in the outbox');
  // The direct load reads only rows that pass the filter and writes them straight to the target.
  const copied = await src.query(`select rows_copied::int as n from pg2crate.backfills where table_id = (select id from pg2crate.tables where source_table = 'people')`);
  assert.equal(copied.rows[0].n, 19, 'rows outside the filter were never read for the copy');
  const events = await src.query(`select count(*)::int as n from pg2crate.outbox where op = 'B' and table_id = (select id from pg2crate.tables where source_table = 'people')`);
  assert.equal(events.rows[0].n, 0, 'a direct load writes no row into the outbox');
});

test('updates move rows into and out of the filter; deletes and writes outside it never reach the target', async () => {
  await src.query(`insert into people values (100, 42, 'in', 'in@example.com', 'ssn-100', null), (101, 7, 'out', 'out@example.com', 'ssn-101', null)`);
  await src.query(`update people set tenant_id = 7 where id in (2, 4)`); // leave the filter: deleted in the target
  await src.query(`update people set tenant_id = 42 where id in (3, 6)`); // enter it: inserted
  await src.query(`update people set note = 'hidden' where id = 5`); // leaves by another column
  await src.query(`update people set name = name || '!' where id between 7 and 12`); // some in, some out
  await src.query(`update people set id = id + 1000 where id in (8, 9)`); // key change of rows in (8) and out (9)
  await src.query(`delete from people where id in (10, 12)`); // 10 is in, 12 out
  await src.query(`update people set email = null where id = 11`);
  await src.query(`update people set ssn = 'ssn-changed' where id = 13`); // only the excluded column: the row is sent again, without it
  await waitCaughtUp(src);
  const rows = await targetPeople();
  assert.deepEqual(rows, await expectedPeople());
  const ids = rows.map((r) => JSON.parse(r).id);
  for (const id of [100, 3, 6, 1008]) assert.ok(ids.includes(id), `row ${id} is in the target`);
  for (const id of [101, 2, 4, 5, 8, 9, 1009, 10]) assert.ok(!ids.includes(id), `row ${id} is not in the target`);
  assert.equal(JSON.parse(rows.find((r) => JSON.parse(r).id === 11)!).email, null, 'a NULL stays NULL when hashed');
  const hashed = JSON.parse(rows.find((r) => JSON.parse(r).id === 100)!).email;
  const { createHash } = await import('node:crypto');
  assert.equal(hashed, createHash('sha256').update(`${SALT}in@example.com`).digest('hex'), 'sha256 of salt || value');
  assert.equal(await outboxLeaks(), 0);
});

test('an include list sends only its columns, and dropping or adding columns never breaks the application\'s writes', async () => {
  assert.deepEqual(await tableRows(dst, 'public.narrow', ['id']), await tableRows(src, 'public.narrow', ['id'], ['id', 'a', 'c']));
  await src.query(`alter table narrow add column d text; alter table narrow drop column b`);
  await src.query(`insert into narrow values (11, 'a11', 'c11', 'd11'); update narrow set d = 'later', a = 'a1!' where id = 1`);
  await src.query(`alter table narrow drop column c`); // an included column
  await src.query(`insert into narrow values (12, 'a12', 'd12'); update narrow set a = 'a2!' where id = 2`);
  await src.query(`alter table people drop column email`); // a hashed column
  await src.query(`insert into people (id, tenant_id, name) values (200, 42, 'no email')`);
  await waitCaughtUp(src);
  const cols = (await dst.query(`select column_name from information_schema.columns where table_name = 'narrow' order by ordinal_position`)).rows.map((r) => r.column_name);
  assert.deepEqual(cols, ['id', 'a', 'c'], 'neither the added nor the excluded column reached the target');
  const rows = (await dst.query(`select id, a from narrow where id in (1, 2, 11, 12) order by id`)).rows;
  assert.deepEqual(rows, [{ id: 1, a: 'a1!' }, { id: 2, a: 'a2!' }, { id: 11, a: 'a11' }, { id: 12, a: 'a12' }]);
  assert.equal((await dst.query(`select name from people where id = 200`)).rows[0]?.name, 'no email');
});

test('verify compares only the rows that pass the filter, hashed columns hashed, and --repair removes a row outside the filter', async () => {
  await src.query(`alter table people add column email text`); // back, so that verify compares a hashed column
  await src.query(`update people set email = 'v' || id || '@example.com' where tenant_id = 42`);
  await waitCaughtUp(src);
  const run = async (repair: boolean, form: 'postgres-md5' | 'client' = 'postgres-md5') => {
    const target = postgresVerifyTarget(dstUrl, { form });
    try {
      return await runVerify({ config, pool: src, target, tables: [{ schema: 'public', table: 'people' }], repair, logger: testLogger(), rangeRows: 5, catchUpTimeoutMs: 20_000 });
    } finally {
      await target.close();
    }
  };
  for (const form of ['postgres-md5', 'client'] as const) {
    const res = await run(false, form);
    assert.equal(res.equal, true, `${form}: ${JSON.stringify(res.reports[0].differences)}`);
    assert.equal(res.reports[0].sourceRows, res.reports[0].targetRows);
  }
  // A row the filter keeps out appears in the target behind the replicator's back; another is changed.
  await dst.query(`insert into people (id, tenant_id, name) values (101, 7, 'stray'); update people set email = 'raw@example.com' where id = 100`);
  const found = await run(false);
  assert.equal(found.equal, false);
  assert.deepEqual(found.reports[0].differences.extra.keys, ['{"id": 101}']);
  assert.deepEqual(found.reports[0].differences.different.keys, ['{"id": 100}']);
  const repaired = await run(true);
  assert.equal(repaired.equal, true, JSON.stringify(repaired.reports[0].repair));
  assert.deepEqual(await targetPeople(), await expectedPeople());
  assert.equal(await outboxLeaks(), 0, 'repair sends the shaped image too');
});

test('tables add refuses shapes that cannot work, naming the table and the reason', async () => {
  await src.query(`create table odd (id int primary key, tenant_id int, "_deleted_at" text, v text)`);
  const attempt = async (spec: Record<string, unknown>, message: RegExp) => {
    const runner = new Runner(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_HASH_SALT: SALT }, { tables: [{ name: 'public.odd', ...spec }] }), testLogger());
    try {
      await assert.rejects(addTables(runner, [{ schema: 'public', table: 'odd' }]), (err: unknown) => {
        assert.ok(err instanceof TableError, String(err));
        assert.match(err.message, /odd/);
        assert.match(err.message, message);
        return true;
      });
    } finally {
      await runner.close();
    }
  };
  await attempt({ where: 'tenant_id = = 4' }, /row filter \("where"\) of public\.odd does not work.*syntax error/);
  await attempt({ where: 'no_such_column > 1' }, /does not work.*no_such_column/);
  await attempt({ where: 'v' }, /does not work.*boolean/);
  await attempt({ where: `public.my_function(v)` }, /does not work/);
  await attempt({ deletes: 'soft' }, /column "_deleted_at".*deletedAtColumn/);
  await attempt({ metadata: { operation: 'v' } }, /column "v"/);
  await attempt({ excludeColumns: ['id'] }, /key column "id".*cannot be excluded/);
  await attempt({ includeColumns: ['v'] }, /key column "id" .*must be in includeColumns/);
  await attempt({ hashColumns: ['id'] }, /key column "id" .*cannot be hashed/);
  await attempt({ excludeColumns: ['nope'] }, /excludeColumns of public\.odd names column\(s\) the table does not have: nope/);
  await attempt({ history: true, historyTable: 'odd' }, /history table of public\.odd would be its target table/);
  // nothing was registered
  assert.equal((await src.query(`select count(*)::int as n from pg2crate.tables where source_table = 'odd'`)).rows[0].n, 0);
  // and a good shape is accepted, with the predicate checked against the table
  const ok = new Runner(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl }, { tables: [{ name: 'public.odd', where: 'tenant_id in (1, 2)' }] }), testLogger());
  try {
    const [t] = await addTables(ok, [{ schema: 'public', table: 'odd' }]);
    assert.equal(t.shape?.where, 'tenant_id in (1, 2)');
    assert.ok(!JSON.stringify(t).includes(SALT));
  } finally {
    await ok.close();
  }
});

test('the salt is kept out of the registry\'s shape, the capture function\'s source and the logs', async () => {
  const fn = await src.query(`select prosrc from pg_proc where proname like 'capture_%'`);
  assert.ok(fn.rows.length > 0 && fn.rows.every((r) => !r.prosrc.includes(SALT)));
  const shape = await src.query(`select shape::text as s, hash_salt from pg2crate.tables where source_table = 'people'`);
  assert.ok(!shape.rows[0].s.includes(SALT));
  assert.equal(shape.rows[0].hash_salt, SALT);
  const { logLines } = await import('../helpers/replication.js');
  assert.ok(logLines.every((l) => !l.includes(SALT)), 'no log line carries the salt');
});
