// A page read ahead may be the one that finds its table's key changed in the registry (a key column
// renamed, the table captured again: Page.rekeyed); the source's key cache follows at once. When the
// page before it fails, the read-ahead is dropped and both are read again from the checkpoint: the
// page read again no longer says so. The drainer must still describe the table again before applying
// it, so that a delete written under the new key name is parked (the target keeps the old key), not
// applied as a delete that matches nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForFile } from '../helpers/file-cluster.js';
import { lettersOf } from '../helpers/key-rename.js';
import { makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { recorder } from '../helpers/sinks.js';
import { watchKeys } from '../../src/ops/key-watch.js';

const bed = clusterForFile();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a delete under a renamed key, in a page read ahead and dropped when the page before it failed, is parked when read again, not applied under the old key', async () => {
  const { src, dst, env } = await bed.settled(
    `create table kr (id int primary key, v text); insert into kr select g, 'row ' || g from generate_series(1, 20) g`,
    // the watch is run by the test, between the writes
    { PG2CRATE_TABLES: 'public.kr', PG2CRATE_PAGE_SIZE: '10', PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_PARTITION_WATCH_MS: '3600000' },
  );
  let gate: Promise<void> | null = null;
  let release!: () => void;
  let held = false;
  let failing = false;
  let failed = false;
  const rec = recorder({
    async before(call) {
      if (gate && !held) {
        held = true;
        await gate;
        return;
      }
      if (failing && call.ids.length === 10) {
        failing = false;
        // the next page (the delete) is read ahead meanwhile
        await sleep(1500);
        failed = true;
        throw Object.assign(new Error('connection reset while the page before the rekeyed one was written'), { code: 'ECONNRESET' });
      }
    },
  });
  const rep = await startReplicator(makeConfig(env), testLogger(), { wrapSink: rec.wrapSink });
  try {
    // the drainer knows the table, and the source its key, under the old name
    await src.query(`update kr set v = 'known' where id = 20`);
    await waitCaughtUp(src);
    // hold a page, so that what follows lies in one window: ten updates under the old key (a full
    // page), the rename followed by the watch, then a delete under the new key name (the next page)
    gate = new Promise((r) => { release = r; });
    await src.query(`update kr set v = 'held' where id = 19`);
    await waitFor('a page to be held', () => held, 10_000, 10);
    await src.query(`update kr set v = 'before the rename' where id <= 10`);
    await src.query(`alter table kr rename column id to ident`);
    assert.equal(await watchKeys(src, { schema: 'pg2crate', logger: testLogger() }), 1);
    await src.query(`delete from kr where ident = 15`);
    failing = true;
    release();
    await waitFor('the page before the delete to fail', () => failed, 30_000, 10);
    await waitCaughtUp(src);
  } finally {
    await rep.stop();
  }
  assert.deepEqual((await dst.query(`select count(*)::int as n from kr where id = 15`)).rows[0].n, 1, 'the target keeps the old key: nothing deletes row 15 there');
  const letters = await lettersOf(rep.runner, 'public.kr');
  const deletes = letters.filter((l) => l.op === 'D');
  assert.equal(deletes.length, 1, `the delete under the new key name is parked (letters: ${JSON.stringify(letters.map((l) => [l.op, l.error.slice(0, 80)]))})`);
  assert.match(deletes[0].error, /keyed by \(id\) but the changes of public\.kr are keyed by \(ident\)/);
});
