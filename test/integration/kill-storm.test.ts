// The replicator killed with SIGKILL at random moments, ten times in a row, while a stream of
// 200,000 events is written: nothing is lost, nothing is left over, the target equals the source.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { spawnReplicator } from '../helpers/child-replicator.js';
import { assertSameRows, waitCaughtUp } from '../helpers/replication.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let srcUrl: string;
let dstUrl: string;

before(async () => {
  ({ srcUrl, dstUrl, src, dst } = await bed.settled(`create table public.acct (id integer primary key, balance bigint not null, note text)`, { PG2CRATE_TABLES: 'public.acct' }));
});

test('SIGKILL at ten random moments during a 200,000-event stream loses nothing and ends equal', async () => {
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.acct', PG2CRATE_PAGE_SIZE: '2000', LOG_LEVEL: 'warn' };
  let events = 0;
  // 200 transactions of 1,000 changes: inserts, then updates and deletes of earlier rows, key changes
  const writer = (async () => {
    for (let t = 0; t < 200; t++) {
      const base = t * 500;
      if (t % 4 === 3) {
        await src.query(`update acct set balance = balance + 1, note = 'tx ' || $1 where id between $2 and $2 + 999`, [t, base - 1500]);
      } else if (t % 4 === 2) {
        await src.query(`delete from acct where id between $1 and $1 + 99`, [base - 1000]);
        await src.query(`update acct set id = id + 10000000 where id between $1 and $1 + 99`, [base - 900]);
        await src.query(`insert into acct select g, g, 'new' from generate_series($1::int, $1::int + 799) g on conflict (id) do nothing`, [base + 100000]);
      } else {
        await src.query(`insert into acct select g, 0, 'start' from generate_series($1::int, $1::int + 999) g on conflict (id) do update set balance = acct.balance - 1`, [base]);
      }
      events += 1000;
    }
  })();
  let kills = 0;
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  try {
    while (kills < 10) {
      const r = spawnReplicator(env, ['start'], `storm-${kills}`);
      await new Promise((res) => setTimeout(res, 400 + rand() * 1600));
      await r.killHard();
      kills++;
    }
  } finally {
    await writer;
  }
  assert.ok(events >= 150_000, `only ${events} events were written while killing`);
  const last = spawnReplicator(env, ['start'], 'storm-final');
  await waitCaughtUp(src, 'pg2crate', 180_000);
  last.kill('SIGTERM');
  await last.exited;
  assert.equal(kills, 10);
  const rows = await assertSameRows(src, dst, 'public.acct', 'public.acct', ['id']);
  assert.ok(rows > 10_000);
});
