// Capture shapes side by side: alternative capture functions (bench/capture-shapes.ts) installed
// by hand on the same tables, measured interleaved against no capture, so that each choice in the
// capture function can be priced on its own. This is how the shape in src/source/triggers.ts was
// chosen (issue 11); run it again before changing that shape.
//
// One throwaway cluster, one database: pgbench tables (scale --scale), a 10-column mixed-type bulk
// table, and a small table of awkward types for the semantics check; pg2crate migrated and the
// tables registered (so `current` is exactly what src/ generates). Every round installs each
// variant in turn (the order rotates from round to round) and measures, for each part asked for:
//   oltp  pgbench TPC-B, for each of --clients (a list: 1,8), --duration s: server CPU per transaction from /proc
//         (bench/server-cpu.ts), TPS, WAL bytes per transaction (pg_current_wal_insert_lsn), outbox
//         bytes per event (the partitions with their index);
//   loop  one session runs --loop-iterations TPC-B transactions (pgbench's statements, a COMMIT after
//         each) inside one DO block, after --loop-warmup unmeasured ones (default 500: the variant's
//         functions compiled and planned, the pages read): CPU per transaction of that backend alone (/proc/<pid>/schedstat,
//         ns) with no client, network, parsing or planning of the application's statements in it,
//         nor other server processes (the least noisy view of what capture adds to a transaction;
//         the server-wide figure is kept beside it);
//   stmt  one session runs --stmt-iterations one-row UPDATEs (pgbench_branches), then as many one-row
//         INSERTs (pgbench_history), a COMMIT after each, in a DO block: that backend's CPU per
//         statement and what capture adds to it in µs (the finest view: it prices each step of the
//         floor ladder and each piece of the capture function);
//   bulk  INSERT … SELECT of --bulk-rows rows, UPDATE of all of them, DELETE of all of them.
// Before measuring, every variant (and `current`) is checked against `before` (the shape that fixed
// the settings by SET clauses) in a default session and in one with hostile output settings
// (TimeZone, DateStyle, IntervalStyle, extra_float_digits, bytea_output): the same events
// (or, where a shape writes extra deletes for key changes, the same final state), the session's
// settings unchanged afterwards and within its transaction, and a NOTIFY when the state row says
// the drainer is idle.
// Ratios are taken against the two runs of `none` on either side of each run, then reported as
// min / median / max.
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { addTables } from '../src/commands/tables.js';
import { captureFunctionSql, createTriggersSql } from '../src/capture/triggers.js';
import { startCluster } from '../test/helpers/cluster.js';
import { createPgqQueue, ensurePgq, HANDMADE_SQL, pgqTrigger } from './capture-common.js';
import { FLOOR_SETUP_SQL, installShapeSql, removeShapeSql, withoutSql, type Removal, type Shape, type ShapeTable } from './capture-shapes.js';
import { pgbenchSummary, runPgbench } from './pgbench.js';
import { fmt, fmtSpread, note, printTable, sleep, spread, type BenchArgs, type Spread } from './report.js';
import { postmasterPid, serverCpuSeconds } from './server-cpu.js';

export const description = 'capture function shapes side by side (hand-installed), interleaved against no capture: OLTP CPU/txn, a trigger-call loop, bulk insert/update/delete';

/** The index on the outbox's id: the btree the migration makes, a BRIN instead, or none (issue 21's last lever for bulk writes). */
type OutboxIndex = 'btree' | 'brin' | 'none';
/**
 * The type of the outbox's data column: json, written by to_json, as the migrations make it since
 * 000012_outbox_json; or jsonb, written by to_jsonb, as before it (`current-jsonb`, and the
 * hand-written shapes of capture-shapes.ts, which write to_jsonb).
 */
type OutboxData = 'jsonb' | 'json';
type Variant = { note: string } & ({ kind: 'none' } | { kind: 'pgq' } | { kind: 'current'; without?: Removal[]; outboxIndex?: OutboxIndex; data?: OutboxData } | { kind: 'shape'; shape: Shape });

const S = (level: Shape['level'], settings: Shape['settings'], body: Shape['body'], keyChange: Shape['keyChange'], into: Shape['into'], sink?: Shape['sink']): Shape =>
  ({ level, settings, body, keyChange, into, sink });
const FLOOR = (sink: NonNullable<Shape['sink']>): Shape => S('floor', 'none', 'plpgsql', 'anti-join', 'partition', sink);

export const VARIANTS: Record<string, Variant> = {
  'none': { kind: 'none', note: 'no capture' },
  'empty-row': { kind: 'shape', shape: S('empty-row', 'none', 'plpgsql', 'anti-join', 'parent'), note: 'floor: plpgsql row trigger that returns null' },
  'empty-stmt': { kind: 'shape', shape: S('empty-statement', 'none', 'plpgsql', 'anti-join', 'parent'), note: 'floor: the four statement triggers with transition tables, returning null' },
  'empty-stmt-path': { kind: 'shape', shape: S('empty-statement', 'path-only', 'plpgsql', 'anti-join', 'parent'), note: 'same, SECURITY DEFINER + SET search_path' },
  'empty-stmt-sets': { kind: 'shape', shape: S('empty-statement', 'proconfig', 'plpgsql', 'anti-join', 'parent'), note: 'same, SECURITY DEFINER + search_path + five SET clauses' },
  'bare-row': { kind: 'shape', shape: S('bare-row', 'none', 'plpgsql', 'anti-join', 'partition'), note: 'floor: row trigger, INSERT of to_jsonb(new) into outbox_0, nothing else' },
  'bare-stmt': { kind: 'shape', shape: S('bare-statement', 'none', 'plpgsql', 'anti-join', 'partition'), note: 'floor: statement trigger, INSERT … SELECT to_jsonb(n.*) into outbox_0, nothing else' },
  'bare-row-path': { kind: 'shape', shape: S('bare-row', 'path-only', 'plpgsql', 'anti-join', 'partition'), note: 'bare-row + SECURITY DEFINER + SET search_path' },
  'bare-row-sets': { kind: 'shape', shape: S('bare-row', 'proconfig', 'plpgsql', 'anti-join', 'partition'), note: 'bare-row + SECURITY DEFINER + search_path + five SET clauses' },
  'bare-row-guard': { kind: 'shape', shape: S('bare-row', 'guard', 'plpgsql', 'anti-join', 'partition'), note: 'bare-row + SECURITY DEFINER + search_path + the guard' },
  'bare-row-state': { kind: 'shape', shape: S('bare-row', 'none', 'initplan', 'anti-join', 'parent'), note: 'bare-row + the state row read in an InitPlan, into the parent' },
  'bare-row-parent': { kind: 'shape', shape: S('bare-row', 'none', 'plpgsql', 'anti-join', 'parent'), note: 'bare-row into the parent (routing), constant generation' },
  'bare-row-select': { kind: 'shape', shape: S('bare-row', 'none', 'cte', 'anti-join', 'partition'), note: 'bare-row + the state row read into variables, IF picks the partition, notify when idle' },
  'bare-stmt-parent': { kind: 'shape', shape: S('bare-statement', 'none', 'plpgsql', 'anti-join', 'parent'), note: 'bare-stmt into the parent (routing), constant generation' },
  'bare-stmt-state': { kind: 'shape', shape: S('bare-statement', 'none', 'initplan', 'anti-join', 'parent'), note: 'bare-stmt + the state row read in an InitPlan, into the parent' },
  'bare-stmt-select': { kind: 'shape', shape: S('bare-statement', 'none', 'cte', 'anti-join', 'partition'), note: 'bare-stmt + the state row read into variables, IF picks the partition' },
  'bare-row-secdef': { kind: 'shape', shape: S('bare-row', 'secdef', 'plpgsql', 'anti-join', 'partition'), note: 'bare-row + SECURITY DEFINER (no SET)' },
  'floor-outbox': { kind: 'shape', shape: FLOOR('outbox_0'), note: 'floor: statement trigger, one INSERT … SELECT of the image (key for DELETE) into outbox_0, nothing else' },
  'floor-heap': { kind: 'shape', shape: FLOOR('heap'), note: 'floor-outbox into a heap without index (nextval of a CACHE 1 sequence, xid8 default)' },
  'floor-no-nextval': { kind: 'shape', shape: FLOOR('heap-no-nextval'), note: 'floor-heap with a constant id (no nextval)' },
  'floor-no-xid': { kind: 'shape', shape: FLOOR('heap-no-xid'), note: 'floor-no-nextval with a constant xid (no pg_current_xact_id)' },
  'floor-no-image': { kind: 'shape', shape: FLOOR('heap-no-image'), note: 'floor-no-xid with data NULL (no to_jsonb, a 30-byte row)' },
  'floor-chunked': { kind: 'shape', shape: FLOOR('chunked'), note: 'floor-outbox with one event row per 500 rows of a statement (jsonb_agg)' },
  'bare-row-seqlock': { kind: 'shape', shape: S('bare-row', 'none', 'seqlock', 'anti-join', 'parent'), note: 'bare-row + generation from a sequence, wake-up by an advisory lock probe, into the parent' },
  'bare-stmt-seqlock': { kind: 'shape', shape: S('bare-statement', 'none', 'seqlock', 'anti-join', 'parent'), note: 'bare-stmt + generation from a sequence, wake-up by an advisory lock probe, into the parent' },
  'floor-read': { kind: 'shape', shape: FLOOR('read'), note: 'floor: statement trigger that only counts its transition table' },
  'before': { kind: 'shape', shape: S('statement', 'proconfig', 'plpgsql', 'anti-join', 'parent'), note: 'what src/source/triggers.ts generated before issue 11\'s change (five SET clauses, three statements per call)' },
  'current': { kind: 'current', note: 'a: what src/source/triggers.ts generates' },
  // The ladder (issue 21): from what ships down to the hand-written outbox, one piece at a time.
  'current-direct': { kind: 'current', without: ['routing'], note: 'ladder: current, into outbox_0 instead of the parent' },
  'no-keys': { kind: 'current', without: ['key-change'], note: 'ladder: current without the key-change deletes (no OLD table, no EXCEPT)' },
  'no-keys-secdef': { kind: 'current', without: ['key-change', 'secdef'], note: 'ladder: no-keys, not SECURITY DEFINER' },
  'no-keys-secdef-guard': { kind: 'current', without: ['key-change', 'secdef', 'guard'], note: 'ladder: no-keys-secdef without the settings guard' },
  'no-keys-secdef-guard-state': { kind: 'current', without: ['key-change', 'secdef', 'guard', 'state'], note: 'ladder: no-keys-secdef-guard, generation a constant (no state row read)' },
  'stmt-direct': { kind: 'current', without: ['key-change', 'secdef', 'guard', 'state', 'routing'], note: 'ladder: no-keys-secdef-guard-state into outbox_0 (statement trigger, image into a partition)' },
  'no-nested': { kind: 'current', without: ['nested'], note: 'current without the check for writes of the application\'s triggers inside the statement (the setting read, the depth mark)' },
  'no-state': { kind: 'current', without: ['state'], note: 'current, generation a constant (no state row read, no NOTIFY): the state row alone' },
  'current-brin': { kind: 'current', outboxIndex: 'brin', note: 'current, the outbox indexed by a BRIN on id instead of a btree' },
  'current-noindex': { kind: 'current', outboxIndex: 'none', note: 'current, the outbox without an index on id' },
  'current-jsonb': { kind: 'current', data: 'jsonb', note: 'current as before migration 000012: the image by to_jsonb (jsonb_build_object for keys) into an outbox whose data is jsonb' },
  'handmade': { kind: 'shape', shape: S('handmade', 'none', 'plpgsql', 'anti-join', 'parent'), note: 'ladder: the hand-written row-level outbox of bench/capture.ts' },
  'pgq': { kind: 'pgq', note: 'PgQ: its pgq.jsontriga row trigger into one queue, as bench/capture.ts installs it (needs the pgq extension)' },
  'guard': { kind: 'shape', shape: S('statement', 'guard', 'plpgsql', 'anti-join', 'parent'), note: 'b: SET search_path only; settings checked in the body, changed only when they differ' },
  'path-only': { kind: 'shape', shape: S('statement', 'path-only', 'plpgsql', 'anti-join', 'parent'), note: 'b floor: SET search_path only, no guard (not exact)' },
  'cte': { kind: 'shape', shape: S('statement', 'guard', 'cte', 'anti-join', 'parent'), note: 'c: guard + one statement per call (state, insert, notify)' },
  'row-key': { kind: 'shape', shape: S('statement', 'guard', 'plpgsql', 'row-trigger', 'parent'), note: 'd: guard + key changes by a row trigger AFTER UPDATE OF <key>; no OLD table' },
  'partition': { kind: 'shape', shape: S('statement', 'guard', 'plpgsql', 'anti-join', 'partition'), note: 'f: guard + insert into the generation\'s partition directly' },
  'cte-row-key': { kind: 'shape', shape: S('statement', 'guard', 'cte', 'row-trigger', 'parent'), note: 'c + d' },
  'row-key-partition': { kind: 'shape', shape: S('statement', 'guard', 'plpgsql', 'row-trigger', 'partition'), note: 'd + f' },
  'initplan': { kind: 'shape', shape: S('statement', 'guard', 'initplan', 'anti-join', 'parent'), note: 'c\': guard + one INSERT per call, generation and notify in an InitPlan' },
  'initplan-sets': { kind: 'shape', shape: S('statement', 'proconfig', 'initplan', 'anti-join', 'parent'), note: 'c\' with the five SET clauses instead of the guard' },
  'initplan-row-key': { kind: 'shape', shape: S('statement', 'guard', 'initplan', 'row-trigger', 'parent'), note: 'c\' + d' },
  'row-initplan': { kind: 'shape', shape: S('row', 'guard', 'initplan', 'anti-join', 'parent'), note: 'e: row triggers, guard, one INSERT per call with an InitPlan' },
  'row': { kind: 'shape', shape: S('row', 'guard', 'plpgsql', 'anti-join', 'partition'), note: 'e: row triggers, guard, into the partition' },
  'row-cte': { kind: 'shape', shape: S('row', 'guard', 'cte', 'anti-join', 'parent'), note: 'e: row triggers, guard, one statement per call' },
};

const DEFAULT_VARIANTS = ['none', 'empty-row', 'empty-stmt', 'empty-stmt-sets', 'current', 'guard', 'cte', 'row-key', 'partition', 'row-key-partition', 'cte-row-key', 'row'];

const BULK_TABLE = `create table bulk (
  id bigint primary key, k integer not null, v text not null, amount numeric(12,2), created timestamptz not null,
  ratio double precision, flag boolean, tags text[], payload jsonb, day date
) with (autovacuum_enabled = false)`;
const bulkInsert = (rows: number) => `insert into bulk select g, g % 1000, md5(g::text), (g % 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 second',
  g / 7.0::float8, g % 2 = 0, array['a', g::text], jsonb_build_object('g', g), date '2024-01-01' + (g % 365) from generate_series(1, ${rows}) g`;

// Types whose JSON depends on a session setting, and a key change of every kind (a changed key, a swap).
const SEM_TABLE = `create table sem (
  id int primary key deferrable, ts timestamptz, f8 float8, f4 real, iv interval, b bytea, r tstzrange, dr daterange, pt point, n numeric, t text, a timestamptz[]
)`;
const SEM_ROW = (id: number) => `(${id}, '2024-03-01 12:34:56.789+02', 0.1, 1.1, '1 year 2 mons 3 days 04:05:06.7', '\\x00ff${id}0', '[2024-01-01 00:00+00,2024-01-02 00:00+00)',
  '[2024-01-01,2024-02-01)', '(1.1,2.2)', 12345678901234567890.5, 'x''y ${id}', '{"2024-01-01 00:00:00+00"}')`;
const SEM_SCRIPT = [
  `insert into sem values ${[1, 2, 3, 4, 5, 6].map(SEM_ROW).join(', ')}`,
  `update sem set t = 'changed', f8 = f8 * 3 where id = 1`,
  `update sem set id = id + 100 where id = 2`,
  `update sem set id = case id when 3 then 4 else 3 end where id in (3, 4)`,
  `delete from sem where id = 5`,
  `update sem set id = 5, t = 'moved onto a deleted key' where id = 6`,
  `insert into sem values ${SEM_ROW(7)}`,
  `truncate sem`,
  `insert into sem values ${SEM_ROW(8)}`,
  `update sem set n = n + 1`,
];
const HOSTILE = [`timezone = 'America/New_York'`, `datestyle = 'SQL, DMY'`, `intervalstyle = 'iso_8601'`, 'extra_float_digits = -3', `bytea_output = 'escape'`];

interface OltpRound { tps: number; cpuMsPerTxn: number; walBytesPerTxn: number; eventsPerTxn: number; outboxBytesPerEvent: number }
interface LoopRound { cpuUsPerIteration: number; serverCpuUsPerIteration: number; walBytesPerIteration: number }
interface StmtRound { updateUs: number; insertUs: number }
interface BulkRound { insertS: number; insertCpuS: number; insertWalMB: number; updateS: number; updateCpuS: number; updateWalMB: number; deleteS: number; deleteCpuS: number; deleteWalMB: number; events: number; outboxBytesPerEvent: number }

export async function run(args: BenchArgs): Promise<object> {
  const rounds = Number(args.rounds ?? 3);
  const duration = Number(args.duration ?? 10);
  const scale = Number(args.scale ?? 10);
  const clientCounts = String(args.clients ?? 8).split(',').map(Number);
  const threadsFor = (clients: number) => Math.min(clients, Number(args.threads ?? 2));
  const bulkRows = Number(args['bulk-rows'] ?? 500_000);
  const loopIterations = Number(args['loop-iterations'] ?? 10_000);
  const stmtIterations = Number(args['stmt-iterations'] ?? 4_000);
  const loopWarmup = Number(args['loop-warmup'] ?? 500);
  // pgbench's TPC-B statements, `n` transactions (a COMMIT after each) in one DO block.
  const loopSql = (n: number) => `do $$ declare a int; t int; b int; begin
    for i in 1..${n} loop
      a := (i * 7919) % ${scale * 100_000} + 1; t := i % ${scale * 10} + 1; b := i % ${scale} + 1;
      update pgbench_accounts set abalance = abalance + 1 where aid = a;
      perform abalance from pgbench_accounts where aid = a;
      update pgbench_tellers set tbalance = tbalance + 1 where tid = t;
      update pgbench_branches set bbalance = bbalance + 1 where bid = b;
      insert into pgbench_history (tid, bid, aid, delta, mtime) values (t, b, a, 1, current_timestamp);
      commit;
    end loop; end $$`;
  const parts = new Set((args.parts ?? 'oltp,loop,bulk').split(','));
  const names = (args.variants ?? DEFAULT_VARIANTS.join(',')).split(',');
  for (const n of names) if (!VARIANTS[n]) throw new Error(`unknown variant ${n}; known: ${Object.keys(VARIANTS).join(', ')}`);
  if (!names.includes('none')) names.unshift('none');

  const cluster = await startCluster();
  const url = await cluster.createDatabase('variants');
  const db = new pg.Client({ connectionString: url });
  db.on('error', (err) => process.stderr.write(`bench: connection failed: ${err.message}\n`));
  try {
    await db.connect();
    const pm = await postmasterPid(db);
    const serverVersion = (await db.query<{ v: string }>("select current_setting('server_version') as v")).rows[0].v;
    note(`setting up: pgbench -i -s ${scale} …`);
    await runPgbench(['-i', '-q', '-s', String(scale), url]);
    await db.query(BULK_TABLE);
    await db.query(SEM_TABLE);
    for (const q of [...FLOOR_SETUP_SQL, ...HANDMADE_SQL]) await db.query(q);
    // PgQ beside the ladder, so that the floor and the competitor come from the same run.
    let pgqEvents = '';
    if (names.includes('pgq')) {
      const why = await ensurePgq(db, note);
      if (why) {
        note(`NOTE: variant pgq left out: ${why}`);
        names.splice(names.indexOf('pgq'), 1);
      } else {
        pgqEvents = `, ${await createPgqQueue(db)}`;
      }
    }
    // Every event table, emptied before each measured run (a parent's TRUNCATE takes its children).
    const emptyEvents = `truncate pg2crate.outbox, bench_floor.heap, handmade_outbox${pgqEvents}`;
    const logger = createLogger('warn', { write: (s: string) => { process.stderr.write(s); } });
    const runner = new Runner(loadConfig({ DATABASE_URL: url, TARGET_DATABASE_URL: cluster.url() }), logger);
    try {
      await migrate(runner);
      await addTables(runner, [
        { schema: 'public', table: 'pgbench_accounts' }, { schema: 'public', table: 'pgbench_branches' },
        { schema: 'public', table: 'pgbench_tellers' }, { schema: 'public', table: 'pgbench_history', keyColumns: ['aid', 'mtime'] },
        { schema: 'public', table: 'bulk' }, { schema: 'public', table: 'sem' },
      ]);
    } finally {
      await runner.close();
    }
    const registered = (await db.query<{ id: number; source_table: string; key_columns: string[]; key_origin: ShapeTable['keyOrigin'] }>(
      'select id, source_table, key_columns, key_origin from pg2crate.tables order by id')).rows;
    const tables = new Map<string, ShapeTable>(registered.map((r) => [r.source_table, { id: r.id, schema: 'public', table: r.source_table, keyColumns: r.key_columns, keyOrigin: r.key_origin }]));
    const PGBENCH = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history'];

    // Every variant but those that say otherwise writes into the outbox with the migration's btree.
    let outboxIndex: OutboxIndex = 'btree';
    let outboxData: OutboxData = 'json';
    const install = async (name: string, which: string[]) => {
      const v = VARIANTS[name];
      await db.query('begin');
      const wanted = v.kind === 'current' ? v.outboxIndex ?? 'btree' : 'btree';
      if (wanted !== outboxIndex) {
        await db.query('drop index if exists pg2crate.outbox_id_idx');
        await db.query('drop index if exists pg2crate.bench_outbox_id_brin');
        if (wanted === 'btree') await db.query('create index outbox_id_idx on pg2crate.outbox (id)');
        if (wanted === 'brin') await db.query('create index bench_outbox_id_brin on pg2crate.outbox using brin (id)');
        outboxIndex = wanted;
      }
      const data = v.kind === 'current' ? v.data ?? 'json' : v.kind === 'shape' ? 'jsonb' : outboxData;
      if (data !== outboxData) {
        await db.query(`alter table pg2crate.outbox alter column data type ${data} using data::${data}`);
        outboxData = data;
      }
      for (const tn of which) {
        const t = tables.get(tn)!;
        const stmts = v.kind === 'none' ? removeShapeSql(t)
          : v.kind === 'pgq' ? [...removeShapeSql(t), pgqTrigger(`${t.schema}.${t.table}`, t.table === 'pgbench_history' ? 'aid,mtime' : undefined)]
          : v.kind === 'current'
            ? [...removeShapeSql(t), ...withoutSql([captureFunctionSql('pg2crate', { tableId: t.id, sourceSchema: t.schema, sourceTable: t.table, keyColumns: t.keyColumns, keyOrigin: t.keyOrigin }),
              ...createTriggersSql('pg2crate', { tableId: t.id, sourceSchema: t.schema, sourceTable: t.table, keyColumns: t.keyColumns, keyOrigin: t.keyOrigin })], v.without ?? [])]
              .map((sql) => (data === 'jsonb' ? sql.replaceAll('pg_catalog.to_json(', 'pg_catalog.to_jsonb(').replaceAll('pg_catalog.json_build_object(', 'pg_catalog.jsonb_build_object(') : sql))
            : installShapeSql(t, v.shape);
        for (const s of stmts) await db.query(s);
      }
      await db.query('commit');
    };

    // --- semantics: every variant against `before`, in a hostile session and in a default one ----
    // `before` set the five output settings by SET clauses: its events are the reference. The
    // hostile session's settings must be the same afterwards, and also inside its transaction right
    // after a captured write (a transaction-local change made by a function outlives the call
    // unless the function sets it back).
    const semantics: Record<string, { sameEvents: boolean; sameFinalState: boolean; sameEventsDefaultSession: boolean; settingsKept: boolean; settingsKeptInTransaction: boolean; notified: boolean }> = {};
    const semId = tables.get('sem')!.id;
    const readSettings = async (c: pg.Client) => {
      const r = (await c.query<{ tz: string; ds: string; is: string; efd: string; bo: string }>(
        `select current_setting('TimeZone') tz, current_setting('DateStyle') ds, current_setting('IntervalStyle') "is", current_setting('extra_float_digits') efd, current_setting('bytea_output') bo`)).rows[0];
      return r.tz === 'America/New_York' && r.ds === 'SQL, DMY' && r.is === 'iso_8601' && r.efd === '-3' && r.bo === 'escape';
    };
    const semEvents = async () => (await db.query<{ op: string; data: string | null; key: string | null }>(
      `select op, data::jsonb::text as data, (select jsonb_object_agg(k, o.data -> k) from unnest(array['id']) k)::text as key from pg2crate.outbox o where table_id = $1 order by id`, [semId])).rows;
    const semRun = async (name: string) => {
      await install(name, ['sem']);
      const s = new pg.Client({ connectionString: url });
      await s.connect();
      try {
        // a default session first (the fast path of a guard)
        await s.query('truncate sem');
        await db.query('truncate pg2crate.outbox');
        for (const stmt of SEM_SCRIPT) await s.query(stmt);
        const defaultEvents = await semEvents();
        for (const set of HOSTILE) await s.query(`set ${set}`);
        await s.query('truncate sem');
        await db.query('truncate pg2crate.outbox');
        for (const stmt of SEM_SCRIPT) await s.query(stmt);
        const settingsKept = await readSettings(s);
        const events = await semEvents();
        await s.query('begin');
        await s.query(`insert into sem values ${SEM_ROW(6)}`);
        await s.query(`update sem set id = 66 where id = 6`);
        const settingsKeptInTransaction = await readSettings(s);
        await s.query('rollback');
        // NOTIFY while the drainer is idle
        const listener = new pg.Client({ connectionString: url });
        await listener.connect();
        let notified = false;
        listener.on('notification', () => { notified = true; });
        await listener.query('listen pg2crate_wakeup');
        await db.query('update pg2crate.state set idle = true');
        await s.query(`insert into sem values ${SEM_ROW(9)}`);
        for (let i = 0; i < 40 && !notified; i++) await sleep(50);
        await db.query('update pg2crate.state set idle = false');
        await listener.end();
        return { events, defaultEvents, settingsKept, settingsKeptInTransaction, notified };
      } finally {
        await s.end();
      }
    };
    const finalState = (events: { op: string; data: string | null; key: string | null }[]) => {
      const m = new Map<string, string>();
      for (const e of events) {
        if (e.op === 'T') m.clear();
        else if (e.op === 'D') m.delete(e.key!);
        else m.set(e.key!, e.data!);
      }
      return JSON.stringify([...m.entries()].sort());
    };
    const reference = await semRun('before');
    if (!reference.settingsKept || !reference.settingsKeptInTransaction || !reference.notified) note('warning: before itself changed the session settings or did not notify');
    for (const name of new Set([...names, 'current'])) {
      const v = VARIANTS[name];
      if (v.kind === 'none' || v.kind === 'pgq' || (v.kind === 'current' && v.without?.length) || (v.kind === 'shape' && /^(empty|bare|floor|handmade)/.test(v.shape.level))) continue;
      const r = await semRun(name);
      semantics[name] = {
        sameEventsDefaultSession: JSON.stringify(r.defaultEvents) === JSON.stringify(reference.events),
        settingsKeptInTransaction: r.settingsKeptInTransaction,
        sameEvents: JSON.stringify(r.events) === JSON.stringify(reference.events),
        sameFinalState: finalState(r.events) === finalState(reference.events),
        settingsKept: r.settingsKept,
        notified: r.notified,
      };
    }
    await install('none', ['sem']);
    printTable('semantics against before (events of inserts, updates, key changes, a swap, delete, truncate; in a hostile session unless said)',
      ['variant', 'same events', 'same final state', 'same events, default session', 'settings kept', 'settings kept within the transaction', 'notifies when idle'],
      Object.entries(semantics).map(([n, s]) => [n, String(s.sameEvents), String(s.sameFinalState), String(s.sameEventsDefaultSession), String(s.settingsKept), String(s.settingsKeptInTransaction), String(s.notified)]));
    if (!names.includes('current')) names.push('current');

    // --- measurement ----------------------------------------------------------------------------
    const walNow = async (): Promise<bigint> => BigInt((await db.query<{ b: string }>(`select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::text as b`)).rows[0].b.split('.')[0]);
    const outboxFigures = async () => (await db.query<{ n: string; bytes: string }>(
      `select (select count(*) from pg2crate.outbox) as n,
              (select sum(pg_total_relation_size(c.oid)) from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = 'pg2crate.outbox'::regclass) as bytes`)).rows[0];
    // This session's backend alone, in ns (/proc/<pid>/schedstat): what the loop reports, free of
    // the other server processes (checkpointer, walwriter, autovacuum) and of tick granularity.
    const backendPid = (await db.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0].pid;
    const backendCpuS = () => Number(readFileSync(`/proc/${backendPid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
    const measure = async <T>(f: () => Promise<T>): Promise<{ result: T; cpuS: number; backendCpuS: number; walBytes: number; seconds: number }> => {
      await db.query('checkpoint');
      await sleep(300);
      const b0 = backendCpuS();
      const cpu0 = serverCpuSeconds(pm);
      const wal0 = await walNow();
      const t0 = performance.now();
      const result = await f();
      const seconds = (performance.now() - t0) / 1000;
      await sleep(200); // let the postmaster reap exited backends, so that their CPU is in its cutime
      const b1 = backendCpuS();
      return { result, cpuS: serverCpuSeconds(pm) - cpu0, backendCpuS: b1 - b0, walBytes: Number((await walNow()) - wal0), seconds };
    };

    const oltp: Record<number, Record<string, OltpRound[]>> = Object.fromEntries(clientCounts.map((c) => [c, {}]));
    const loop: Record<string, LoopRound[]> = {};
    const stmt: Record<string, StmtRound[]> = {};
    const bulk: Record<string, BulkRound[]> = {};
    for (const n of names) { for (const c of clientCounts) oltp[c][n] = []; loop[n] = []; bulk[n] = []; stmt[n] = []; }

    // Each variant runs between two runs of `none` (none, a, none, b, none …; the order of the
    // others rotates from round to round), and its ratio is taken against the mean of those two:
    // on a shared machine the load drifts within minutes, so the baseline must be adjacent.
    const others = names.filter((n) => n !== 'none');
    const baseline: Record<string, [number, number][]> = Object.fromEntries(others.map((n) => [n, []]));
    let nones = 0;
    for (let r = 0; r < rounds; r++) {
      const rotated = others.map((_, i) => others[(i + r) % others.length]);
      const order = ['none', ...rotated.flatMap((n) => [n, 'none'])];
      for (const name of order) {
        if (name === 'none') nones++;
        else baseline[name].push([nones - 1, nones]);
        await install(name, [...PGBENCH, 'bulk']);
        for (const clients of parts.has('oltp') ? clientCounts : []) {
          await db.query('vacuum analyze pgbench_branches, pgbench_tellers, pgbench_accounts');
          await db.query('truncate pgbench_history');
          await db.query(emptyEvents);
          const m = await measure(() => runPgbench(['-n', '-c', String(clients), '-j', String(threadsFor(clients)), '-T', String(duration), url]));
          const { txns, tps } = pgbenchSummary(m.result);
          const ob = await outboxFigures();
          const events = Number(ob.n);
          const round: OltpRound = { tps, cpuMsPerTxn: (m.cpuS * 1000) / txns, walBytesPerTxn: m.walBytes / txns, eventsPerTxn: events / txns, outboxBytesPerEvent: events ? Number(ob.bytes) / events : 0 };
          oltp[clients][name].push(round);
          note(`  round ${r + 1}/${rounds} oltp ${clients}c ${name.padEnd(22)} ${fmt(tps, 0)} tps, ${fmt(round.cpuMsPerTxn, 3)} ms CPU/txn, ${fmt(round.walBytesPerTxn, 0)} WAL B/txn, ${fmt(round.eventsPerTxn, 2)} events/txn`);
        }
        if (parts.has('loop')) {
          // Every table the loop updates vacuumed, then a short unmeasured run: the variant's
          // functions compiled and planned in this session and the rows' pages read, so that the
          // measured run prices the capture, not a first call or a cold page (each variant
          // otherwise paid those anew, and the ladder's steps drowned in them).
          await db.query('vacuum pgbench_accounts, pgbench_tellers, pgbench_branches');
          if (loopWarmup > 0) await db.query(loopSql(loopWarmup));
          await db.query('truncate pgbench_history');
          await db.query(emptyEvents);
          const m = await measure(() => db.query(loopSql(loopIterations)));
          loop[name].push({ cpuUsPerIteration: (m.backendCpuS * 1e6) / loopIterations, serverCpuUsPerIteration: (m.cpuS * 1e6) / loopIterations, walBytesPerIteration: m.walBytes / loopIterations });
          note(`  round ${r + 1}/${rounds} loop ${name.padEnd(22)} ${fmt((m.backendCpuS * 1e6) / loopIterations, 1)} µs backend CPU (${fmt((m.cpuS * 1e6) / loopIterations, 1)} server) per TPC-B transaction, ${fmt(m.walBytes / loopIterations, 0)} WAL B`);
        }
        if (parts.has('stmt')) {
          await db.query('truncate pgbench_history');
          await db.query(emptyEvents);
          const one = async (sql: string) => {
            // warm up first: the function's compilation and its plans are made once per session
            await db.query(`do $$ begin for i in 1..50 loop ${sql.replaceAll(' i,', ' -i,')}; commit; end loop; end $$`);
            const m = await measure(() => db.query(`do $$ begin for i in 1..${stmtIterations} loop ${sql}; commit; end loop; end $$`));
            return (m.backendCpuS * 1e6) / stmtIterations;
          };
          const s1: StmtRound = {
            updateUs: await one('update pgbench_branches set bbalance = bbalance + 1 where bid = 1'),
            insertUs: await one(`insert into pgbench_history (tid, bid, aid, delta, mtime) values (1, 1, i, 1, timestamp '2024-01-01')`),
          };
          stmt[name].push(s1);
          note(`  round ${r + 1}/${rounds} stmt ${name.padEnd(22)} one-row UPDATE ${fmt(s1.updateUs, 1)} µs, one-row INSERT ${fmt(s1.insertUs, 1)} µs backend CPU (with its commit)`);
        }
        if (parts.has('bulk')) {
          await db.query('truncate bulk');
          await db.query(emptyEvents);
          const ins = await measure(() => db.query(bulkInsert(bulkRows)));
          const ob = await outboxFigures();
          await db.query(emptyEvents);
          await db.query('vacuum analyze bulk');
          const upd = await measure(() => db.query('update bulk set k = k + 1, amount = amount + 1'));
          const events = Number((await outboxFigures()).n);
          await db.query(emptyEvents);
          await db.query('vacuum analyze bulk');
          const del = await measure(() => db.query('delete from bulk'));
          await db.query(emptyEvents);
          const b: BulkRound = {
            insertS: ins.seconds, insertCpuS: ins.cpuS, insertWalMB: ins.walBytes / 1e6,
            updateS: upd.seconds, updateCpuS: upd.cpuS, updateWalMB: upd.walBytes / 1e6,
            deleteS: del.seconds, deleteCpuS: del.cpuS, deleteWalMB: del.walBytes / 1e6,
            events, outboxBytesPerEvent: Number(ob.n) ? Number(ob.bytes) / Number(ob.n) : 0,
          };
          bulk[name].push(b);
          note(`  round ${r + 1}/${rounds} bulk ${name.padEnd(22)} insert ${fmt(ins.seconds, 2)} s (${fmt(ins.cpuS, 2)} CPU), update ${fmt(upd.seconds, 2)} s (${fmt(upd.cpuS, 2)}), delete ${fmt(del.seconds, 2)} s (${fmt(del.cpuS, 2)})`);
        }
      }
    }

    // --- figures --------------------------------------------------------------------------------
    const ratio = <T>(rs: Record<string, T[]>, name: string, f: (x: T) => number): Spread => name === 'none'
      ? spread(rs.none.map(() => 1))
      : spread(rs[name].map((x, i) => f(x) / ((f(rs.none[baseline[name][i][0]]) + f(rs.none[baseline[name][i][1]])) / 2)));
    const abs = <T>(rs: Record<string, T[]>, name: string, f: (x: T) => number): Spread => spread(rs[name].map(f));
    // What capture adds, in the measure's own unit: the run minus the mean of the `none` runs beside it.
    const added = <T>(rs: Record<string, T[]>, name: string, f: (x: T) => number): Spread => name === 'none'
      ? spread(rs.none.map(() => 0))
      : spread(rs[name].map((x, i) => f(x) - (f(rs.none[baseline[name][i][0]]) + f(rs.none[baseline[name][i][1]])) / 2));
    const figures: Record<string, Record<string, Spread>> = {};
    for (const name of names) {
      const f: Record<string, Spread> = {};
      for (const c of parts.has('oltp') ? clientCounts : []) {
        const o = oltp[c];
        f[`oltp${c}CpuMsPerTxn`] = abs(o, name, (x) => x.cpuMsPerTxn);
        f[`oltp${c}CpuRatio`] = ratio(o, name, (x) => x.cpuMsPerTxn);
        f[`oltp${c}TpsRatio`] = ratio(o, name, (x) => x.tps);
        f[`oltp${c}WalRatio`] = ratio(o, name, (x) => x.walBytesPerTxn);
        f[`oltp${c}WalBytesPerTxn`] = abs(o, name, (x) => x.walBytesPerTxn);
        f[`oltp${c}OutboxBytesPerEvent`] = abs(o, name, (x) => x.outboxBytesPerEvent);
      }
      if (parts.has('loop')) {
        f.loopCpuUs = abs(loop, name, (x) => x.cpuUsPerIteration);
        f.loopCpuRatio = ratio(loop, name, (x) => x.cpuUsPerIteration);
        f.loopServerCpuRatio = ratio(loop, name, (x) => x.serverCpuUsPerIteration);
        f.loopWalBytes = abs(loop, name, (x) => x.walBytesPerIteration);
      }
      if (parts.has('stmt')) {
        f.stmtUpdateUs = abs(stmt, name, (x) => x.updateUs);
        f.stmtUpdateAddedUs = added(stmt, name, (x) => x.updateUs);
        f.stmtInsertUs = abs(stmt, name, (x) => x.insertUs);
        f.stmtInsertAddedUs = added(stmt, name, (x) => x.insertUs);
      }
      if (parts.has('bulk')) {
        f.insertCpuRatio = ratio(bulk, name, (x) => x.insertCpuS);
        f.insertWallRatio = ratio(bulk, name, (x) => x.insertS);
        f.insertWalRatio = ratio(bulk, name, (x) => x.insertWalMB);
        f.updateCpuRatio = ratio(bulk, name, (x) => x.updateCpuS);
        f.updateWallRatio = ratio(bulk, name, (x) => x.updateS);
        f.updateWalRatio = ratio(bulk, name, (x) => x.updateWalMB);
        f.deleteCpuRatio = ratio(bulk, name, (x) => x.deleteCpuS);
        f.deleteWallRatio = ratio(bulk, name, (x) => x.deleteS);
        f.bulkOutboxBytesPerEvent = abs(bulk, name, (x) => x.outboxBytesPerEvent);
      }
      figures[name] = f;
    }
    const r2 = (s: Spread | undefined) => (s ? fmtSpread(s, 2) : '');
    for (const c of parts.has('oltp') ? clientCounts : []) {
      printTable(`OLTP (pgbench TPC-B, ${c} client(s), ${rounds} × ${duration} s, scale ${scale}); ratios to none, min / median / max`,
        ['variant', 'CPU ms/txn', 'CPU/txn ratio', 'TPS ratio', 'WAL ratio', 'outbox B/event'],
        names.map((n) => [n, fmtSpread(figures[n][`oltp${c}CpuMsPerTxn`], 3), r2(figures[n][`oltp${c}CpuRatio`]), r2(figures[n][`oltp${c}TpsRatio`]), r2(figures[n][`oltp${c}WalRatio`]),
          fmt(figures[n][`oltp${c}OutboxBytesPerEvent`].median, 0)]));
    }
    if (parts.has('loop')) {
      printTable(`the loop (${loopIterations.toLocaleString('en')} TPC-B transactions in one DO block, one session); ratios to none, min / median / max`,
        ['variant', 'loop backend µs/iter', 'loop backend ratio', 'loop server ratio', 'loop WAL B/iter'],
        names.map((n) => [n, fmtSpread(figures[n].loopCpuUs, 1), r2(figures[n].loopCpuRatio), r2(figures[n].loopServerCpuRatio), fmt(figures[n].loopWalBytes.median, 0)]));
    }
    if (parts.has('stmt')) {
      printTable(`one statement (${stmtIterations.toLocaleString('en')} one-row UPDATEs of pgbench_branches, then as many one-row INSERTs into pgbench_history, each with its COMMIT, in a DO block): backend CPU µs per statement, and what capture adds to it; min / median / max`,
        ['variant', 'UPDATE µs', 'UPDATE added µs', 'INSERT µs', 'INSERT added µs'],
        names.map((n) => [n, fmtSpread(figures[n].stmtUpdateUs, 1), fmtSpread(figures[n].stmtUpdateAddedUs, 1), fmtSpread(figures[n].stmtInsertUs, 1), fmtSpread(figures[n].stmtInsertAddedUs, 1)]));
    }
    if (parts.has('bulk')) {
      printTable(`bulk (${bulkRows.toLocaleString('en')} rows, 10 columns; ${rounds} rounds); server CPU and wall ratios to none, min / median / max`,
        ['variant', 'INSERT CPU', 'INSERT wall', 'INSERT WAL', 'UPDATE CPU', 'UPDATE wall', 'UPDATE WAL', 'DELETE CPU', 'DELETE wall', 'outbox B/event'],
        names.map((n) => [n, r2(figures[n].insertCpuRatio), r2(figures[n].insertWallRatio), r2(figures[n].insertWalRatio), r2(figures[n].updateCpuRatio), r2(figures[n].updateWallRatio),
          r2(figures[n].updateWalRatio), r2(figures[n].deleteCpuRatio), r2(figures[n].deleteWallRatio), figures[n].bulkOutboxBytesPerEvent ? fmt(figures[n].bulkOutboxBytesPerEvent.median, 0) : '']));
    }
    note(`\nvariants:\n${names.map((n) => `  ${n.padEnd(22)} ${VARIANTS[n].note}`).join('\n')}`);
    return {
      settings: { rounds, duration, scale, clientCounts, bulkRows, loopIterations, stmtIterations, parts: [...parts], variants: names, serverVersion },
      variants: Object.fromEntries(names.map((n) => [n, VARIANTS[n]])),
      semantics,
      figures,
      rounds: { oltp, loop, stmt, bulk },
      baselineRuns: baseline,
    };
  } finally {
    await db.end().catch(() => {});
    await cluster.stop();
  }
}
