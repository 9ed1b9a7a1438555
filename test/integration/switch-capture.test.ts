// Switching the capture mode while four writers keep writing, through both switches and the waits
// inside them: trigger → pgoutput without a gap and without applying any change twice, then
// pgoutput → trigger without a gap (duplicates allowed), and the target ends equal to the source
// row by row. An append-only table proves the first claim: every row of it is applied exactly
// once across the trigger replicator, the switch and the pgoutput replicator.
//
// Each switch starts from what a stopped replicator leaves under load: the way in from a window
// left open (the drain needs one window more than a catch-up), the way back from a backlog in the
// slot, so that the stop mark arrives behind thousands of messages (it once was read from a reused
// buffer there, never recognised, and the switch waited for ever).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { captureMode, waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { assertNoLeaks, assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, type Running } from '../helpers/replication.js';
import { RecordingSink } from '../helpers/sinks.js';
import { startSwitchBed, startWriters, switchCapture, type SwitchBed } from '../helpers/switch-writers.js';
import type { Sink } from '../../src/sink/sink.js';
import { OutboxSource } from '../../src/source/outbox.js';
import { needsServer } from '../helpers/server-version.js';

/** The whole file is about pgoutput mode, which pg2crate refuses before PostgreSQL 14. */
const skip = needsServer(14, 'pgoutput mode');

let bed: SwitchBed;
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;
const reps: Running[] = [];

before(async () => {
  if (skip) return;
  bed = await startSwitchBed('switching');
  ({ src, dst } = bed);
  env = { ...bed.env, PG2CRATE_PAGE_SIZE: '100' };
});

after(async () => {
  for (const r of reps) await r.stop();
  await bed?.close();
  await assertNoLeaks();
});

/** Every log row any sink applied, counted by seq. */
const applied = new Map<string, number>();
function counting(sink: Sink, slow = 0): Sink {
  return new RecordingSink(sink, {
    before: () => slow > 0 ? new Promise((r) => setTimeout(r, slow)) : undefined,
    after(_call, batches) {
      for (const b of batches) {
        if (b.table.sourceTable !== 'log') continue;
        for (const c of b.upserts) {
          const seq = String(c.row?.seq);
          applied.set(seq, (applied.get(seq) ?? 0) + 1);
        }
      }
    },
  });
}

test('switching trigger → pgoutput → trigger under four writers loses nothing, applies nothing twice on the way in, and ends equal row by row', { skip }, async () => {
  const writers = startWriters(bed.srcUrl);
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const start = async (capture: 'trigger' | 'pgoutput', slow = 0) => {
    const r = await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: capture }), testLogger(), { wrapSink: (s) => counting(s, slow) });
    reps.push(r);
    return r;
  };
  // The writers' transactions committed while each switch runs: from its start to the hand-over,
  // and from the moment it waits for the outbox or for the stop mark to that point.
  const during: Record<string, number> = {};
  const switchTo = async (to: 'trigger' | 'pgoutput') => {
    const started = writers.tx;
    let waiting = 0;
    // The way back reads with the default page size: the stream then reads on while the mark waits.
    const config = makeConfig(to === 'trigger' ? { ...env, PG2CRATE_PAGE_SIZE: '5000' } : env);
    await switchCapture(config, testLogger(), to, {
      wrapSink: (s) => counting(s),
      switchStep: async (at) => {
        if (at === 'to-pgoutput:recorded' || at === 'to-trigger:draining') waiting = writers.tx;
        if (at === 'to-pgoutput:reached' || at === 'to-trigger:reached') {
          during[`${to}: whole switch`] = writers.tx - started;
          during[`${to}: drain to the hand-over`] = writers.tx - waiting;
        }
      },
    });
  };
  try {
    // A slow target: the replicator is stopped inside a window.
    const t1 = await start('trigger', 30);
    await pause(2000);
    await t1.stop();
    const windowOpen = async () => (await src.query<{ open: boolean }>(`select cur_snapshot is not null as open from pg2crate.checkpoint`)).rows[0].open;
    if (!(await windowOpen())) {
      // On a busy machine the slow replicator may still have kept up: open a window the way it
      // does (a page read, never confirmed), so that the switch starts from one all the same.
      const source = new OutboxSource({ connection: { connectionString: bed.srcUrl }, schema: 'pg2crate', stream: 'main', standbyRetryMs: 100, logger: testLogger() });
      try {
        await source.acquire(new AbortController().signal, false);
        await source.readPage(100);
      } finally {
        await source.close();
      }
    }
    assert.ok(await windowOpen(), 'the switch is meant to start from a window left open');
    await switchTo('pgoutput');
    assert.equal(await captureMode(src), 'pgoutput');
    const triggers = await src.query<{ n: number }>(`select count(*)::int as n from pg_trigger where tgname like 'pg2crate_capture%'`);
    assert.equal(triggers.rows[0].n, 0, 'the triggers are dropped after the switch');
    const p = await start('pgoutput');
    await pause(2500);
    // The way in must not apply anything twice: compare before the way back, which may.
    await waitSlotCaughtUp(src, 'switching');
    const twice = [...applied].filter(([, n]) => n > 1);
    assert.deepEqual(twice.slice(0, 5), [], `${twice.length} log rows applied more than once across trigger → pgoutput`);
    await p.stop();
    // A backlog in the slot: the stop mark comes behind it.
    await pause(1500);
    await switchTo('trigger');
    assert.equal(await captureMode(src), 'trigger');
    const slot = await src.query(`select 1 from pg_replication_slots where slot_name = 'switching'`);
    assert.equal(slot.rows.length, 0, 'the slot is dropped after the way back');
    const t2 = await start('trigger');
    await pause(2000);
    await writers.stop();
    await waitCaughtUp(src);
    await t2.stop();
  } finally {
    await writers.stop().catch(() => {});
  }
  for (const [what, n] of Object.entries(during)) assert.ok(n > 0, `the writers committed nothing during ${what}`);
  // (a rolled-back transaction leaves a gap in the sequence: only rows that exist are expected)
  const seqs = (await src.query<{ seq: string }>(`select seq::text from log order by seq`)).rows.map((r) => r.seq);
  const logRows = seqs.length;
  assert.ok(logRows > 300, `only ${logRows} transactions`);
  for (const seq of seqs) assert.ok(applied.has(seq), `log row ${seq} was never applied`);
  assert.equal(await assertSameRows(src, dst, 'public.log', 'public.log', ['seq']), logRows);
  assert.ok(await assertSameRows(src, dst, 'public.items', 'public.items', ['id']) > 50);
  await assertSameRows(src, dst, 'public.pairs', 'public.pairs', ['a', 'b']);
  console.log(`writers' transactions during the switches: ${JSON.stringify(during)}`);
});
