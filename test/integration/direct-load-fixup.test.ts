// The direct load's fix-up holds a cursor WITH HOLD on a pooled connection. A fix-up that stops on
// the way (the instance lost the stream for a moment, the copier is stopping) must not leave that
// cursor open: the next fix-up, on the same pooled connection, declares it again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForFile } from '../helpers/file-cluster.js';
import { makeConfig, settle, testLogger } from '../helpers/replication.js';
import { fixUp, type DirectLoadContext } from '../../src/load/direct-load.js';
import { listTables, RegistryCatalog } from '../../src/capture/registry.js';

const bed = clusterForFile();

test('a fix-up that stops after declaring its cursor closes it, so the next one on the same connection runs', async () => {
  const [s, d] = await Promise.all([bed.cluster.createDatabase('src'), bed.cluster.createDatabase('dst')]);
  const admin = bed.pool(s);
  // Two connections (the cursor's and one for each batch): a pool hands out the connection released
  // last, so the second fix-up declares its cursor on the connection the first one used.
  const single = bed.pool(s, 2);
  await admin.query(`create table items (id int primary key, v text)`);
  await admin.query(`insert into items select g, 'v' || g from generate_series(1, 2500) g`);
  await settle(makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.items' }), admin);

  // Changes the snapshot does not see: 2,500 keys, three batches of the fix-up.
  const snapshot = (await admin.query<{ s: string }>(`select pg_current_snapshot()::text as s`)).rows[0].s;
  await admin.query(`update items set v = v || '+'`);
  const [table] = await listTables(admin, 'pg2crate');
  const info = await new RegistryCatalog(admin, 'pg2crate').describe(table.id);

  let leader = false;
  const ctx = {
    pool: single, schema: 'pg2crate', stream: 'main', chunkRows: 1000, pollMs: 50, logger: testLogger(),
    signal: new AbortController().signal, isLeader: () => leader, keyTypes: ['integer'], rowsEstimate: null,
    upperKeyOf: async () => null, applied: async () => true,
    deps: undefined as unknown as DirectLoadContext['deps'],
  } satisfies DirectLoadContext;
  const events = async () => Number((await admin.query(`select count(*) as n from pg2crate.outbox`)).rows[0].n);
  const before = await events();

  // Not the leader: the fix-up declares its cursor, sees it should stop, and returns.
  assert.equal(await fixUp(ctx, table, info, snapshot), false);
  assert.equal(await events(), before, 'a stopped fix-up sent nothing');
  const cursors = await single.query(`select count(*)::int as n from pg_cursors`);
  assert.equal(cursors.rows[0].n, 0, 'the stopped fix-up left its cursor open on the pooled connection');

  leader = true;
  const xid = await fixUp(ctx, table, info, snapshot);
  assert.equal(typeof xid, 'string', 'the second fix-up ran to the end');
  assert.equal(await events(), before + 2500, 'the fix-up sent every changed key once more');
});
