// A column added with a default gives every existing row a value without any trigger firing or a
// WAL change per row; the table is copied again so the target has those values too. Found by the
// soak: a replicator restarted between the ALTER TABLE and the first row carrying the column never
// noticed the column was new, and the target kept NULL in every older row.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { Runner } from '../../src/runner.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { assertSameRows, initialLoadsDone, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { switchCapture } from '../../src/commands/switch-capture.js';
import { needsServer } from '../helpers/server-version.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;

before(async () => {
  ({ src, dst, env } = await bed.settled(`
    create table public.docs (id integer primary key, v text not null);
    create table public.notes (id integer primary key, v text not null);
    insert into public.docs select g, 'doc ' || g from generate_series(1, 200) g;
    insert into public.notes select g, 'note ' || g from generate_series(1, 200) g;`,
  { PG2CRATE_TABLES: 'public.docs, public.notes', PG2CRATE_SLOT: 'columns' }));
});

test('a column added with a default while the replicator is down reaches every older row in the target', async () => {
  await src.query(`alter table public.docs add column meta jsonb not null default '{"d": [1, "x"]}'`);
  await src.query(`alter table public.docs add column seen timestamptz default now()`);
  await src.query(`insert into public.docs (id, v) values (1000, 'carries the new columns')`);
  const rep = await startReplicator(makeConfig(env));
  try {
    await waitFor('the copy of the table', () => initialLoadsDone(src));
    await waitCaughtUp(src);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.docs', 'public.docs', ['id']), 201);
});

test('older changes still waiting in the stream when the column is added do not undo the copy', async () => {
  // A backlog of changes written before the column existed, one transaction each, in small pages:
  // the replicator reads the table's columns (and copies it again) long before it has applied them.
  for (let i = 1; i <= 600; i++) await src.query(`update public.docs set v = 'old ' || $1 where id = $1`, [i % 200 + 1]);
  await src.query(`alter table public.docs add column d integer default 7`);
  await src.query(`update public.docs set v = 'after' where id = 1`);
  const rep = await startReplicator(makeConfig({ ...env, PG2CRATE_PAGE_SIZE: '10' }));
  try {
    await waitFor('the copy of the table', () => initialLoadsDone(src), 120_000);
    await waitCaughtUp(src, 'pg2crate', 120_000);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.docs', 'public.docs', ['id']), 201);
});

test('pgoutput: a column added with a default reaches every older row in the target', { skip: needsServer(14, 'pgoutput mode') }, async () => {
  const runner = new Runner(makeConfig(env), testLogger());
  try {
    assert.equal(await switchCapture(runner, 'pgoutput'), 'switched');
  } finally {
    await runner.close();
  }
  const rep = await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' }));
  try {
    const t0 = (await src.query<{ t: Date }>(`select clock_timestamp() as t`)).rows[0].t;
    await src.query(`alter table public.notes add column rank integer not null default 7`);
    await src.query(`insert into public.notes (id, v) values (1000, 'carries the new column')`);
    await waitFor('the copy of the table', async () =>
      (await src.query(`select 1 from pg2crate.backfills b join pg2crate.tables t on t.id = b.table_id where t.source_table = 'notes' and b.status = 'done' and b.finished_at > $1`, [t0])).rows.length > 0, 60_000);
    await waitSlotCaughtUp(src, 'columns');
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.notes', 'public.notes', ['id']), 201);
});
