// `CRATEDB_URL=… pg2crate demo` against a real CrateDB: it replicates the changing shop into schema
// pg2crate_demo, verifies equal on Ctrl-C, drops its tables and removes its server; and it refuses a
// CrateDB whose pg2crate_demo schema already holds a table, touching nothing there.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { killReplicators, spawnReplicator, waitForLog } from '../helpers/child-replicator.js';
import { alive, DECOYS, exitOf, processesIn, started } from '../helpers/demo-child.js';
import { CRATEDB_URL, crateClient, skipWithoutCrate } from '../helpers/cratedb.js';

after(killReplicators);

const SCHEMA = 'pg2crate_demo';

async function demoTables(): Promise<string[]> {
  const res = await crateClient().sql('SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1', [SCHEMA]);
  return res.rows.map((r) => String(r[0]));
}

test('the demo replicates into CrateDB schema pg2crate_demo, verifies equal on Ctrl-C and drops its tables', { skip: skipWithoutCrate, timeout: 300_000 }, async () => {
  assert.deepEqual(await demoTables(), [], `CrateDB schema ${SCHEMA} must be empty for this test`);
  const r = spawnReplicator({ ...DECOYS, CRATEDB_URL: CRATEDB_URL! }, ['demo'], 'demo-cratedb');
  await waitForLog(r, 'press Ctrl-C', 120_000);
  const { dir, pid } = started(r);
  // ~12 s of writes, a truncate among them; the tables exist in CrateDB meanwhile.
  await new Promise((res) => setTimeout(res, 12_000));
  assert.deepEqual(await demoTables(), ['cart_items', 'customers', 'orders', 'products']);
  r.kill('SIGINT');
  const code = await exitOf(r, 240_000);
  const out = r.log();
  assert.equal(code, 0, out);
  assert.match(out, /replicating into CrateDB http:\/\/\S+, schema pg2crate_demo/);
  assert.match(out, /\d+ truncates/);
  for (const t of ['customers', 'products', 'orders', 'cart_items']) {
    assert.match(out, new RegExp(`shop\\.${t} +pg2crate_demo\\.${t} +equal +(\\d+) +\\1 `));
  }
  assert.match(out, /verify: source and target are equal/);
  assert.match(out, /dropped the demo's tables in CrateDB schema pg2crate_demo/);
  assert.deepEqual(await demoTables(), []);
  assert.equal(existsSync(dir), false);
  assert.deepEqual(processesIn(dir), []);
  assert.equal(alive(pid), false);
});

test('the demo refuses a CrateDB whose pg2crate_demo schema already has a table, and leaves it alone', { skip: skipWithoutCrate, timeout: 180_000 }, async () => {
  const crate = crateClient();
  await crate.sql(`CREATE TABLE ${SCHEMA}.someone_elses (id INT PRIMARY KEY)`);
  try {
    const r = spawnReplicator({ ...DECOYS, CRATEDB_URL: CRATEDB_URL! }, ['demo'], 'demo-cratedb-refused');
    assert.equal(await exitOf(r, 150_000), 2, r.log());
    assert.match(r.log(), /CrateDB already has table\(s\) in schema pg2crate_demo \(someone_elses\)/);
    assert.deepEqual(await demoTables(), ['someone_elses']);
    const { dir } = started(r);
    assert.equal(existsSync(dir), false);
  } finally {
    await crate.sql(`DROP TABLE IF EXISTS ${SCHEMA}.someone_elses`);
  }
});
