// Invariants 1 and 2 of the drainer: a transaction that commits out of id order, or stays open
// across many windows, is not lost; the target ends with the last committed change of each key.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertSameRows, makeConfig, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';

const bed = clusterForFile();
let srcUrl: string;
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running;
const clients: pg.Client[] = [];

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: srcUrl });
  await c.connect();
  clients.push(c);
  return c;
}

async function windows(): Promise<number> {
  const res = await src.query<{ windows: string }>(`select windows::text from pg2crate.checkpoint where stream = 'main'`);
  return Number(res.rows[0]?.windows ?? 0);
}

/** Waits until the drainer has completed `n` more windows than now. */
async function moreWindows(n: number): Promise<void> {
  const start = await windows();
  await waitFor(`${n} more windows`, async () => (await windows()) >= start + n);
}

async function targetValue(id: number): Promise<string | undefined> {
  const res = await dst.query<{ v: string }>('select v from public.accounts where id = $1', [id]);
  return res.rows[0]?.v;
}

/** The largest outbox id this session can see (its own uncommitted events included). */
async function maxId(c: pg.Client | pg.Pool): Promise<number> {
  const res = await c.query<{ m: string }>('select max(id)::text as m from pg2crate.outbox');
  return Number(res.rows[0].m);
}

before(async () => {
  let dstUrl: string;
  ({ srcUrl, dstUrl, src, dst } = await bed.databases());
  await src.query(`create table public.accounts (id integer primary key, v text not null, n integer not null default 0)`);
  // Small pages, so that a window spans several pages and a key's changes fall into different pages.
  rep = await startReplicator(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.accounts', PG2CRATE_PAGE_SIZE: '7' }));
});

bed.onClose(async () => {
  for (const c of clients) await c.end().catch(() => {});
  await rep?.stop();
});

test('a transaction that takes its outbox ids first but commits last is not lost', async () => {
  const a = await client();
  await a.query('begin');
  await a.query(`insert into accounts (id, v) select g, 'a' from generate_series(1, 20) g`);
  await a.query(`update accounts set v = 'a2' where id <= 10`);
  const aMax = await maxId(a);

  await src.query(`insert into accounts (id, v) values (100, 'b')`);
  const bId = await maxId(src);
  assert.ok(bId > aMax, `the later transaction's id ${bId} must be above the open one's ${aMax}, or this test proves nothing`);

  // A window holding B is applied (and completed) while A is still open.
  await waitFor('the later transaction in the target', async () => (await targetValue(100)) === 'b');
  await waitCaughtUp(src);
  await moreWindows(2);
  assert.equal(await targetValue(1), undefined, 'the open transaction must not be applied before it commits');

  await a.query('commit');
  await waitCaughtUp(src);
  assert.equal(await targetValue(1), 'a2');
  assert.equal(await targetValue(20), 'a');
  assert.equal(await assertSameRows(src, dst, 'public.accounts', 'public.accounts', ['id']), 21);
});

test('a transaction left open across several windows is applied after it commits', async () => {
  const a = await client();
  await a.query('begin');
  await a.query(`insert into accounts (id, v) select g, 'open' from generate_series(1000, 1030) g`);
  await a.query(`update accounts set n = n + 1 where id between 1 and 5`);
  const aMax = await maxId(a);

  // Windows pass with nothing else written: the drainer's own bookkeeping must not step over A's ids.
  await moreWindows(3);
  // Other transactions commit and are applied, several windows apart.
  for (let i = 0; i < 5; i++) {
    await src.query(`insert into accounts (id, v) values ($1, 'other')`, [2000 + i]);
    await src.query(`update accounts set v = 'other ' || $1 where id = 100`, [i]);
    await waitFor(`commit ${i} in the target`, async () => (await targetValue(2000 + i)) === 'other');
    await moreWindows(2);
  }
  assert.ok((await maxId(src)) > aMax);
  assert.equal(await targetValue(1000), undefined, 'the open transaction must not be applied before it commits');

  await a.query('commit');
  await waitCaughtUp(src);
  assert.equal(await targetValue(1000), 'open');
  assert.equal(await targetValue(1030), 'open');
  assert.equal(await assertSameRows(src, dst, 'public.accounts', 'public.accounts', ['id']), 21 + 31 + 5);
});

test('the target ends with the last committed change of each key, also when the writers overlapped', async () => {
  // Sequential: A changes k and commits, B changes k afterwards.
  await src.query(`update accounts set v = 'first' where id = 7`);
  await src.query(`update accounts set v = 'second' where id = 7`);

  // Overlapping: A updates keys 1..20 and stays open; B's update of the same keys waits on the row
  // locks, so its trigger (and its ids) come after A's commit.
  const a = await client();
  const b = await client();
  await a.query('begin');
  await a.query(`update accounts set v = 'A', n = n + 1 where id between 1 and 20`);
  await a.query(`delete from accounts where id = 2000`);
  await b.query('begin');
  const bUpdate = b.query(`update accounts set v = 'B', n = n * 10 where id between 1 and 20`);
  const bInsert = bUpdate.then(() => b.query(`insert into accounts (id, v) values (2000, 'B again')`));
  await waitFor('B to wait on A', async () => {
    const res = await src.query(`select 1 from pg_stat_activity where wait_event_type = 'Lock' and pid = $1`, [(b as unknown as { processID: number }).processID]);
    return res.rows.length > 0;
  });
  await a.query('commit');
  await bInsert;
  await b.query('commit');

  // And a key that moves: one transaction moves key 1001 to 3000, the next one reuses key 1001.
  await src.query(`update accounts set id = 3000 where id = 1001`);
  await src.query(`insert into accounts (id, v) values (1001, 'reused key')`);
  await src.query(`update accounts set v = 'moved and changed' where id = 3000`);

  await waitCaughtUp(src);
  assert.equal(await targetValue(7), 'B');
  assert.equal(await targetValue(20), 'B');
  assert.equal(await targetValue(2000), 'B again');
  assert.equal(await targetValue(1001), 'reused key');
  assert.equal(await targetValue(3000), 'moved and changed');
  assert.equal(await assertSameRows(src, dst, 'public.accounts', 'public.accounts', ['id']), 21 + 31 + 5 + 1);
});
