// The drainer works out the next page (coalescing, the sink's parameter rows: Sink.stage) while the
// current one is written. That work is only ever a head start: the next page is applied, and its
// checkpoint saved, after the current one's, and a failure on either side loses and reorders
// nothing (invariants 1-3 of DESIGN.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertConverged, checkpointAfter, doubling, ledger, paged } from '../helpers/ledger.js';
import { startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { recorder, SimulatedCrash } from '../helpers/sinks.js';
import type { SinkTableBatch } from '../../src/sink/sink.js';

const bed = clusterForFile();
const setup = () => ledger(bed);
const pagedWorkload = (src: pg.Pool) => paged(src, (db) => doubling(db), 6);

const firstId = (batches: SinkTableBatch[]) => Math.min(...batches.flatMap((b) => [...b.deletes, ...b.upserts].map((c) => c.id)));

const marked = (batches: SinkTableBatch[]) => batches.length > 0 && batches.every((b) => b.staged === 'test');

test('the next page is staged while one is written; when staging it fails, it is worked out in order, and its checkpoint waits for its own apply', async () => {
  const { src, dst, config } = await setup();
  const pageOf = await pagedWorkload(src);
  const stagedPages: number[] = [];
  const applied = new Map<number, boolean>();
  const crashing = recorder({
    stage(batches) {
      const page = pageOf(firstId(batches));
      stagedPages.push(page);
      if (page === 4) throw new Error('staging page 4 broke');
      for (const b of batches) b.staged = 'test';
    },
    async before(call, batches) {
      const page = pageOf(call.ids[0]);
      applied.set(page, marked(batches));
      // page 3 is held until page 4 was read and its staging tried: the two overlap
      if (page === 3) await waitFor('page 4 to be staged', () => stagedPages.includes(4), 10_000, 5);
      if (page === 4) throw new SimulatedCrash('page 4 cannot be applied');
    },
  });
  const first = await startReplicator(config, testLogger(), { wrapSink: crashing.wrapSink });
  await assert.rejects(first.done, SimulatedCrash);
  await first.stop();
  const calls = crashing.sink.calls;
  assert.deepEqual(calls.map((c) => pageOf(c.ids[0])), [1, 2, 3, 4]);
  assert.equal(applied.get(3), true, 'page 3 came staged');
  assert.equal(applied.get(4), false, 'page 4, whose staging failed, was worked out again');
  const after = await checkpointAfter(src);
  assert.equal(after, Math.max(...calls[2].ids), 'the checkpoint stands at the end of page 3');
  assert.ok(after < Math.min(...calls[3].ids), 'page 4 was not confirmed');

  const replaying = recorder();
  const second = await startReplicator(config, testLogger(), { wrapSink: replaying.wrapSink });
  await waitCaughtUp(src);
  await second.stop();
  assert.deepEqual(replaying.sink.calls[0].ids, calls[3].ids, 'the first page after the restart is page 4');
  await assertConverged(src, dst);
});

for (const when of ['before', 'after'] as const) {
  test(`a page that fails ${when} it is written, while the next one is already read and staged, is applied again first; nothing is lost or reordered`, async () => {
    const { src, dst, config } = await setup();
    const pageOf = await pagedWorkload(src);
    const stagedPages: number[] = [];
    const applies: Array<{ page: number; staged: boolean }> = [];
    const retryable = () => Object.assign(new Error('connection reset in the middle of page 4'), { code: 'ECONNRESET' });
    let failed = false;
    const failing = recorder({
      stage(batches) {
        stagedPages.push(pageOf(firstId(batches)));
        for (const b of batches) b.staged = 'test';
      },
      async before(call, batches) {
        const page = pageOf(call.ids[0]);
        applies.push({ page, staged: marked(batches) });
        if (page === 4 && !failed) {
          // page 5 is read and staged before page 4 fails
          await waitFor('page 5 to be staged', () => stagedPages.includes(5), 10_000, 5);
          if (when === 'before') {
            failed = true;
            throw retryable();
          }
        }
      },
      after(call) {
        if (pageOf(call.ids[0]) === 4 && when === 'after' && !failed) {
          failed = true;
          throw retryable();
        }
      },
    });
    const running = await startReplicator(config, testLogger(), { wrapSink: failing.wrapSink });
    await waitCaughtUp(src);
    await running.stop();
    assert.ok(failed);
    const pages = applies.map((a) => a.page);
    assert.deepEqual(pages.slice(0, 5), [1, 2, 3, 4, 4], 'after the failure, page 4 is applied again before anything else');
    assert.deepEqual(pages.slice(4), [...pages.slice(4)].sort((a, b) => a - b), 'the pages after it follow in order');
    assert.equal(new Set(pages).size, pages.length - 1, 'only page 4 twice');
    assert.equal(applies[4].staged, false, 'page 4 again is read again, not taken from the discarded read-ahead');
    assert.ok(applies[2].staged && applies[3].staged && applies[5].staged, 'pages 3, 4 and 5 came staged');
    await assertConverged(src, dst);
  });
}
