// With a sink that offers Sink.applier (CrateDB's), the drainer begins the next page while the
// current one is still written, when the two share no key (drainer.ts, "Overlap"). These tests give
// the Postgres sink an applier through the recorder, so that pages really overlap on a real target,
// and check what must not change: no two pages in flight hold the same key, the checkpoint never
// passes a page still being written, a failure on either side replays from the first page not
// confirmed, a stop finishes and confirms both, a catch-up (cron mode) overlaps too, and the target
// ends equal to the source.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertConverged, checkpointAfter, doubling, inserts, ledger, paged, sharingPages, sleep, watcher } from '../helpers/ledger.js';
import { caughtUp, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { catchUp } from '../../src/commands/catch-up.js';
import { Runner } from '../../src/runner.js';
import { recorder } from '../helpers/sinks.js';

const bed = clusterForFile();
const setup = () => ledger(bed);

/**
 * A recorder with an applier whose pages each stay in flight until the next one begins, or a second
 * passed (the first two pages, worked out in order while page 1 describes the table, and the last
 * one have none): whether pages overlap does not depend on how fast the machine reads them.
 */
function heldUntilNextBegins(w: ReturnType<typeof watcher>) {
  return recorder({
    overlap: true,
    async before(call, batches) {
      const f = w.begin(call, batches);
      await waitFor(`page ${f.page + 1} to begin`, () => w.inFlight.some((o) => o.page === f.page + 1), 1_000, 5).catch(() => {});
    },
    after: (call) => w.end(call),
  });
}

test('pages of distinct keys are written two at a time, confirmed one after the other, and the target equals the source', async () => {
  const { src, dst, config } = await setup();
  const pageOf = await paged(src, inserts(500), 8);
  const w = watcher(pageOf, src);
  const rec = heldUntilNextBegins(w);
  const running = await startReplicator(config, testLogger(), { wrapSink: rec.wrapSink });
  await waitCaughtUp(src);
  await running.stop();
  assert.deepEqual(w.breaches, []);
  assert.equal(w.most, 2, 'two pages at most in flight, and two at some point');
  const pages = rec.sink.calls.map((c) => pageOf(c.ids[0]));
  assert.deepEqual(pages, [...pages].sort((a, b) => a - b), 'pages begin in order');
  const last = Math.max(...pages);
  assert.ok(last >= 10, `ten pages at least (${last})`);
  for (let k = 3; k < last; k++) assert.ok(w.overlapped.some(([a, b]) => a === k && b === k + 1), `page ${k + 1} began beside page ${k} (${JSON.stringify(w.overlapped)})`);
  assert.ok(w.overlapped.every(([a, b]) => b === a + 1), 'only a page and the next one overlap');
  await assertConverged(src, dst);
});

test('a page that holds a key of the page in flight waits for it, so the later change of a key always lands last', async () => {
  const { src, dst, config } = await setup();
  const pageOf = await paged(src, (db) => doubling(db, true), 8);
  const w = watcher(pageOf, src);
  const keys = new Map<number, Set<string>>();
  const rec = recorder({
    overlap: true,
    async before(call, batches) {
      const f = w.begin(call, batches);
      keys.set(f.page, f.keys);
      // Odd pages are slow and even ones fast: a page that began beside the one before it with a
      // key in common would land first, and the older image would win.
      await sleep(f.page % 2 === 1 ? 120 : 5);
    },
    after: (call) => w.end(call),
  });
  const running = await startReplicator(config, testLogger(), { wrapSink: rec.wrapSink });
  await waitCaughtUp(src);
  await running.stop();
  assert.deepEqual(w.breaches, []);
  const sharing = sharingPages(keys);
  assert.ok(sharing.length >= 3, `the workload must have pages that share keys with the page before (${sharing.length} do)`);
  assert.ok(w.overlapped.length >= 1, 'and pages that do not, which overlap');
  await assertConverged(src, dst);
});

for (const failing of ['current', 'next'] as const) {
  test(`when the ${failing === 'current' ? 'page in flight fails while the next one is written beside it' : 'page begun beside the one in flight fails'}, both settle and the first page not confirmed is applied again first`, async () => {
    const { src, dst, config } = await setup();
    const pageOf = await paged(src, inserts(500), 8);
    const w = watcher(pageOf, src);
    const retryable = () => Object.assign(new Error(`connection reset in the middle of page ${failing === 'current' ? 4 : 5}`), { code: 'ECONNRESET' });
    let failed = false;
    const rec = recorder({
      overlap: true,
      async before(call, batches) {
        const f = w.begin(call, batches);
        await sleep(30);
        if (failed) return;
        if (f.page === 4) {
          // page 5 begins beside page 4
          await waitFor('page 5 to begin', () => w.inFlight.some((o) => o.page === 5), 10_000, 5);
          if (failing === 'current') {
            failed = true;
            w.drop(call);
            throw retryable();
          }
          // page 4 is still in flight when page 5 fails, and lands after it
          await waitFor('page 5 to fail', () => failed, 10_000, 5);
        }
        if (f.page === 5 && failing === 'next') {
          failed = true;
          w.drop(call);
          throw retryable();
        }
      },
      after: (call) => w.end(call),
    });
    const running = await startReplicator(config, testLogger(), { wrapSink: rec.wrapSink });
    await waitCaughtUp(src);
    await running.stop();
    assert.ok(failed);
    assert.deepEqual(w.breaches, []);
    assert.deepEqual(w.overlapped.filter(([a, b]) => b !== a + 1), [], 'nothing of the failed attempt is in flight when its pages begin again');
    const pages = rec.sink.calls.map((c) => pageOf(c.ids[0]));
    const again = failing === 'current' ? 4 : 5;
    const i = pages.indexOf(again, pages.indexOf(again) + 1);
    assert.ok(i > 0, `page ${again} is applied again (${pages.join(',')})`);
    assert.deepEqual(pages.slice(0, 5), [1, 2, 3, 4, 5], 'pages 1 to 5 began once before the failure');
    assert.deepEqual(pages.slice(5, i), [], `nothing began between the failure and page ${again} again`);
    assert.deepEqual(pages.slice(i), [...pages.slice(i)].sort((a, b) => a - b), 'the pages after it follow in order');
    await assertConverged(src, dst);
  });
}

test('a stop while two pages are in flight finishes both and confirms both', async () => {
  const { src, dst, config } = await setup();
  const pageOf = await paged(src, inserts(500), 8);
  const w = watcher(pageOf, src);
  let stopping: Promise<void> | null = null;
  /** the drainer's state right after the stop was called (nothing awaited in between) */
  let stateAtStop: string | undefined;
  let running!: Awaited<ReturnType<typeof startReplicator>>;
  const rec = recorder({
    overlap: true,
    async before(call, batches) {
      const f = w.begin(call, batches);
      // (page 2 is worked out in order: page 1 described the table, so page 3 is the first that can
      // have a page beside it)
      if (f.page === 3) await waitFor('page 4 to begin', () => w.inFlight.some((o) => o.page === 4), 10_000, 5);
      if (f.page === 4) {
        // both in flight: stop now, and keep page 4 writing past the stop's start
        stopping = running.stop();
        stateAtStop = running.runner.drainer?.stats.state;
        await sleep(100);
      }
    },
    async after(call) {
      // Page 3 ends as soon as the stop has begun. The replicator tells the drainer before it stops
      // its other parts (the listener, the watches, the loaders): told after them, it let page 5
      // begin beside page 4 when page 3 ended in between.
      if (pageOf(call.ids[0]) === 3) await waitFor('the stop to begin', () => stopping !== null, 10_000, 1);
      await w.end(call);
    },
  });
  running = await startReplicator(config, testLogger(), { wrapSink: rec.wrapSink });
  // (a promise, so not handed to waitFor, which would wait for its value)
  await waitFor('the stop', () => stopping !== null, 30_000, 5);
  await stopping;
  assert.equal(stateAtStop, 'stopping', 'the stop tells the drainer at once, before the replicator stops its other parts');
  assert.deepEqual(w.breaches, []);
  const calls = rec.sink.calls;
  assert.deepEqual(calls.map((c) => pageOf(c.ids[0])), [1, 2, 3, 4], 'no page begins after the stop');
  assert.equal(await checkpointAfter(src), Math.max(...calls[3].ids), 'the checkpoint stands at the end of page 4');

  const second = recorder();
  const again = await startReplicator(config, testLogger(), { wrapSink: second.wrapSink });
  await waitCaughtUp(src);
  await again.stop();
  assert.equal(pageOf(second.sink.calls[0].ids[0]), 5, 'the next start begins at page 5');
  await assertConverged(src, dst);
});

test('a catch-up (cron mode) reads ahead and overlaps pages too, and returns once everything committed before it is applied', async () => {
  const { src, dst, config } = await setup();
  const pageOf = await paged(src, inserts(500), 8);
  const w = watcher(pageOf, src);
  const rec = heldUntilNextBegins(w);
  const runner = new Runner(config, testLogger(), { wrapSink: rec.wrapSink });
  try {
    await catchUp(runner);
  } finally {
    await runner.close();
  }
  assert.deepEqual(w.breaches, []);
  assert.equal(w.most, 2, 'two pages at most in flight, and two at some point');
  assert.ok(w.overlapped.length >= 5, `pages began beside the one before (${w.overlapped.length} did)`);
  assert.ok(await caughtUp(src), 'everything committed before the catch-up lies in a completed window');
  await assertConverged(src, dst);
});
