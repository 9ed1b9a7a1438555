import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backOffUntilAnswered, PROBE_MS } from '../../src/sink/sink.js';
import { sleep } from '../../src/core/sleep.js';

const never = () => new Promise<void>(() => {});

test('a back-off ends at the first probe the target answers, and says how much it saved', async () => {
  let probes = 0;
  const t0 = Date.now();
  const saved = await backOffUntilAnswered(10 * PROBE_MS, { ping: async () => { if (++probes < 2) throw new Error('ECONNREFUSED'); } }, (ms) => sleep(ms), () => false);
  const took = Date.now() - t0;
  assert.equal(probes, 2);
  assert.ok(took >= 2 * PROBE_MS && took < 4 * PROBE_MS, `took ${took} ms`);
  assert.ok(saved > 5 * PROBE_MS, `saved ${saved} ms`);
});

test('a probe the target never answers does not stretch the back-off, and a stop ends it', async () => {
  let sent = 0;
  const t0 = Date.now();
  assert.equal(await backOffUntilAnswered(3.5 * PROBE_MS, { ping: () => { sent++; return never(); } }, (ms) => sleep(ms), () => false), 0);
  const took = Date.now() - t0;
  assert.ok(took >= 3.5 * PROBE_MS - 20 && took < 4.5 * PROBE_MS, `took ${took} ms`);
  assert.equal(sent, 1, 'an unanswered probe is waited for, not sent again');
  let stop = false;
  setTimeout(() => { stop = true; }, PROBE_MS / 2).unref();
  const t1 = Date.now();
  assert.equal(await backOffUntilAnswered(20 * PROBE_MS, { ping: never }, (ms) => sleep(Math.min(ms, PROBE_MS / 4)), () => stop), 0);
  assert.ok(Date.now() - t1 < 3 * PROBE_MS, 'a stopped back-off returned');
});
