// The lower id bound of the drainer's windows (outbox.ts, outbox-bounds.ts): how it was once wrong,
// and that no committed event is lost through it. The outbox source is driven directly here, page by
// page, so that a window can be opened and closed at exactly the moment a test needs.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import type { Change } from '../../src/core/change.js';
import type { Page } from '../../src/source/change-source.js';
import { writeLoadTruncate } from '../../src/load/direct-load.js';
import { OutboxSource } from '../../src/source/outbox.js';
import { readOutboxSequence } from '../../src/capture/outbox-bounds.js';
import { RegistryCatalog, removeTable } from '../../src/capture/registry.js';
import { readStatus } from '../../src/ops/status.js';
import { streamLockText } from '../../src/capture/names.js';
import { resendRows } from '../../src/resend.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { makeConfig, settle, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';

const bed = clusterForFile();
let srcUrl: string;
let dstUrl: string;
let src: pg.Pool;
const clients: pg.Client[] = [];

async function client(options?: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: srcUrl, ...(options ? { options } : {}) });
  await c.connect();
  clients.push(c);
  return c;
}

/** The outbox source of stream main, holding the stream. */
async function holdStream(): Promise<OutboxSource> {
  const source = new OutboxSource({ connection: { connectionString: srcUrl }, schema: 'pg2crate', stream: 'main', standbyRetryMs: 100, logger: testLogger('fatal') });
  await source.acquire(new AbortController().signal, false);
  return source;
}

/** Reads and confirms pages until `windows` windows are complete; returns every change read. */
async function drainWindows(source: OutboxSource, windows = 1): Promise<Change[]> {
  const out: Change[] = [];
  for (let done = 0; done < windows;) {
    const page: Page = await source.readPage(50);
    out.push(...page.changes);
    await source.confirm(page);
    if (page.windowDone) done++;
  }
  return out;
}

const insertOf = (id: number) => (c: Change) => c.op === 'I' && String(c.row?.id) === String(id);

before(async () => {
  ({ srcUrl, dstUrl, src } = await bed.databases());
  await src.query(`create table public.accounts (id integer primary key, v text not null)`);
  await src.query(`create table public.gone (id integer primary key, v text not null)`);
  await settle(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.accounts,public.gone' }), src);
});

bed.onClose(async () => {
  for (const c of clients) await c.end().catch(() => {});
});

test('the outbox sequence as read for a lower bound never goes backwards while other sessions call nextval()', async () => {
  // Four sessions draw ids as fast as they can; every 32nd nextval() WAL-logs ahead, and a read of
  // the sequence without its lock can then see a value up to 31 ahead of the truth.
  const hammers = await Promise.all([1, 2, 3, 4].map(() => client()));
  let stop = false;
  const loops = hammers.map(async (c) => {
    while (!stop) await c.query(`select nextval('pg2crate.outbox_id_seq') from generate_series(1, 64)`);
  });
  const reader = await client();
  let last = 0n;
  let reads = 0;
  const backwards: string[] = [];
  const until = Date.now() + 4000;
  try {
    while (Date.now() < until) {
      const v = BigInt(await readOutboxSequence(reader, 'pg2crate'));
      if (v < last) backwards.push(`${last} → ${v}`);
      last = v > last ? v : last;
      reads++;
    }
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  assert.ok(reads > 1000, `only ${reads} reads: too few for the test to mean anything`);
  assert.deepEqual(backwards.slice(0, 10), [], `${backwards.length} of ${reads} reads went backwards`);
});

test('a window mark whose sequence read is too high does not skip an event: the guard keeps the old bound and says so', async () => {
  const source = await holdStream();
  try {
    await drainWindows(source, 2);
    // A mark that claims a sequence value far past an event of a transaction with a later xid: the
    // shape of the lock-free read's error, made large and certain.
    const marker = await client();
    await marker.query('begin');
    const markXid = (await marker.query<{ x: string }>('select pg_current_xact_id()::text as x')).rows[0].x;
    const writer = await client();
    await writer.query('begin');
    await writer.query(`insert into public.accounts values (1, 'written under a bad mark')`);
    const writerId = (await writer.query<{ m: string }>('select max(id)::text as m from pg2crate.outbox')).rows[0].m;
    await marker.query(`insert into pg2crate.window_marks (stream, seq_before, xid_after) values ('main', $1::int8 + 50, $2::xid8)`, [writerId, markXid]);
    await marker.query('commit');

    // A window opens while the writer runs; the writer commits before the window closes.
    const first = await source.readPage(50);
    await writer.query('commit');
    const seen = [...first.changes];
    await source.confirm(first);
    if (!first.windowDone) seen.push(...(await drainWindows(source, 1)));
    assert.ok(!seen.some(insertOf(1)), 'the writer was still open when the window was taken');

    const later = await drainWindows(source, 2);
    assert.equal(later.filter(insertOf(1)).length, 1, 'the event under the bad mark must be read by a later window');
    const status = await readStatus(src, 'pg2crate', 'main', streamLockText('pg2crate', 'main'));
    assert.ok(status.boundViolations >= 1, 'the guard must count what it caught');
    assert.equal(status.strandedEvents, 0);
  } finally {
    await source.close();
  }
});

test('writers whose first write is the outbox insert (a repair delete, a load\'s truncate) take their xid before their id', async () => {
  // An id default that pauses after nextval() for sessions that ask: it stretches the moment between
  // the id and the xid that the insert's defaults would otherwise take one after the other.
  await src.query(`
    create function public.slow_outbox_id() returns bigint language plpgsql as $$
    declare v bigint := nextval('pg2crate.outbox_id_seq');
    begin
      if current_setting('pg2crate_test.slow', true) = 'on' then perform pg_sleep(1.5); end if;
      return v;
    end $$;
    alter table pg2crate.outbox alter column id set default public.slow_outbox_id()`);
  const slow = new pg.Pool({ connectionString: srcUrl, max: 2, options: '-c pg2crate_test.slow=on' });
  const source = await holdStream();
  try {
    const table = await new RegistryCatalog(src, 'pg2crate').describe(1);
    assert.equal(table.sourceTable, 'accounts');
    await drainWindows(source, 2);
    const writers: [string, () => Promise<unknown>, (c: Change) => boolean][] = [
      ['a repair delete', () => resendRows(slow, 'pg2crate', table, [], [{ json: '{"id": 42}' }]), (c) => c.op === 'D' && String(c.row?.id) === '42'],
      ['a load\'s truncate', () => writeLoadTruncate(slow, 'pg2crate', table.id), (c) => c.op === 'T'],
    ];
    for (const [what, write, isIt] of writers) {
      const written = write();
      // The writer has its id and sleeps; a window is opened and closed meanwhile.
      await waitFor(`${what} to pause after drawing its id`, async () => {
        const res = await src.query(`select 1 from pg_stat_activity where wait_event = 'PgSleep' and query like '%outbox%'`);
        return res.rows.length > 0;
      }, 10_000, 20);
      const during = await drainWindows(source, 1);
      assert.ok(!during.some(isIt), `${what} must not be read before it commits`);
      await written;
      const afterwards = await drainWindows(source, 2);
      assert.equal(afterwards.filter(isIt).length, 1, `${what}'s event must be read once it committed`);
    }
  } finally {
    await source.close();
    await slow.end();
    await src.query(`alter table pg2crate.outbox alter column id set default nextval('pg2crate.outbox_id_seq')`);
  }
});

test('changes of a table removed while they were pending are each parked as a dead letter, none coalesced away', async () => {
  await src.query(`insert into public.gone select g, 'pending ' || g from generate_series(1, 5) g`);
  const id = (await src.query<{ id: number }>(`select id from pg2crate.tables where source_table = 'gone'`)).rows[0].id;
  assert.equal(await removeTable(src, 'pg2crate', { schema: 'public', table: 'gone' }), true);
  const rep = await startReplicator(makeConfig({ DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.accounts' }));
  try {
    await waitCaughtUp(src);
  } finally {
    await rep.stop();
  }
  const parked = await src.query<{ n: number }>(`select count(*)::int as n from pg2crate.dead_letters where table_id = $1`, [id]);
  assert.equal(parked.rows[0].n, 5, 'each of the five pending changes must be parked');
});
