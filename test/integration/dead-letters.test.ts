import { test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { assertSameRows, initialLoadsDone, makeConfig, settle, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { PgoutputSource } from '../../src/source/pgoutput/pgoutput-source.js';
import type { DeadLetter } from '../../src/source/change-source.js';
import { switchCapture } from '../helpers/switch-writers.js';
import { needsServer } from '../helpers/server-version.js';
import { Runner, sourceConnection } from '../../src/runner.js';
import { deadLetters, retryDeadLetters } from '../../src/commands/dead-letters.js';
import { status } from '../../src/commands/status.js';
import { catchUp } from '../../src/commands/catch-up.js';

const bed = clusterForFile();

async function setup() {
  const { srcUrl: s, dstUrl: d, src, dst } = await bed.databases();
  await src.query(`create table t (id int primary key, v text)`);
  // The target refuses one value, as a target with a stricter column would.
  await dst.query(`create table t (id int primary key, v text check (v <> 'refused'))`);
  return { s, d, src, dst };
}

test('a row the target rejects is parked with the target message while the rest flows on, shown by status, and retry sends its current state', async () => {
  const { s, d, src, dst } = await setup();
  const config = makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t', PG2CRATE_REJECT_ATTEMPTS: '2', PG2CRATE_RETENTION_CRON: 'off' });
  const rep = await startReplicator(config);
  try {
    // the (empty) table's initial load first: a copy made after the refused update would park it twice
    await waitFor('the initial load', () => initialLoadsDone(src));
    await src.query(`insert into t select g, 'ok ' || g from generate_series(1, 500) g`);
    await waitCaughtUp(src);
    // in one page with good rows: the page is split until the refused row is isolated
    await src.query(`update t set v = v || '!' where id between 200 and 300`);
    await src.query(`update t set v = 'refused' where id = 250`);
    await src.query(`insert into t values (501, 'after')`);
    await waitCaughtUp(src);
    const st = await status(rep.runner);
    assert.equal(st.deadLetters, 1);
    const letters = await deadLetters(rep.runner);
    assert.equal(letters.length, 1);
    assert.equal(letters[0].code, '23514');
    assert.match(letters[0].error, /check constraint/);
    assert.equal(letters[0].attempts, 2);
    // everything else arrived
    assert.equal((await dst.query(`select count(*)::int as n from t`)).rows[0].n, 501);
    // the refused change never landed: row 250 holds a state from before it
    assert.match((await dst.query(`select v from t where id = 250`)).rows[0].v, /^ok 250!?$/);
    assert.equal((await dst.query(`select count(*)::int as n from t where v like '%!' and id <> 250`)).rows[0].n, 100);
    // the source moves on; retry sends the *current* row, not the parked image
    await dst.query(`alter table t drop constraint t_v_check`);
    await src.query(`update t set v = 'fixed later' where id = 250`);
    await waitCaughtUp(src);
    assert.equal(await retryDeadLetters(rep.runner, 'all'), 1);
    await waitCaughtUp(src);
    assert.equal((await status(rep.runner)).deadLetters, 0);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.t', 'public.t', ['id']), 501);
});

test('a page applied again because its confirm failed parks its rejected change once, not twice', async () => {
  const { s, d, src, dst } = await setup();
  const config = makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t', PG2CRATE_REJECT_ATTEMPTS: '1', PG2CRATE_RETENTION_CRON: 'off' });
  const rep = await startReplicator(config);
  try {
    await waitFor('the initial load', () => initialLoadsDone(src));
    await src.query(`insert into t select g, 'ok ' || g from generate_series(1, 20) g`);
    await waitCaughtUp(src);
    // The first checkpoint write after a letter is parked (the confirm of its page) fails once, as
    // a serialization failure (retryable): the drainer reads the page again and the target refuses
    // the same change again.
    await src.query(`create sequence confirm_failures`);
    await src.query(`create function fail_confirm_once() returns trigger language plpgsql as $$
      begin
        if exists (select 1 from pg2crate.dead_letters) then
          if nextval('confirm_failures') = 1 then
            raise exception 'injected: the confirm of a page that parked a letter fails once' using errcode = '40001';
          end if;
        end if;
        return new;
      end $$`);
    await src.query(`create trigger fail_confirm_once before update on pg2crate.checkpoint for each row execute function fail_confirm_once()`);
    await src.query(`update t set v = 'refused' where id = 7`);
    await src.query(`insert into t values (21, 'after')`);
    await waitCaughtUp(src);
    // the confirm did fail (the sequence was drawn) …
    assert.equal((await src.query(`select is_called from confirm_failures`)).rows[0].is_called, true);
    // … and the refused change is parked once
    const letters = await deadLetters(rep.runner);
    assert.equal(letters.length, 1, `letters: ${JSON.stringify(letters.map((l) => l.eventId))}`);
    assert.equal((await dst.query(`select count(*)::int as n from t`)).rows[0].n, 21);
    await src.query(`drop trigger fail_confirm_once on pg2crate.checkpoint`);
    await dst.query(`alter table t drop constraint t_v_check`);
    assert.equal(await retryDeadLetters(rep.runner, 'all'), 1);
    await waitCaughtUp(src);
    assert.equal((await status(rep.runner)).deadLetters, 0);
  } finally {
    await rep.stop();
  }
  assert.equal(await assertSameRows(src, dst, 'public.t', 'public.t', ['id']), 21);
});

test('in pgoutput mode a change the slot sends again under a new number is parked once', { skip: needsServer(14, 'pgoutput mode') }, async () => {
  // A page whose letter was parked and whose acknowledgement never reached the server (a crash, a
  // failure of the page beside it) is sent again by the slot, and the new stream numbers its
  // changes anew. The source is driven as the drainer drives it: the letter parked, then parked
  // again under the number the second stream gives it, beside a letter of another change.
  const { s, d, src } = await setup();
  const env = { DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t', PG2CRATE_RETENTION_CRON: 'off', PG2CRATE_SLOT: 'park_once' };
  await settle(makeConfig(env), src);
  const config = makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' });
  await switchCapture(config, testLogger(), 'pgoutput');
  const tableId = (await src.query(`select id from pg2crate.tables where source_table = 't'`)).rows[0].id as number;
  const source = new PgoutputSource({
    connection: sourceConnection(config), schema: 'pg2crate', stream: 'main', slot: 'park_once', publication: config.publicationName,
    standbyRetryMs: 100, pageSize: 100, slotWarnBytes: 1e12, logger: testLogger(),
  });
  try {
    await source.acquire(new AbortController().signal);
    const letter = (id: number, v: string): DeadLetter => ({
      change: { id, tableId, op: 'U', key: '[7]', row: null, raw: JSON.stringify({ id: 7, v }) },
      code: '23514', message: 'new row violates check constraint "t_v_check"', attempts: 1,
    });
    await source.park([letter(3, 'refused')]);
    await source.park([letter(1, 'refused'), letter(2, 'refused again')]);
    const parked = await src.query(`select event_id::int as event, data->>'v' as v from pg2crate.dead_letters order by id`);
    assert.deepEqual(parked.rows, [{ event: 3, v: 'refused' }, { event: 2, v: 'refused again' }]);
  } finally {
    await source.close();
  }
});

test('with the halt policy a rejected row stops the replicator without applying or skipping anything after it', async () => {
  const { s, d, src, dst } = await setup();
  const config = makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t', PG2CRATE_DEAD_LETTERS: 'halt', PG2CRATE_REJECT_ATTEMPTS: '1', PG2CRATE_RETENTION_CRON: 'off' });
  const rep = await startReplicator(config);
  await waitFor('the initial load', () => initialLoadsDone(src));
  await src.query(`insert into t values (1, 'ok')`);
  await waitCaughtUp(src);
  await src.query(`insert into t values (2, 'refused')`);
  await assert.rejects(rep.done, /halting as PG2CRATE_DEAD_LETTERS=halt says/);
  await rep.stop();
  const admin = new Runner(config, testLogger());
  try {
    assert.equal((await status(admin)).backlogEvents, 1, 'the refused change must stay in the stream');
    assert.equal((await deadLetters(admin)).length, 0);
  } finally {
    await admin.close();
  }
  assert.equal((await dst.query(`select count(*)::int as n from t`)).rows[0].n, 1);
  // once the target accepts it, a restart applies it
  await dst.query(`alter table t drop constraint t_v_check`);
  const again = await startReplicator(config);
  try {
    await waitFor('the held change', async () => (await dst.query(`select count(*)::int as n from t`)).rows[0].n === 2);
  } finally {
    await again.stop();
  }
});

test('retry of a deleted key that an open transaction inserts again ends with that row, not deleted', async () => {
  const { s, d, src, dst } = await setup();
  const config = makeConfig({ DATABASE_URL: s, TARGET_DATABASE_URL: d, PG2CRATE_TABLES: 'public.t', PG2CRATE_REJECT_ATTEMPTS: '1', PG2CRATE_RETENTION_CRON: 'off' });
  const rep = await startReplicator(config);
  try {
    await waitFor('the initial load', () => initialLoadsDone(src));
    await src.query(`insert into t values (1, 'refused'), (2, 'ok')`);
    await waitCaughtUp(src);
    await src.query(`delete from t where id = 1`);
    await waitCaughtUp(src);
  } finally {
    await rep.stop();
  }
  await dst.query(`alter table t drop constraint t_v_check`);
  // Replicator stopped (cron mode): the retry's delete for key 1 and a writer's new row 1 can then
  // fall into one window. The writer draws its event id first and commits after the retry's check.
  const writer = new pg.Client({ connectionString: s });
  await writer.connect();
  const admin = new Runner(config, testLogger());
  try {
    assert.equal((await deadLetters(admin)).length, 1);
    await writer.query('begin');
    await writer.query(`insert into t values (1, 'new')`);
    const retried = retryDeadLetters(admin, 'all');
    await waitFor('the retry\'s delete', async () =>
      (await src.query(`select count(*)::int as n from pg2crate.outbox where op = 'D'`)).rows[0].n === 2);
    await writer.query('commit');
    assert.equal(await retried, 1);
    await catchUp(admin);
  } finally {
    await writer.end();
    await admin.close();
  }
  assert.equal(await assertSameRows(src, dst, 'public.t', 'public.t', ['id']), 2);
});
