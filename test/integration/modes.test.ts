// The spine's scenarios in both capture modes, from one suite: every type round-trips, commits out
// of id order, eight concurrent writers, a crash between apply and acknowledgement, key changes, and
// (what only pgoutput makes hard) an unchanged TOASTed value that must survive an update. Each mode
// gets its own databases; in pgoutput mode the stream is first loaded in trigger mode and switched
// (`switchCapture`), as a user would.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { spawnReplicator } from '../helpers/child-replicator.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { waitSlotCaughtUp } from '../helpers/pgoutput.js';
import { rng, writeAtRandom, type WriteTally } from '../helpers/random-writers.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { recorder, SimulatedCrash } from '../helpers/sinks.js';
import { Runner } from '../../src/runner.js';
import type { Config } from '../../src/core/config.js';
import { switchCapture } from '../../src/commands/switch-capture.js';
import { needsServer } from '../helpers/server-version.js';

const WRITE_MS = Number(process.env.PG2CRATE_TEST_WRITE_MS ?? 8_000);

const bed = clusterForFile();
const running: Running[] = [];
let slots = 0;
bed.onClose(async () => {
  for (const r of running) await r.stop();
});

type Mode = 'trigger' | 'pgoutput';

interface Setup {
  src: pg.Pool;
  dst: pg.Pool;
  srcUrl: string;
  env: Record<string, string>;
  config: Config;
  /** waits until everything committed before the call is applied */
  caughtUp(timeoutMs?: number): Promise<void>;
  start(opts?: Parameters<typeof startReplicator>[2]): Promise<Running>;
}

/** Fresh databases, the tables loaded in trigger mode, then (pgoutput) the switch. */
async function setup(mode: Mode, ddl: string, tables: string, more: Record<string, string> = {}): Promise<Setup> {
  const { srcUrl, src, dst, env: base } = await bed.settled(ddl, { PG2CRATE_TABLES: tables, PG2CRATE_SLOT: `modes_${++slots}`, ...more }, 10);
  if (mode === 'pgoutput') {
    const r = new Runner(makeConfig(base), testLogger());
    try {
      assert.equal(await switchCapture(r, 'pgoutput'), 'switched');
    } finally {
      await r.close();
    }
  }
  const env: Record<string, string> = { ...base, PG2CRATE_CAPTURE: mode };
  const config = makeConfig(env);
  return {
    src, dst, srcUrl, env, config,
    caughtUp: (timeoutMs = 60_000) => (mode === 'pgoutput' ? waitSlotCaughtUp(src, env.PG2CRATE_SLOT, timeoutMs) : waitCaughtUp(src, 'pg2crate', timeoutMs)),
    async start(opts = {}) {
      const r = await startReplicator(config, testLogger(), opts);
      running.push(r);
      return r;
    },
  };
}

const ALL_TYPES = `create table public.all_types (
  id bigint primary key,
  big bigint, num numeric(38,10), num_free numeric, i2 smallint, i4 integer, r4 real, f8 double precision,
  ts timestamp, tstz timestamptz, d date, t time, iv interval,
  txt text, vc varchar(20), ch char(3), flag boolean,
  ints integer[], texts text[], matrix integer[][], js jsonb, j json, u uuid, b bytea
)`;

for (const mode of ['trigger', 'pgoutput'] as const) {
  describe(`capture=${mode}`, { skip: mode === 'pgoutput' && needsServer(14, 'pgoutput mode') }, () => {
    test('every type arrives with identical values through insert, update, key change, delete, truncate and a new column', async () => {
      const s = await setup(mode, ALL_TYPES, 'public.all_types');
      const r = await s.start();
      await s.src.query(`insert into all_types values
        (1, 9007199254740993, 1234567890123456789012345678.0123456789, 0.1000000000000000000000000001, -32768, 2147483647, 3.25, 0.30000000000000004,
         '2024-02-29 23:59:59.123456', '2024-02-29 23:59:59.654321+05:30', '0001-01-01', '12:34:56.789', '1 year 2 mons 3 days 04:05:06.7',
         E'quote '' "dq" \\\\ back\\nnewline\\ttab emoji 😀 ünïcødé', 'varchar', 'ab', true,
         '{1,NULL,3}', '{"a,b","c\\"d",NULL,"😀",""}', '{{1,2},{3,4}}', '{"big": 123456789012345678901234567890, "nested": {"a": [1, "x", null, {"b": false}]}, "": "empty key"}',
         '{"b": 1, "a": 2}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '\\x00ff10'),
        (2, -9223372036854775808, -0.0000000001, 'NaN', null, null, 'NaN', '-Infinity', 'infinity', '-infinity', null, null, null,
         null, null, null, false, '{}', null, null, '[1, 2, 3]', 'null', null, ''),
        (3, null, null, null, null, null, null, 1e100, '0044-03-15 12:00:00 BC', null, null, null, null, '', '', '', null, null, null, null, '"just a string"', null, null, null)`);
      await s.caughtUp();
      assert.equal(await assertSameRows(s.src, s.dst, 'public.all_types', 'public.all_types', ['id']), 3);

      await s.src.query(`update all_types set big = 9223372036854775807, txt = 'changed', js = '{"x": 1}' where id = 1`);
      await s.src.query(`update all_types set id = 20 where id = 2`);
      await s.src.query(`delete from all_types where id = 3`);
      await s.caughtUp();
      assert.equal(await assertSameRows(s.src, s.dst, 'public.all_types', 'public.all_types', ['id']), 2);

      await s.src.query(`truncate all_types`);
      await s.src.query(`insert into all_types (id, txt) values (100, 'after truncate')`);
      await s.src.query(`alter table all_types add column added_later numeric(12,3) default 1.5`);
      await s.src.query(`insert into all_types (id, added_later) values (101, 12345.678)`);
      await s.src.query(`update all_types set txt = 'touched' where id = 100`);
      await s.caughtUp();
      await r.stop();
      assert.equal(await assertSameRows(s.src, s.dst, 'public.all_types', 'public.all_types', ['id']), 2);
    });

    test('a numeric key rewritten to an equal value of another scale, then deleted in the same page, ends deleted', async () => {
      // 18 significant digits: beyond a double, so the key is kept as exact text. The UPDATE writes no
      // delete for the old key (equal by value), so the page holds an insert under `.5` and a delete
      // under `.50`: unless both are one key, the delete goes first and the insert brings the row back.
      const s = await setup(mode, `create table public.prices (k numeric primary key, v text)`, 'public.prices');
      const r = await s.start();
      await s.src.query(`begin; insert into prices values (12345678901234567.5, 'a'), (22345678901234567.5, 'b');
        update prices set k = 12345678901234567.50, v = 'a2' where k = 12345678901234567.5;
        update prices set k = 22345678901234567.500, v = 'b2' where k = 22345678901234567.5;
        delete from prices where k = 12345678901234567.5; commit`);
      await s.caughtUp();
      await r.stop();
      assert.equal(await assertSameRows(s.src, s.dst, 'public.prices', 'public.prices', ['k']), 1);
    });

    test('an update that leaves a 100 kB TOASTed text unchanged keeps the text in the target, also when the key moves', async () => {
      const s = await setup(mode, `create table public.docs (id integer primary key, title text, body text, n integer)`, 'public.docs', { PG2CRATE_PAGE_SIZE: '3' });
      const r = await s.start();
      // Random text does not compress below the TOAST threshold: it is stored out of line.
      await s.src.query(`insert into docs select g, 't' || g, (select string_agg(md5(random()::text || g || x), '') from generate_series(1, 3200) x), 0 from generate_series(1, 4) g`);
      await s.caughtUp();
      const toasted = await s.src.query<{ n: number }>(`select count(*)::int as n from docs where pg_column_size(body) > 90000`);
      assert.equal(toasted.rows[0].n, 4, 'the bodies must be stored out of line, or this test proves nothing');
      // Updates that do not touch body: pgoutput sends body as "unchanged".
      await s.src.query(`update docs set title = 'changed', n = n + 1 where id = 1`);
      await s.src.query(`update docs set n = n + 1 where id in (2, 3)`);
      // In one transaction with the insert, and several updates of one key on one page.
      await s.src.query(`begin; insert into docs values (5, 'new', repeat('abc', 40000), 0); update docs set n = 7 where id = 5; update docs set title = 'x' where id = 4; update docs set n = 9 where id = 4; commit`);
      // A key that moves while its body stays.
      await s.src.query(`update docs set id = 30 where id = 3`);
      await s.caughtUp();
      await r.stop();
      assert.equal(await assertSameRows(s.src, s.dst, 'public.docs', 'public.docs', ['id']), 5);
      const lengths = (await s.dst.query<{ id: number; l: number }>(`select id, length(body) as l from docs order by id`)).rows;
      assert.deepEqual(lengths.map((x) => [x.id, x.l]), [[1, 102400], [2, 102400], [4, 102400], [5, 120000], [30, 102400]]);
    });

    test('a transaction that takes its ids first but commits last, and one left open across many commits, are not lost', async () => {
      const s = await setup(mode, `create table public.accounts (id integer primary key, v text not null, n integer not null default 0)`, 'public.accounts', { PG2CRATE_PAGE_SIZE: '7' });
      const r = await s.start();
      const a = new pg.Client({ connectionString: s.srcUrl });
      await a.connect();
      try {
        await a.query('begin');
        await a.query(`insert into accounts (id, v) select g, 'a' from generate_series(1, 20) g`);
        await a.query(`update accounts set v = 'a2' where id <= 10`);
        for (let i = 0; i < 5; i++) {
          await s.src.query(`insert into accounts (id, v) values ($1, 'b')`, [100 + i]);
          await s.src.query(`update accounts set v = 'b' || $1 where id = 100`, [i]);
        }
        await waitFor('the later commits in the target', async () => (await s.dst.query(`select v from accounts where id = 104`)).rows[0]?.v === 'b');
        assert.equal((await s.dst.query(`select count(*)::int as n from accounts where id <= 20`)).rows[0].n, 0, 'the open transaction must not be applied before it commits');
        await a.query('commit');
      } finally {
        await a.end();
      }
      await s.caughtUp();
      await r.stop();
      assert.equal(await assertSameRows(s.src, s.dst, 'public.accounts', 'public.accounts', ['id']), 25);
    });

    test('key changes: keys moved by one statement and reused at once, a key moved and its old key reused, composite keys moved as a group', async () => {
      const s = await setup(mode, `
        create table public.items (id integer primary key, v text);
        create table public.pairs (a integer, b text, val numeric(20,4), primary key (a, b));
        insert into items select g, 'v' || g from generate_series(1, 10) g;
        insert into pairs select g % 3, 'x' || g, g from generate_series(1, 12) g`, 'public.items, public.pairs', { PG2CRATE_PAGE_SIZE: '4' });
      const r = await s.start();
      await s.src.query(`update items set id = case id when 1 then 2000 else 2001 end where id in (1, 2)`);
      await s.src.query(`insert into items values (1, 'reused at once'), (2, 'and again')`);
      await s.src.query(`update items set id = 1000 where id = 5`);
      await s.src.query(`insert into items values (5, 'reused')`);
      await s.src.query(`update items set id = id + 100 where id between 6 and 9`);
      await s.src.query(`update pairs set a = 7 where a = 1`);
      await s.src.query(`update pairs set b = b || '+' where a = 2`);
      await s.caughtUp();
      await r.stop();
      assert.equal(await assertSameRows(s.src, s.dst, 'public.items', 'public.items', ['id']), 13);
      assert.equal(await assertSameRows(s.src, s.dst, 'public.pairs', 'public.pairs', ['a', 'b']), 12);
    });

    test('eight concurrent writers on three tables end with the target equal to the source', async () => {
      const KEYS = 300;
      const s = await setup(mode, `
        create table public.items (id integer primary key, qty integer not null, note text);
        create table public.pairs (a integer, b text, val numeric(20,4), primary key (a, b));
        create table public.docs (id bigint primary key, body jsonb, tags text[]);
        insert into items select g, g, 'seed' from generate_series(1, ${KEYS}, 3) g;
        insert into pairs select g, 'x', g from generate_series(1, ${KEYS}, 2) g`, 'public.items, public.pairs, public.docs', { PG2CRATE_PAGE_SIZE: '200' });
      const r = await s.start();
      const statement = (rand: () => number, tally: WriteTally): [string, unknown[]] => {
        const k = () => 1 + Math.floor(rand() * KEYS);
        const big = () => BigInt(k()) + 9_007_199_254_740_000n;
        const p = rand();
        const t = Math.floor(rand() * 3);
        if (t === 0) {
          if (p < 0.35) return [`insert into items values ($1, $2, 'n') on conflict (id) do update set qty = excluded.qty`, [k(), k()]];
          if (p < 0.7) return [`update items set qty = qty + 1, note = note || 'u' where id = $1`, [k()]];
          if (p < 0.85) return [`delete from items where id = $1`, [k()]];
          tally.keyChanges++;
          return [`update items set id = $2 where id = $1`, [k(), k()]];
        }
        if (t === 1) {
          if (p < 0.4) return [`insert into pairs values ($1, $2, $3) on conflict do nothing`, [k(), ['x', 'y', "o'q"][Math.floor(rand() * 3)], (rand() * 1e6).toFixed(4)]];
          if (p < 0.7) return [`update pairs set val = val * 2 + 0.0001 where a = $1`, [k()]];
          if (p < 0.85) return [`delete from pairs where a = $1`, [k()]];
          tally.keyChanges++;
          return [`update pairs set a = $2 where a = $1`, [k(), k()]];
        }
        if (p < 0.4) return [`insert into docs values ($1, $2, $3) on conflict (id) do update set body = excluded.body`, [big(), JSON.stringify({ v: rand(), n: { t: 'ü' } }), ['a', 'b']]];
        if (p < 0.75) return [`update docs set body = jsonb_set(coalesce(body, '{}'), '{n}', to_jsonb($2::int)), tags = array_append(tags, 'c') where id = $1`, [big(), k()]];
        if (p < 0.9) return [`delete from docs where id = $1`, [big()]];
        tally.keyChanges++;
        return [`update docs set id = $2 where id = $1`, [big(), big()]];
      };
      const seeds = Array.from({ length: 8 }, (_, i) => 2000 + i);
      const tally = await writeAtRandom({ url: s.srcUrl, seeds, durationMs: WRITE_MS, statement, maxStatements: 4, maxPauseMs: 100 });
      await s.caughtUp(120_000);
      await r.stop();
      assert.ok(tally.commits > 200 && tally.rollbacks > 5 && tally.keyChanges > 50, `the run did too little: ${JSON.stringify(tally)}`);
      const rows = [
        await assertSameRows(s.src, s.dst, 'public.items', 'public.items', ['id']),
        await assertSameRows(s.src, s.dst, 'public.pairs', 'public.pairs', ['a', 'b']),
        await assertSameRows(s.src, s.dst, 'public.docs', 'public.docs', ['id']),
      ];
      assert.ok(rows.every((n) => n > 20), `tables too empty to compare: ${rows.join(', ')}`);
    });

    test('a crash after the sink applied a page and before it was acknowledged replays it to the same final state', async () => {
      const s = await setup(mode, `create table public.ledger (id integer primary key, amount bigint not null, memo text)`, 'public.ledger', { PG2CRATE_PAGE_SIZE: '50' });
      await s.src.query(`insert into ledger select g, g, 'first' from generate_series(1, 300) g`);
      for (let i = 0; i < 10; i++) await s.src.query(`update ledger set amount = amount * 2, memo = memo || '.' where id % 10 = $1`, [i]);
      await s.src.query(`delete from ledger where id % 7 = 0`);
      await s.src.query(`update ledger set id = id + 1000 where id between 100 and 120`);

      const crashing = recorder({ after(call) { if (call.n === 3) throw new SimulatedCrash('crash after applying page 3'); } });
      const first = await s.start({ wrapSink: crashing.wrapSink });
      await assert.rejects(first.done, SimulatedCrash);
      await first.stop();
      const crashed = crashing.sink.calls[2];
      const replaying = recorder();
      const second = await s.start({ wrapSink: replaying.wrapSink });
      await s.caughtUp();
      await second.stop();
      if (mode === 'trigger') assert.deepEqual(replaying.sink.calls[0].ids, crashed.ids, 'the first page after the restart is the crashed page, applied again');
      else assert.ok(replaying.sink.calls.length > 0 && replaying.sink.calls.reduce((n, c) => n + c.ids.length, 0) >= crashed.ids.length, 'the unacknowledged transaction is applied again');
      assert.ok(await assertSameRows(s.src, s.dst, 'public.ledger', 'public.ledger', ['id']) > 200);
      const sum = (db: pg.Pool) => db.query(`select sum(amount)::text as s from ledger`).then((x) => x.rows[0].s);
      assert.equal(await sum(s.dst), await sum(s.src));
    });

    test('SIGKILL of the replicator between apply and acknowledgement, three times under writers, ends equal', async () => {
      const s = await setup(mode, `create table public.ledger (id integer primary key, amount bigint not null, memo text)`, 'public.ledger', { PG2CRATE_PAGE_SIZE: '100' });
      let stop = false;
      let writes = 0;
      const writer = async (seed: number) => {
        const rand = rng(seed);
        while (!stop) {
          const id = 1 + Math.floor(rand() * 2000);
          const op = rand();
          // Overlapping ranges of the writers deadlock now and then; that is the writers' business.
          try {
          if (op < 0.4) await s.src.query(`insert into ledger values ($1, $2, 'w') on conflict (id) do update set amount = ledger.amount + 1`, [id, writes]);
          else if (op < 0.7) await s.src.query(`update ledger set amount = amount * 3 % 1000003, memo = $2 where id between $1 and $1 + 20`, [id, `m${writes}`]);
          else if (op < 0.9) await s.src.query(`delete from ledger where id = $1`, [id]);
          else await s.src.query(`insert into ledger select g, g, 'bulk' from generate_series($1::int, $1::int + 200) g on conflict (id) do update set memo = 'bulk again'`, [id]);
          } catch (err) {
            if ((err as { code?: string }).code !== '40P01') throw err;
          }
          writes++;
        }
      };
      const writers = [11, 23, 37].map(writer);
      try {
        for (let round = 0; round < 3; round++) {
          const child = spawnReplicator(s.env, ['start'], `modes-${mode}`);
          const applied = async () => Number((await s.src.query(`select applied_events::text as n from pg2crate.checkpoint where stream = 'main'`)).rows[0]?.n ?? 0);
          const before = await applied();
          await waitFor(`child ${round} to apply`, async () => (await applied()) > before + 200, 60_000);
          await new Promise((res) => setTimeout(res, 200 + round * 150));
          await child.killHard();
        }
      } finally {
        stop = true;
        await Promise.all(writers);
      }
      const last = spawnReplicator(s.env, ['start'], `modes-${mode}-final`);
      await s.caughtUp(120_000);
      last.kill('SIGTERM');
      assert.equal(await last.exited, 0, `the replicator did not stop cleanly:\n${last.log().slice(-2000)}`);
      assert.ok(writes > 300, `only ${writes} writes`);
      assert.ok(await assertSameRows(s.src, s.dst, 'public.ledger', 'public.ledger', ['id']) > 100);
    });
  });
}
