// A key column renamed in a shaped table (README "Shaping the target", "Schema changes"): an
// include list that names the key follows the rename; a row filter that names it fails the table's
// writes until the operator changes it (the watch says so); a soft-deleting target with history is
// parked like any other. Each recovery ends with the target equal to the source.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { retryDeadLetters } from '../../src/commands/dead-letters.js';
import { addTables } from '../../src/commands/tables.js';
import { migrate } from '../../src/commands/migrate.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { columns, lettersOf, rows, switchedPgoutput } from '../helpers/key-rename.js';
import { assertSameRows, initialLoadsDone, logLines, makeConfig, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { needsServer } from '../helpers/server-version.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running;

const NARROW = { name: 'public.narrow', includeColumns: ['id', 'v'] };
const FILTERED = { name: 'public.filtered', where: 'id < 100' };
const SOFT = { name: 'public.soft', deletes: 'soft', history: true, metadata: { operation: '_op' } };

before(async () => {
  let s: string, d: string;
  ({ srcUrl: s, dstUrl: d, src, dst } = await bed.databases());
  for (const t of ['narrow', 'filtered', 'soft']) {
    await src.query(`create table ${t} (id int primary key, v text, secret text); insert into ${t} select g, 'row ' || g, 'secret ' || g from generate_series(1, 5) g`);
  }
  rep = await startReplicator(makeConfig(
    { DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_PARTITION_WATCH_MS: '300' },
    { tables: [NARROW, FILTERED, SOFT] },
  ));
  await waitFor('the initial loads', () => initialLoadsDone(src));
  await waitCaughtUp(src);
});

bed.onClose(() => rep?.stop());

const updatesWork = (table: string) =>
  waitFor(`updates of ${table} to work again`, () => src.query(`update ${table} set v = 'after' where ident = 1`).then(() => true, () => false), 15_000, 100);

test('an include list that names the key follows the rename: the key keeps reaching the target, the other columns stay out, and the usual recovery makes the target equal to the source', async () => {
  await src.query(`alter table narrow rename column id to ident`);
  await updatesWork('narrow');
  await src.query(`delete from narrow where ident = 2; insert into narrow values (6, 'new', 'secret 6')`);
  await waitCaughtUp(src);
  assert.deepEqual((await src.query(`select shape->'includeColumns' as c from pg2crate.tables where source_table = 'narrow'`)).rows[0].c, ['ident', 'v']);
  assert.ok(logLines.some((l) => l.includes('public.narrow"') && l.includes('so its updates and deletes work again')));
  // the configuration file still names the old column: the next `migrate` says so, and changes nothing
  await assert.rejects(migrate(rep.runner), /includeColumns of public\.narrow names column\(s\) the table does not have: id/);
  const letters = await lettersOf(rep.runner, 'public.narrow');
  assert.deepEqual(letters.map((l) => l.op).sort(), ['D', 'I', 'U']);
  for (const l of letters) assert.match(l.error, /keyed by \(id\) but the changes of public\.narrow are keyed by \(ident\)/);
  await dst.query(`alter table narrow rename column id to ident`);
  await retryDeadLetters(rep.runner, 'all');
  await waitCaughtUp(src);
  assert.deepEqual(await lettersOf(rep.runner, 'public.narrow'), []);
  assert.equal(await assertSameRows(src, dst, 'narrow', 'narrow', ['ident'], ['ident', 'v']), 5);
  assert.deepEqual(await columns(dst, 'narrow'), ['ident', 'v']);
});

test('a row filter that names the key: the table\'s writes fail in the source until its filter names the new column (`tables add`), then the usual recovery makes the target equal to the source', async () => {
  await src.query(`alter table filtered rename column id to ident`);
  await assert.rejects(src.query(`insert into filtered values (6, 'new', 'secret 6')`), /column "id" does not exist/);
  // the watch's pass captures the table again under the new key, but cannot rewrite the filter: it says so
  await waitFor('the watch to follow the key', async () => (await src.query(`select key_columns from pg2crate.tables where source_table = 'filtered'`)).rows[0].key_columns[0] === 'ident');
  const told = logLines.filter((l) => l.includes('captured it again under the new names') && l.includes('public.filtered"'));
  assert.equal(told.length, 1);
  assert.match(JSON.parse(told[0]).msg, /its row filter \("where"\) names a column it no longer has, so every write of the table fails in the source: give "where" the new name in the configuration, then `pg2crate tables add`/);
  assert.match(JSON.parse(told[0]).filter, /column "id" does not exist/);
  await assert.rejects(src.query(`insert into filtered values (6, 'new', 'secret 6')`), /column "id" does not exist/);
  await addTables(rep.runner, [{ schema: 'public', table: 'filtered', where: 'ident < 100' }]);
  await src.query(`update filtered set v = 'after' where ident = 1; delete from filtered where ident = 2; insert into filtered values (6, 'new', 'secret 6'), (106, 'filtered out', null)`);
  await waitCaughtUp(src);
  assert.deepEqual((await lettersOf(rep.runner, 'public.filtered')).map((l) => l.op).sort(), ['D', 'I', 'U']);
  await dst.query(`alter table filtered rename column id to ident`);
  await retryDeadLetters(rep.runner, 'all');
  await waitCaughtUp(src);
  assert.deepEqual(await lettersOf(rep.runner, 'public.filtered'), []);
  assert.deepEqual(await rows(dst, 'filtered', 'ident'), (await rows(src, 'filtered', 'ident')).filter(([k]) => k < 100));
});

test('soft deletes and history: the changes are parked, and once the target\'s key is renamed the retry marks the deleted row and the history carries the new name', async () => {
  await src.query(`alter table soft rename column id to ident`);
  await updatesWork('soft');
  await src.query(`delete from soft where ident = 2; insert into soft values (6, 'new', 'secret 6')`);
  await waitCaughtUp(src);
  assert.deepEqual((await lettersOf(rep.runner, 'public.soft')).map((l) => l.op).sort(), ['D', 'I', 'U']);
  assert.equal((await dst.query(`select count(*)::int as n from soft where _deleted_at is not null`)).rows[0].n, 0);
  await dst.query(`alter table soft rename column id to ident`);
  await retryDeadLetters(rep.runner, 'all');
  await waitCaughtUp(src);
  assert.deepEqual(await lettersOf(rep.runner, 'public.soft'), []);
  assert.equal(await assertSameRows(src, dst, 'soft', `(select * from soft where _deleted_at is null)`, ['ident'], ['ident', 'v', 'secret']), 5);
  assert.deepEqual((await dst.query(`select ident, _op from soft where _deleted_at is not null`)).rows, [{ ident: 2, _op: 'delete' }]);
  const history = (await dst.query(`select ident, _op from soft_history where ident is not null order by _event_id`)).rows;
  assert.deepEqual(history.map((r) => [r.ident, r._op]).sort(), [[1, 'update'], [2, 'delete'], [6, 'update']]);
});

test('pgoutput mode: an include list that names the key follows the rename, the publication keeps the key, and a replicator started afterwards streams on', { skip: needsServer(15, 'a publication column list') }, async () => {
  const { src: s, dst: d, start: pgoutput } = await switchedPgoutput(bed,
    `create table pnarrow (id int primary key, v text, secret text); insert into pnarrow select g, 'row ' || g, 'secret ' || g from generate_series(1, 5) g`,
    'pnarrow', { tables: [{ name: 'public.pnarrow', includeColumns: ['id', 'v'] }] });
  let pgo = await pgoutput();
  try {
    await s.query(`update pnarrow set v = 'streaming' where id = 5`);
    await waitFor('the replicator to stream', async () => (await rows(d, 'pnarrow', 'id')).at(-1)?.[1] === 'streaming');
    await s.query(`alter table pnarrow rename column id to ident`);
    await s.query(`update pnarrow set v = 'after' where ident = 1; delete from pnarrow where ident = 2; insert into pnarrow values (6, 'new', 'secret 6')`);
    await waitSlotCaughtUp(s, 'pnarrow');
    await waitFor('the watch to follow the key', async () => (await s.query(`select shape->'includeColumns' as c from pg2crate.tables where source_table = 'pnarrow'`)).rows[0].c[0] === 'ident');
    await waitFor('the changes to be parked', async () => (await lettersOf(pgo.runner, 'public.pnarrow')).length === 3);
  } finally {
    await pgo.stop();
  }
  // started afterwards: its check of the publication's column list meets the list the registry has now
  pgo = await pgoutput();
  try {
    await d.query(`alter table pnarrow rename column id to ident`);
    await retryDeadLetters(pgo.runner, 'all');
    await s.query(`update pnarrow set v = 'later' where ident = 3`);
    await waitSlotCaughtUp(s, 'pnarrow');
    await waitFor('the target to equal the source', async () =>
      (await lettersOf(pgo.runner, 'public.pnarrow')).length === 0 && JSON.stringify(await rows(s, 'pnarrow', 'ident')) === JSON.stringify(await rows(d, 'pnarrow', 'ident')));
    assert.deepEqual(await columns(d, 'pnarrow'), ['ident', 'v']);
  } finally {
    await pgo.stop();
  }
});
