// The drainer begins a page beside the one CrateDB is still writing when the two share no key
// (drainer.ts, "Overlap"; CrateSink.applier). On a real CrateDB: pages of new keys go two at a time,
// pages that update keys of the page before wait for it, and CrateDB ends equal to the source with
// the last change of every key. (test/integration/overlapped-pages.test.ts checks the failures and
// the stop with pages in flight.)
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { as, assertSameAsSource, skipWithoutCrate, sourceAndCrate } from '../helpers/cratedb.js';
import { doubling, inserts, PAGE, paged, sharingPages, watcher } from '../helpers/ledger.js';
import { makeConfig, settle, startReplicator, testLogger, waitCaughtUp, type Running } from '../helpers/replication.js';
import { recorder } from '../helpers/sinks.js';

describe('pages written beside each other into a real CrateDB', { skip: skipWithoutCrate }, () => {
  let rep: Running | undefined;
  const suite = sourceAndCrate('ovl', () => [rep]);

  test('pages of new keys overlap, pages that share a key wait, and CrateDB ends with the last change of every key', async () => {
    const { src, srcUrl, crate, schema } = suite;
    await src.query(`create table public.ledger (id integer primary key, amount bigint not null, memo text)`);
    const config = makeConfig({
      DATABASE_URL: srcUrl, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: schema,
      PG2CRATE_TABLES: 'public.ledger', PG2CRATE_PAGE_SIZE: String(PAGE),
    });
    await settle(config, src);
    // New keys first (pages that may overlap), then amounts doubled over and over (pages that
    // share keys with the one before them).
    const pageOf = await paged(src, async (db) => {
      await inserts(500, 5001)(db);
      await doubling(db, true);
    }, 12);
    const w = watcher(pageOf, src);
    const keys = new Map<number, Set<string>>();
    // The real sink's applier, recorded: nothing slows a page down.
    const rec = recorder({
      before(call, batches) {
        const f = w.begin(call, batches);
        keys.set(f.page, f.keys);
      },
      after: (call) => w.end(call),
    });
    rep = await startReplicator(config, testLogger(), { wrapSink: rec.wrapSink });
    await waitCaughtUp(src);
    await rep.stop();
    assert.ok(rec.sink.applier, 'the CrateDB sink offers an applier');
    assert.deepEqual(w.breaches, []);
    assert.equal(w.most, 2, 'two pages at most in flight, and two at some point');
    assert.ok(w.overlapped.length >= 3, `pages of new keys began beside the one before (${w.overlapped.length} did)`);
    assert.ok(sharingPages(keys).length >= 3, 'and pages that share keys with the one before were written');
    const rows = await assertSameAsSource(src, 'public.ledger', crate, schema, 'ledger', { pg: 't.id', crate: 'id' }, [
      { name: 'amount', pg: 't.amount', crate: 'amount', norm: as.number },
      { name: 'memo', pg: 't.memo', crate: 'memo', norm: as.text },
    ]);
    assert.ok(rows > 500, `compared ${rows} rows`);
  });
});
