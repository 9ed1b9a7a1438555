// Wake-ups (design §3): NOTIFY is a hint, polling the backstop, every reconnect drains, and the
// triggers notify only while the drainer says it is idle.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { assertNoLeaks, makeConfig, pool, settle, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { recorder } from '../helpers/sinks.js';

let cluster: Cluster;
let srcUrl: string;
let dstUrl: string;
/** the superuser's view of the source, for terminating backends and setting limits */
let admin: pg.Pool;
/** the application's connection: a role without superuser, so that its connection limit applies */
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running | undefined;
let nextId = 1;

before(async () => {
  cluster = await startCluster();
  const adminUrl = await cluster.createDatabase('src');
  dstUrl = await cluster.createDatabase('dst');
  admin = pool(adminUrl);
  const db = new URL(adminUrl).pathname.slice(1);
  await admin.query(`create role app login; grant create on database "${db}" to app; grant create on schema public to app`);
  const u = new URL(adminUrl);
  u.username = 'app';
  srcUrl = u.toString();
  src = pool(srcUrl);
  dst = pool(dstUrl);
  await src.query(`create table public.pings (id integer primary key, note text)`);
  await settle(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.pings' }), src);
});

after(async () => {
  await rep?.stop();
  await admin?.query(`alter role app connection limit -1`).catch(() => {});
  await src?.end();
  await admin?.end();
  await dst?.end();
  await cluster?.stop();
  await assertNoLeaks();
});

function start(pollMs: number, opts: Parameters<typeof startReplicator>[2] = {}): Promise<Running> {
  return startReplicator(makeConfig({
    DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.pings', PG2CRATE_POLL_INTERVAL_MS: String(pollMs), PG2CRATE_PAGE_SIZE: '10',
  }), undefined, opts);
}

async function listenerPids(): Promise<number[]> {
  const r = await admin.query<{ pid: number }>(`select pid from pg_stat_activity where application_name = 'pg2crate listener'`);
  return r.rows.map((x) => x.pid);
}

/** Waits for a listener session that has issued its LISTEN (after a reconnect, a new pid). */
async function listening(notPid?: number): Promise<number> {
  return waitFor('the listener to be connected and listening', async () => {
    const r = await admin.query<{ pid: number }>(
      `select pid from pg_stat_activity where application_name = 'pg2crate listener' and pid is distinct from $1
          and (query ilike 'LISTEN%' or query ilike 'SELECT pg_backend_pid()%')`,
      [notPid ?? null],
    );
    return r.rows[0]?.pid;
  }, 30_000);
}

async function drainerIdle(): Promise<boolean> {
  const r = await src.query<{ idle: boolean }>('select idle from pg2crate.state');
  return r.rows[0].idle && rep?.runner.drainer?.stats.state === 'idle';
}

async function inTarget(id: number): Promise<boolean> {
  return (await dst.query('select 1 from public.pings where id = $1', [id])).rows.length === 1;
}

/** Writes one row and returns how long it took to appear in the target. */
async function roundTrip(what: string, write?: () => Promise<number>): Promise<number> {
  const id = write ? await write() : nextId++;
  const t0 = Date.now();
  if (!write) await src.query('insert into pings values ($1, $2)', [id, what]);
  await waitFor(`${what} (row ${id}) in the target`, () => inTarget(id), 30_000, 20);
  return Date.now() - t0;
}

test('with the listener connection gone and unable to reconnect, polling still delivers changes', async () => {
  rep = await start(1500);
  const pid = await listening();
  // One change first, so that the replicator has every connection it needs before the limit.
  await roundTrip('a change before the listener is cut');
  await waitFor('the drainer to be idle', drainerIdle);

  // The role may keep the connections it has but open no new one; then the listener's session ends.
  const { rows } = await admin.query<{ n: number }>(`select count(*)::int as n from pg_stat_activity where usename = 'app'`);
  await admin.query(`alter role app connection limit ${rows[0].n - 1}`);
  try {
    await admin.query('select pg_terminate_backend($1)', [pid]);
    await waitFor('the listener session to end', async () => (await listenerPids()).length === 0);
    await roundTrip('a change written while nobody listens');
    await roundTrip('a second one');
    assert.deepEqual(await listenerPids(), [], 'the listener must have stayed away, or this did not test polling');
  } finally {
    await admin.query(`alter role app connection limit -1`);
  }
  await listening(pid);
  await rep.stop();
  rep = undefined;
});

test('changes written while the listener reconnects arrive at once, and later ones at wake-up speed again', async () => {
  // A poll interval so long that anything arriving within 3 s was woken up by a NOTIFY or a reconnect.
  rep = await start(20_000);
  const pid = await listening();
  await waitFor('the drainer to be idle', drainerIdle);
  const first = await roundTrip('a change before the listener is cut');
  assert.ok(first <= 3000, `a NOTIFY should deliver within 3 s, took ${first} ms`);

  // Cut the listener and write at once, while it waits to reconnect: that NOTIFY is lost, and only
  // the drain that every reconnect runs can bring the change before the next poll.
  await admin.query('select pg_terminate_backend($1)', [pid]);
  const lost = await roundTrip('a change whose NOTIFY is lost', async () => {
    const id = nextId++;
    await src.query('insert into pings values ($1, $2)', [id, 'during reconnect']);
    return id;
  });
  assert.ok(lost <= 3000, `the reconnect should drain within 3 s, took ${lost} ms`);
  const newPid = await listening(pid);
  assert.notEqual(newPid, pid);

  await waitFor('the drainer to be idle', drainerIdle);
  const again = await roundTrip('a change after the reconnect');
  assert.ok(again <= 3000, `after the reconnect a NOTIFY should deliver within 3 s again, took ${again} ms`);
  await rep.stop();
  rep = undefined;
  console.log(`wake-up round trips: ${first} ms before, ${lost} ms across the reconnect, ${again} ms after (poll interval 20 s)`);
});

test('no NOTIFY is sent while the drainer is busy, and one is sent when it is idle', async () => {
  // A slow target keeps the drainer busy with a backlog.
  let slow = true;
  const rec = recorder({ async before() { if (slow) await new Promise((r) => setTimeout(r, 150)); } });
  rep = await start(1000, { wrapSink: rec.wrapSink });
  await waitFor('the drainer to be idle', drainerIdle);

  const watcher = new pg.Client({ connectionString: srcUrl });
  await watcher.connect();
  let notifications = 0;
  watcher.on('notification', (n) => { if (n.channel === 'pg2crate_wakeup') notifications++; });
  await watcher.query('LISTEN "pg2crate_wakeup"');
  try {
    // The backlog: its commit notifies (the drainer is idle), which shows the watcher hears.
    const base = nextId;
    nextId += 400;
    await src.query(`insert into pings select g, 'backlog' from generate_series($1::int, $1::int + 399) g`, [base]);
    await waitFor('the backlog notification', () => notifications === 1);
    await waitFor('the drainer to be busy', async () => !(await src.query('select idle from pg2crate.state')).rows[0].idle);

    notifications = 0;
    for (let i = 0; i < 20; i++) await src.query('insert into pings values ($1, $2)', [nextId++, 'while busy']);
    assert.equal((await src.query('select idle from pg2crate.state')).rows[0].idle, false, 'the drainer must still be busy after the writes');
    assert.ok(!(await inTarget(base + 399)), 'the backlog must still be draining after the writes');

    slow = false;
    await waitCaughtUp(src);
    await waitFor('the drainer to be idle', drainerIdle);
    // A notification sent by a busy-time commit would have arrived long before the backlog drained.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(notifications, 0, 'writes while the drainer was busy sent NOTIFYs');

    await src.query('insert into pings values ($1, $2)', [nextId++, 'while idle']);
    await waitFor('a notification for a write while idle', () => notifications === 1);
    await waitCaughtUp(src);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(notifications, 1, 'one write while idle sends one notification');
  } finally {
    await watcher.end();
    await rep.stop();
    rep = undefined;
  }
});

test('a replicator stopped while its listener is reconnecting leaves no connection behind', { skip: process.env.TEST_DATABASE_URL ? 'needs its own cluster' : false }, async () => {
  rep = await start(1000);
  await listening();
  admin.on('error', () => {});
  src.on('error', () => {});
  dst.on('error', () => {});
  // The server goes away; while the listener retries, the replicator is stopped; then the server returns.
  const down = cluster.restart('fast', 3000);
  await new Promise((r) => setTimeout(r, 1000));
  await rep.stop();
  rep = undefined;
  await down;
  await new Promise((r) => setTimeout(r, 4000));
  const left = await admin.query(`select application_name from pg_stat_activity where application_name like 'pg2crate%'`);
  assert.deepEqual(left.rows, [], 'a stopped replicator reconnected afterwards');
});
