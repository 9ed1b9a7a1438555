// The slot's confirmed position never passes a change the target has not got, across restarts.
//
// A keepalive's WAL end may be acknowledged only once everything its stream sent before it is
// applied. The source used to remember the newest WAL end across a restart of the stream: a page
// failed (target away), the stream restarted from the slot's confirmed position, and the first
// empty page of the new stream, read before the server had sent anything again, acknowledged the
// old WAL end, past the transaction that had failed. The next failure then started the stream
// after it, and its rows were gone. A 60-minute soak with the target's connections reset for 27 s
// lost 112,653 rows that way.
//
// The test drives the source as the drainer does, with a "sink" that fails: it reads a large
// transaction, waits for the walsender's keepalive (sent once it has caught up and the client has
// not confirmed what it sent), then drops the stream without confirming. The restarted stream's
// first page is read and confirmed as the drainer would, and the stream is restarted again: the
// transaction must come a third time, whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgoutputSource } from '../../src/source/pgoutput/pgoutput-source.js';
import { sourceConnection } from '../../src/runner.js';
import type { Page } from '../../src/source/change-source.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { makeConfig, testLogger } from '../helpers/replication.js';
import { switchCapture } from '../helpers/switch-writers.js';

const file = clusterForFile();
const ROWS = 50_000;

test('a keepalive seen before a failed page is not acknowledged by the restarted stream', async () => {
  const { src, env } = await file.settled(`create table public.t (id integer primary key, v text)`, { PG2CRATE_TABLES: 'public.t', PG2CRATE_SLOT: 'ack_slot', PG2CRATE_RETENTION_CRON: 'off' });
  const config = makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' });
  await switchCapture(config, testLogger(), 'pgoutput');
  const slotAt = async () => (await src.query(`select confirmed_flush_lsn::text as at from pg_replication_slots where slot_name = 'ack_slot'`)).rows[0].at as string;
  await src.query(`insert into t select i, 'row ' || i from generate_series(1, ${ROWS}) i`);
  const commitEnd = (await src.query(`select pg_current_wal_insert_lsn()::text as at`)).rows[0].at as string;

  const source = new PgoutputSource({
    connection: sourceConnection(config), schema: 'pg2crate', stream: 'main', slot: 'ack_slot', publication: config.publicationName,
    standbyRetryMs: 100, pageSize: ROWS * 2, slotWarnBytes: 1e12, logger: testLogger(),
  });
  file.onClose(() => source.close());
  const ac = new AbortController();
  /** Reads pages until the transaction is complete; confirms them only if `apply` says so. */
  const readAll = async (apply: boolean): Promise<number> => {
    let n = 0;
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      const page: Page = await source.readPage(ROWS * 2);
      n += page.changes.length;
      if (apply) await source.confirm(page);
      if (n >= ROWS && page.windowDone) return n;
      if (page.changes.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    return n;
  };

  // First stream: the whole transaction arrives, the walsender catches up and sends a keepalive,
  // and the page fails.
  await source.acquire(ac.signal);
  assert.equal(await readAll(false), ROWS, 'the first stream did not deliver the transaction');
  await new Promise((r) => setTimeout(r, 1500));
  await source.reset();
  const before = await slotAt();

  // Second stream: the drainer's first read comes before the server sends anything again, and an
  // empty page is confirmed. Then this stream fails too.
  await source.acquire(ac.signal);
  const first = await source.readPage(ROWS * 2);
  await source.confirm(first);
  await new Promise((r) => setTimeout(r, 500));
  await source.reset();
  const after = await slotAt();
  assert.ok(lsn(after) < lsn(commitEnd), `the slot was confirmed to ${after} (from ${before}), past the unapplied transaction ending at ${commitEnd}`);

  // Third stream: the transaction comes again, whole, and is applied this time.
  await source.acquire(ac.signal);
  assert.equal(await readAll(true), ROWS, 'the third stream did not deliver the transaction again: its rows would be lost');
  await source.reset();
});

function lsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}
