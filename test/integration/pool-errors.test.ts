// A connection that breaks while a pool client is checked out, between two queries, must not end
// the process: pg-pool listens for errors only on idle clients. Found by the soak, where a
// replicator died of an unhandled 'error' event when its target reset connections.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { createPool } from '../../src/core/pg-pool.js';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { assertNoLeaks, pool, testLogger, waitFor } from '../helpers/replication.js';

let cluster: Cluster;
let admin: pg.Pool;
let url: string;

before(async () => {
  cluster = await startCluster();
  url = await cluster.createDatabase('pools');
  admin = pool(url);
});

after(async () => {
  await admin?.end();
  await cluster?.stop();
  await assertNoLeaks();
});

test('a checked-out client whose connection is cut between two queries fails its next query and the process lives on', async () => {
  const p = createPool({ connectionString: url, max: 1 }, testLogger('fatal'), 'test');
  try {
    const c = await p.connect();
    const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0].pid;
    // No listener of the test's own: without the pool's, the 'error' event would end this process.
    await admin.query('select pg_terminate_backend($1)', [pid]);
    await waitFor('the backend to be gone', async () => (await admin.query('select 1 from pg_stat_activity where pid = $1', [pid])).rows.length === 0, 10_000);
    await new Promise((r) => setTimeout(r, 300));
    await assert.rejects(c.query('select 1'));
    c.release(true);
    // The pool hands out a working connection again.
    assert.equal((await p.query<{ one: number }>('select 1 as one')).rows[0].one, 1);
  } finally {
    await p.end();
  }
});
