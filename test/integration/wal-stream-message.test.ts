// A logical message keeps its content while it waits in the replication stream's queue. The
// pgoutput parser hands the content out as a view into node-postgres' read buffer, which later
// socket reads overwrite; a switch's stop mark that waited behind a backlog was read as other bytes,
// never recognised, and the switch waited for it for ever.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { assertNoLeaks, pool, testLogger, waitFor } from '../helpers/replication.js';
import { WalStream, type StreamItem } from '../../src/source/pgoutput/wal-stream.js';
import { needsServer } from '../helpers/server-version.js';

/** The whole file is about pgoutput mode, which pg2crate refuses before PostgreSQL 14. */
const skip = needsServer(14, 'pgoutput mode');

let cluster: Cluster;
let url: string;
let src: pg.Pool;

before(async () => {
  if (skip) return;
  cluster = await startCluster();
  url = await cluster.createDatabase('src');
  src = pool(url);
  await src.query(`create table public.notes (id integer primary key, body text not null); create publication messages for table public.notes`);
  await src.query(`select pg_create_logical_replication_slot('messages', 'pgoutput')`);
});

after(async () => {
  await src?.end();
  await cluster?.stop();
  await assertNoLeaks();
});

test('a logical message that waits in the queue while more data arrives keeps its content', { skip }, async () => {
  const stream = new WalStream({
    connection: { connectionString: url }, slot: 'messages', publication: 'messages', highWater: 1_000_000, statusIntervalMs: 10_000,
    logger: testLogger(), onItem: () => {}, onKeepalive: () => {},
  });
  await stream.start();
  try {
    // Messages, each followed by rows that arrive in reads of every size while nothing is taken.
    const marks: string[] = [];
    for (let i = 0; i < 20; i++) {
      marks.push(`mark ${i} ${'m'.repeat(40 + i * 37)}`);
      await src.query(`select pg_logical_emit_message(false, 'pg2crate', $1)`, [marks[i]]);
      for (let t = 0; t < 5; t++) {
        await src.query(`insert into notes select g, repeat(md5(g::text), 1 + g % 40) from generate_series($1::int, $1::int + 49) g`, [i * 1000 + t * 50]);
      }
    }
    await src.query(`select pg_logical_emit_message(false, 'pg2crate', 'end')`);
    const items: StreamItem[] = [];
    await waitFor('the end message', () => {
      for (let item = stream.take(); item; item = stream.take()) items.push(item);
      return items.some((x) => x.msg.tag === 'message' && Buffer.from(x.msg.content).toString() === 'end');
    }, 30_000);
    const seen = items.flatMap((x) => (x.msg.tag === 'message' ? [Buffer.from(x.msg.content).toString()] : []));
    assert.deepEqual(seen, [...marks, 'end']);
  } finally {
    await stream.stop();
  }
});
