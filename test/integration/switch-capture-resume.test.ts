// A restarted switch to trigger mode drains to the stop mark of the attempt before it.
//
// Each attempt used to hand over afresh, with a new mark at the end of the WAL. A 60-minute soak
// (a slot ~750 MB behind, writers throughout, a fault every couple of minutes) then never finished
// its switch: every restart moved the mark further than the drain had come. Now an attempt that
// finds a recorded mark still ahead of the slot's confirmed position keeps it, with its hand-over
// snapshot. When the slot is past it (it cannot be, by the drain's rules, but the check costs one
// query), the attempt hands over afresh as before.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { captureMode } from '../helpers/pgoutput.js';
import { assertNoLeaks, assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp } from '../helpers/replication.js';
import { RecordingSink, SimulatedCrash } from '../helpers/sinks.js';
import { startSwitchBed, startWriters, switchCapture, type SwitchBed } from '../helpers/switch-writers.js';
import type { Sink } from '../../src/sink/sink.js';
import { needsServer } from '../helpers/server-version.js';

const skip = needsServer(14, 'pgoutput mode');
const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
let bed: SwitchBed | undefined;

after(async () => {
  await bed?.close();
  await assertNoLeaks();
});

test('a restarted switch to trigger mode keeps the earlier attempt\'s stop mark, and hands over afresh only when the slot passed it', { skip }, async () => {
  bed = await startSwitchBed('resumed');
  const { src, dst, env } = bed;
  const writers = startWriters(bed.srcUrl);
  const config = makeConfig({ ...env, PG2CRATE_PAGE_SIZE: '100' });
  const handOver = async () => (await src.query(`select stop_marker, stop_mark_lsn::text as lsn, resume_snapshot::text as p from pg2crate.capture`)).rows[0] as { stop_marker: string | null; lsn: string | null; p: string | null };
  /** One attempt of the switch back that fails at the drain's second page. */
  const failedAttempt = async () => {
    const opts = { wrapSink: (s: Sink) => new RecordingSink(s, { before: (call) => { if (call.n === 2) throw new SimulatedCrash('page 2 failed'); } }) };
    await assert.rejects(switchCapture(config, testLogger(), 'trigger', opts), SimulatedCrash);
  };
  try {
    await switchCapture(config, testLogger(), 'pgoutput');
    const r = await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' }), testLogger());
    await pause(1500);
    await r.stop();
    await pause(1000); // a backlog in the slot, so the drain takes several pages

    await failedAttempt();
    const first = await handOver();
    assert.ok(first.stop_marker && first.lsn && first.p, 'the first attempt recorded no hand-over');
    await pause(1000);
    await failedAttempt();
    const second = await handOver();
    assert.deepEqual(second, first, 'the second attempt handed over afresh although the slot had not reached the first mark');

    // A recorded mark the slot is already past (made so by hand): the next attempt hands over afresh.
    await src.query(`update pg2crate.capture set stop_mark_lsn = '0/1'`);
    await failedAttempt();
    const third = await handOver();
    assert.notEqual(third.stop_marker, first.stop_marker, 'a mark the slot had passed was kept');

    await switchCapture(config, testLogger(), 'trigger');
    assert.equal(await captureMode(src), 'trigger');
    const t2 = await startReplicator(makeConfig(env), testLogger());
    try {
      await pause(1000);
      await writers.stop();
      await waitCaughtUp(src, 'pg2crate', 120_000);
    } finally {
      await t2.stop();
    }
    assert.ok(await assertSameRows(src, dst, 'public.log', 'public.log', ['seq']) > 100);
    await assertSameRows(src, dst, 'public.items', 'public.items', ['id']);
    await assertSameRows(src, dst, 'public.pairs', 'public.pairs', ['a', 'b']);
  } finally {
    await writers.stop().catch(() => {});
  }
});
