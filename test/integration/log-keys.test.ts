// Every log line of a real run is a JSON object with each key once, as a collector reads it: the
// replicator (`start`, its log on stdout) through an initial load, writes, a change the target
// refuses, the wake-up listener, the HTTP endpoints, retention and verify on their schedules; the
// one-shot commands (their log on stderr) migrate, verify --repair, catch-up, switch-capture; and,
// where the server has it, a replicator in pgoutput mode. JSON.parse keeps the last of two equal
// keys without a word, so each line's text is scanned for them (helpers/log-lines.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clusterForFile } from '../helpers/file-cluster.js';
import { runCli, spawnReplicator, waitForLog, type ChildReplicator } from '../helpers/child-replicator.js';
import { duplicateKeys, isLogLine } from '../helpers/log-lines.js';
import { caughtUp, waitFor } from '../helpers/replication.js';
import { serverVersion } from '../helpers/server-version.js';

const bed = clusterForFile();

/** Checks every line of `text` and returns the components seen. */
function checkLines(text: string, where: string): Set<string> {
  const components = new Set<string>();
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  for (const l of lines) {
    assert.ok(isLogLine(l), `${where}: not a JSON log line: ${l.slice(0, 300)}`);
    assert.deepEqual(duplicateKeys(l), [], `${where}: a key twice in ${l.slice(0, 500)}`);
    const c = (JSON.parse(l) as { component?: string }).component;
    if (c) components.add(c);
  }
  return components;
}

async function stop(r: ChildReplicator): Promise<void> {
  r.kill('SIGTERM');
  assert.equal(await r.exited, 0, r.log().slice(-2000));
}

test('no log line of a real run, replicator or one-shot command, in either capture mode, holds a key twice', async () => {
  const { srcUrl, dstUrl, src, dst } = await bed.databases();
  await src.query(`create table items (id int primary key, v text); insert into items select g, 'v' || g from generate_series(1, 5000) g`);
  // The target refuses one value: a rejected change, retried and parked, logs its error.
  await dst.query(`create table items (id int primary key, v text check (v <> 'refused'))`);
  const env = {
    DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.items', LOG_LEVEL: 'debug', PG2CRATE_HTTP_PORT: '0',
    PG2CRATE_RETENTION_CRON: '* * * * * *', PG2CRATE_RETENTION_ROTATE_KB: '8', PG2CRATE_VERIFY_CRON: '*/2 * * * * *', PG2CRATE_REJECT_ATTEMPTS: '1',
  };
  const seen = new Set<string>();
  const add = (s: Set<string>) => { for (const c of s) seen.add(c); };

  const migrate = await runCli(env, ['migrate']);
  assert.equal(migrate.code, 0, migrate.stderr);
  add(checkLines(migrate.stderr, 'migrate'));

  const rep = spawnReplicator(env, ['start'], 'log-keys');
  await waitForLog(rep, 'initial load copied');
  for (let i = 0; i < 20; i++) await src.query(`update items set v = 'u${i}' || id where id % 20 = $1`, [i]);
  await src.query(`insert into items values (6000, 'refused'); delete from items where id <= 100`);
  await waitFor('the parked change', async () => Number((await src.query(`select count(*) from pg2crate.dead_letters`)).rows[0].count) === 1, 60_000);
  await waitFor('the drain', () => caughtUp(src), 60_000);
  await waitForLog(rep, 'scheduled verify');
  await waitForLog(rep, 'outbox writers moved to the next generation');
  await stop(rep);
  add(checkLines(rep.log(), 'start'));

  await dst.query(`delete from items where id = 500`);
  const verify = await runCli(env, ['verify', '--repair']);
  add(checkLines(verify.stderr, 'verify --repair'));
  const catchUp = await runCli(env, ['catch-up']);
  assert.equal(catchUp.code, 0, catchUp.stderr);
  add(checkLines(catchUp.stderr, 'catch-up'));

  for (const c of ['runner', 'outbox', 'drainer', 'sink-postgres', 'backfill', 'scheduler', 'retention', 'verify', 'http']) {
    assert.ok(seen.has(c), `no line of ${c} was seen; components: ${[...seen].join(', ')}`);
  }

  if (serverVersion().major < 14) return; // pgoutput mode needs PostgreSQL 14
  const switched = await runCli(env, ['switch-capture', 'pgoutput']);
  assert.equal(switched.code, 0, switched.stderr);
  add(checkLines(switched.stderr, 'switch-capture'));
  const slot = spawnReplicator({ ...env, PG2CRATE_CAPTURE: 'pgoutput' }, ['start'], 'log-keys-pgoutput');
  await waitForLog(slot, 'replicator started');
  await src.query(`update items set v = 'slot ' || id where id % 7 = 0`);
  await waitFor('the slot applied the update', async () => Number((await dst.query(`select count(*) from items where v like 'slot %'`)).rows[0].count) > 0, 60_000);
  await stop(slot);
  const pgoutput = checkLines(slot.log(), 'start (pgoutput)');
  assert.ok(pgoutput.has('pgoutput'), `no line of the pgoutput source; components: ${[...pgoutput].join(', ')}`);
});
