// A capture switch stopped at any step, in either direction, finishes when it is run again, while
// four writers keep writing throughout; the target ends equal to the source row by row.
//
// The first test crashes the switch in this process at each step (the switch's step seam throws
// there, or the sink fails a page of the drain) and runs it again, step after step, each attempt
// starting from what the previous one left. The second runs the CLI as a child process and kills
// it with SIGKILL at moments picked from its log and at random, then runs it again.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { killReplicators, spawnReplicator, waitForLog, type ChildReplicator } from '../helpers/child-replicator.js';
import { captureMode } from '../helpers/pgoutput.js';
import { assertNoLeaks, assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { RecordingSink, SimulatedCrash } from '../helpers/sinks.js';
import { startSwitchBed, startWriters, switchCapture, type SwitchBed, type Writers } from '../helpers/switch-writers.js';
import type { SwitchStep } from '../../src/source/pgoutput/switch.js';
import type { Sink } from '../../src/sink/sink.js';
import { needsServer } from '../helpers/server-version.js';

/** The whole file is about pgoutput mode, which pg2crate refuses before PostgreSQL 14. */
const skip = needsServer(14, 'pgoutput mode');

let bed: SwitchBed;
let srcUrl: string;
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;

before(async () => {
  if (skip) return;
  bed = await startSwitchBed('killed');
  ({ srcUrl, src, dst, env } = bed);
});

after(async () => {
  await killReplicators();
  await bed?.close();
  await assertNoLeaks();
});

const pause = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** A timer that does not keep the test process alive once everything else ended. */
const deadline = (ms: number) => new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), ms).unref());

/** Runs a replicator in `capture` mode for `ms` while the writers write. */
async function replicate(capture: 'trigger' | 'pgoutput', ms: number): Promise<void> {
  const r = await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: capture }), testLogger());
  try {
    await pause(ms);
  } finally {
    await r.stop();
  }
}

/** A trigger replicator runs until everything is applied; then the tables must be equal. */
async function assertEqualAfterCatchUp(writers: Writers): Promise<void> {
  const r = await startReplicator(makeConfig(env), testLogger());
  try {
    await pause(1500);
    await writers.stop();
    await waitCaughtUp(src, 'pg2crate', 120_000);
  } finally {
    await r.stop();
  }
  assert.ok(await assertSameRows(src, dst, 'public.log', 'public.log', ['seq']) > 300);
  assert.ok(await assertSameRows(src, dst, 'public.items', 'public.items', ['id']) > 50);
  await assertSameRows(src, dst, 'public.pairs', 'public.pairs', ['a', 'b']);
}

test('a switch crashed at each of its steps, both ways, finishes when run again and loses nothing', { skip }, async () => {
  const writers = startWriters(srcUrl);
  // Small pages, so that each drain takes several and a page in the middle can fail.
  const config = makeConfig({ ...env, PG2CRATE_PAGE_SIZE: '100' });
  /** One attempt that crashes at `at` (a step, or the Nth page the sink applies during the drain). */
  const crashAt = async (to: 'trigger' | 'pgoutput', at: SwitchStep | { page: number }) => {
    let hit = false;
    const crash = () => { hit = true; throw new SimulatedCrash(`crashed at ${JSON.stringify(at)}`); };
    const opts = typeof at === 'string'
      ? { switchStep: async (step: SwitchStep) => { if (step === at) crash(); } }
      : { wrapSink: (s: Sink) => new RecordingSink(s, { before: (call) => { if (call.n === at.page) crash(); } }) };
    await assert.rejects(switchCapture(config, testLogger(), to, opts), SimulatedCrash, `the switch to ${to} was meant to crash at ${JSON.stringify(at)}`);
    assert.ok(hit);
  };
  try {
    await replicate('trigger', 1500);
    for (const at of ['to-pgoutput:publication', 'to-pgoutput:slot', 'to-pgoutput:recorded', { page: 2 }, 'to-pgoutput:reached', 'to-pgoutput:one-dropped'] as const) {
      await crashAt('pgoutput', at);
      await pause(300);
    }
    assert.equal(await captureMode(src), 'to-pgoutput');
    await switchCapture(config, testLogger(), 'pgoutput');
    await replicate('pgoutput', 1500);
    // Each attempt of the way back starts with a backlog in the slot.
    for (const at of ['to-trigger:recorded', 'to-trigger:triggers', 'to-trigger:mark', 'to-trigger:draining', { page: 2 }, 'to-trigger:reached', 'to-trigger:drained', 'to-trigger:slot-dropped'] as const) {
      await pause(500);
      await crashAt('trigger', at);
    }
    assert.equal(await captureMode(src), 'to-trigger');
    await switchCapture(config, testLogger(), 'trigger');
    assert.equal(await captureMode(src), 'trigger');
    assert.ok(writers.tx > 1000, `only ${writers.tx} transactions were written across the switches`);
    await assertEqualAfterCatchUp(writers);
  } finally {
    await writers.stop().catch(() => {});
  }
});

test('the switch-capture command killed with SIGKILL at several moments, both ways, finishes when run again', { skip }, async () => {
  const writers = startWriters(srcUrl);
  let n = 0;
  /** Starts `switch-capture <to>` and kills it once `moment` says so; false when it finished first. */
  const killAt = async (to: string, moment: (c: ChildReplicator) => Promise<void>): Promise<boolean> => {
    const c = spawnReplicator(env, ['switch-capture', to], `switch-${to}-${++n}`);
    await Promise.race([moment(c), c.exited]).catch(() => {});
    const finished = c.child.exitCode !== null;
    await c.killHard();
    return !finished;
  };
  /** Runs it to the end: exit 0 within the time a switch takes under this load. */
  const finish = async (to: string) => {
    const c = spawnReplicator(env, ['switch-capture', to], `switch-${to}-${++n}`);
    const code = await Promise.race([c.exited, deadline(90_000)]);
    if (code === 'timeout') await c.killHard();
    assert.equal(code, 0, `switch-capture ${to} ended with ${code}:\n${c.log().slice(-3000)}`);
  };
  let seed = 4242;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  try {
    await replicate('trigger', 1500);
    const killed: boolean[] = [];
    killed.push(await killAt('pgoutput', (c) => waitForLog(c, 'created the slot; draining the outbox up to its snapshot', 60_000)));
    killed.push(await killAt('pgoutput', () => pause(300 + random() * 1500)));
    await finish('pgoutput');
    assert.equal(await captureMode(src), 'pgoutput');
    await replicate('pgoutput', 2000);
    killed.push(await killAt('trigger', (c) => waitForLog(c, 'triggers installed; draining the slot up to the stop mark', 60_000)));
    await pause(500);
    killed.push(await killAt('trigger', (c) => waitForLog(c, 'reached the stop mark', 60_000)));
    await pause(500);
    killed.push(await killAt('trigger', () => pause(300 + random() * 1500)));
    await finish('trigger');
    assert.equal(await captureMode(src), 'trigger');
    assert.ok(killed.filter(Boolean).length >= 3, `only ${killed.filter(Boolean).length} of the switches were killed before they finished`);
    await assertEqualAfterCatchUp(writers);
  } finally {
    await writers.stop().catch(() => {});
  }
  await waitFor('no slot left', async () => (await src.query(`select 1 from pg_replication_slots`)).rows.length === 0, 10_000);
});
