// Capture cost beside a peer: what trigger capture costs the application's own writes, with no
// consumer running, for no capture, pg2crate's capture and PgQ's `pgq.jsontriga` on the same tables.
//
// Three databases on one throwaway cluster, identical but for capture:
//   none      no triggers;
//   pg2crate  pg2crate migrated, the tables captured through `tables add` (whatever
//             src/source/triggers.ts generates today);
//   pgq       the pgq extension, one queue, an AFTER … FOR EACH ROW `pgq.jsontriga('bench')` trigger
//             on each table (pgbench_history, which has no primary key, with `pkey=aid,mtime`, as
//             pg2crate is given key columns (aid, mtime) for it);
//   handmade  the outbox a user could write by hand in ten lines (HANDMADE_SQL): one row-level
//             plpgsql trigger writing tg_op and to_jsonb of the row into a table with a bigserial
//             primary key and the writer's xid. No generations, no wake-up, no key changes, no
//             TRUNCATE, no protection against the writer's search_path or settings: the reference,
//             not a capture one could replicate from.
// PgQ ships as the Debian package postgresql-<major>-pgq3; when the extension is missing this script
// installs it with apt-get (saying so); without apt, or when that fails, it says why and runs the
// other two variants. PgQ's ticker (pgqd) is not needed: nothing consumes here, and events are
// written the same with or without a ticker.
//
// Rounds are interleaved: every repetition runs each variant once, the order rotating from one
// repetition to the next, so drift on the machine hits all alike; ratios are taken per repetition.
//   OLTP  pgbench TPC-B (default script), scale --scale, for each of --clients (default 1 and 8),
//         --duration s per run. Main figure: server CPU per transaction, read from /proc
//         (bench/server-cpu.ts: the cluster's own processes only, not pgbench). TPS beside it as
//         indicative (the client shares the 2 cores). WAL bytes per transaction from
//         pg_current_wal_insert_lsn(), capture storage bytes per event (the event tables with
//         their indexes and TOAST, emptied before each run).
//   bulk  on a 10-column mixed-type table: INSERT … SELECT of --bulk-rows rows, UPDATE of all of
//         them, DELETE of all of them; seconds, server CPU seconds, WAL MB, bytes per event.
// Before every measured run: pgbench's own preparation (vacuum branches and tellers, truncate
// history) or a truncate of the bulk table, TRUNCATE of the event tables, CHECKPOINT.
// pg2crate's triggers NOTIFY only while its state row says the drainer is idle; no drainer has run
// here, so no run notifies (read from the database and printed, not assumed). PgQ never notifies
// from its trigger.
import pg from 'pg';
import { startCluster } from '../test/helpers/cluster.js';
import {
  BULK_TABLE, bulkRound, captureWithPg2crate, createPgqQueue, ensurePgq, HANDMADE_SQL, handmadeTrigger, pg2crateOutbox, pgbenchStep, pgqTrigger, treeBytesSql, type BulkRun, type Measured,
} from './capture-common.js';
import { pgbenchSummary, runPgbench } from './pgbench.js';
import { fmt, fmtSpread, note, printTable, spread, type BenchArgs, type Spread } from './report.js';
import { postmasterPid } from './server-cpu.js';

export const description = 'capture cost: pgbench TPC-B (1 and 8 clients) and 500k-row bulk INSERT/UPDATE/DELETE; no capture vs pg2crate vs PgQ vs a hand-written row-level outbox, interleaved';

const PGBENCH_TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history'];

type Name = 'none' | 'pg2crate' | 'pgq' | 'handmade';

interface Variant extends Measured {
  name: Name;
  url: string;
}

interface OltpRun { tps: number; txns: number; cpuMsPerTxn: number; walBytesPerTxn: number; eventsPerTxn: number; bytesPerEvent: number }

const say = (text: string) => note(text);

export async function run(args: BenchArgs): Promise<object> {
  const reps = Number(args.reps ?? args.rounds ?? 3);
  const duration = Number(args.duration ?? 20);
  const scale = Number(args.scale ?? 10);
  const clientCounts = (args.clients ?? '1,8').split(',').map(Number);
  const bulkRows = Number(args['bulk-rows'] ?? 500_000);
  const skipPgq = args.pgq === 'false' || args.pgq === 'off';
  const parts = new Set((args.parts ?? 'oltp,bulk').split(','));

  const cluster = await startCluster();
  const admin = new pg.Client({ connectionString: cluster.url() });
  admin.on('error', (err) => process.stderr.write(`bench: connection failed: ${err.message}\n`));
  const variants: Variant[] = [];
  let pgqNote: string | null = skipPgq ? 'PgQ left out (--pgq=off)' : null;
  try {
    await admin.connect();
    const pm = await postmasterPid(admin);
    const serverVersion = (await admin.query<{ v: string }>("select current_setting('server_version') as v")).rows[0].v;
    if (!skipPgq) pgqNote = await ensurePgq(admin, say);
    if (pgqNote) say(`NOTE: PgQ variant skipped: ${pgqNote}`);
    const names: Name[] = pgqNote ? ['none', 'pg2crate', 'handmade'] : ['none', 'pg2crate', 'pgq', 'handmade'];
    let pgqVersion: string | null = null;

    for (const name of names) {
      const url = await cluster.createDatabase(`cap_${name}`);
      say(`setting up ${name}: pgbench -i -s ${scale} …`);
      await runPgbench(['-i', '-q', '-s', String(scale), url]);
      const db = new pg.Client({ connectionString: url });
      db.on('error', (err) => process.stderr.write(`bench: connection failed: ${err.message}\n`));
      await db.connect();
      await db.query(BULK_TABLE);
      let events: Variant['events'] = async () => ({ n: 0, bytes: 0 });
      let empty: Variant['empty'] = async () => {};
      if (name === 'pg2crate') {
        await captureWithPg2crate(url, cluster.url(), [
          ...PGBENCH_TABLES.map((table) => ({ schema: 'public', table, ...(table === 'pgbench_history' ? { keyColumns: ['aid', 'mtime'] } : {}) })),
          { schema: 'public', table: 'bulk' },
        ]);
        ({ events, empty } = pg2crateOutbox(db));
      } else if (name === 'pgq') {
        const table = await createPgqQueue(db);
        for (const t of [...PGBENCH_TABLES, 'bulk']) await db.query(pgqTrigger(t, t === 'pgbench_history' ? 'aid,mtime' : undefined));
        pgqVersion = (await db.query<{ v: string }>(`select extversion as v from pg_extension where extname = 'pgq'`)).rows[0].v;
        events = async () => { const r = (await db.query<{ n: string; bytes: string }>(treeBytesSql(table))).rows[0]; return { n: Number(r.n), bytes: Number(r.bytes) }; };
        empty = async () => { await db.query(`truncate ${table}`); };
      } else if (name === 'handmade') {
        for (const sql of [...HANDMADE_SQL, ...[...PGBENCH_TABLES, 'bulk'].map(handmadeTrigger)]) await db.query(sql);
        events = async () => { const r = (await db.query<{ n: string; bytes: string }>(treeBytesSql('handmade_outbox'))).rows[0]; return { n: Number(r.n), bytes: Number(r.bytes) }; };
        empty = async () => { await db.query('truncate handmade_outbox'); };
      }
      variants.push({ name, url, db, events, empty });
    }
    const cap = variants.find((v) => v.name === 'pg2crate')!;
    const idle = (await cap.db.query<{ idle: boolean }>('select idle from pg2crate.state')).rows[0].idle;
    // src/source/triggers.ts changes over time (and may be uncommitted): keep what was measured.
    const captured = (await cap.db.query<{ triggers: string[]; functions: string; md5: string }>(
      `select (select array_agg(pg_get_triggerdef(t.oid) order by t.tgname) from pg_trigger t where t.tgrelid = 'pgbench_accounts'::regclass and not t.tgisinternal) as triggers,
              (select string_agg(pg_get_functiondef(p.oid), E'\n' order by p.proname) from pg_proc p where p.pronamespace = 'pg2crate'::regnamespace and p.oid in (select tgfoid from pg_trigger where tgrelid = 'pgbench_accounts'::regclass)) as functions,
              md5((select string_agg(pg_get_functiondef(p.oid), E'\n' order by p.proname) from pg_proc p where p.pronamespace = 'pg2crate'::regnamespace)) as md5`,
    )).rows[0];
    say(`pg2crate capture measured: ${captured.triggers.length} trigger(s) on pgbench_accounts (${captured.triggers.map((t) => /FOR EACH (ROW|STATEMENT)/.exec(t)?.[1] ?? '?').join(', ')}), md5 of the pg2crate schema's functions ${captured.md5}`);
    await admin.query('checkpoint');

    const order = (rep: number) => variants.map((_, i) => variants[(i + rep) % variants.length]);

    const oltp: Record<string, Record<Name, OltpRun[]>> = {};
    for (const c of clientCounts) oltp[c] = { none: [], pg2crate: [], pgq: [], handmade: [] };
    if (parts.has('oltp')) {
      for (let r = 0; r < reps; r++) {
        for (const clients of clientCounts) {
          for (const v of order(r)) {
            const { out, cpuSeconds: cpu, walBytes: wal } = await pgbenchStep(admin, pm, async () => {
              await v.db.query('vacuum analyze pgbench_branches, pgbench_tellers');
              await v.db.query('truncate pgbench_history');
              await v.empty();
            }, ['-n', '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(duration), v.url]);
            const { txns, tps } = pgbenchSummary(out);
            const ev = await v.events();
            const run: OltpRun = { tps, txns, cpuMsPerTxn: (cpu * 1000) / txns, walBytesPerTxn: wal / txns, eventsPerTxn: ev.n / txns, bytesPerEvent: ev.n ? ev.bytes / ev.n : 0 };
            oltp[clients][v.name].push(run);
            say(`  rep ${r + 1}/${reps} pgbench ${clients} client(s) ${v.name.padEnd(8)} ${fmt(run.cpuMsPerTxn, 3)} ms server CPU/txn, ${fmt(tps, 0)} tps, ${fmt(run.walBytesPerTxn, 0)} WAL B/txn${v.name !== 'none' ? `, ${fmt(run.eventsPerTxn, 2)} events/txn, ${fmt(run.bytesPerEvent, 0)} B/event` : ''}`);
          }
        }
      }
    }

    const bulk: Record<Name, BulkRun[]> = { none: [], pg2crate: [], pgq: [], handmade: [] };
    if (parts.has('bulk')) {
      for (let r = 0; r < reps; r++) {
        for (const v of order(r)) {
          const { insert: ins, update: upd, delete: del } = await bulkRound(admin, pm, v, bulkRows);
          bulk[v.name].push({ insert: ins, update: upd, delete: del });
          say(`  rep ${r + 1}/${reps} bulk ${v.name.padEnd(8)} insert ${fmt(ins.seconds, 2)} s, update ${fmt(upd.seconds, 2)} s, delete ${fmt(del.seconds, 2)} s${v.name !== 'none' ? ` (${ins.events} + ${upd.events} + ${del.events} events)` : ''}`);
        }
      }
    }

    // Figures: each variant's spread, and its ratio to `none` taken within each repetition.
    const present = variants.map((v) => v.name);
    const fig = <T>(runs: Record<Name, T[]>, f: (x: T) => number) => {
      const out: Record<string, Spread> = {};
      for (const n of present) out[n] = spread(runs[n].map(f));
      for (const n of present.filter((x) => x !== 'none')) out[`${n}/none`] = spread(runs[n].map((x, i) => f(x) / f(runs.none[i])));
      return out;
    };
    const figures: Record<string, Record<string, Spread>> = {};
    const rows: string[][] = [];
    const add = (key: string, label: string, f: Record<string, Spread>, digits: number, ratio = true) => {
      figures[key] = f;
      rows.push([label, ...present.map((n) => fmtSpread(f[n], digits)), ...present.filter((n) => n !== 'none').map((n) => (ratio ? fmtSpread(f[`${n}/none`], 2) : ''))]);
    };
    if (parts.has('oltp')) {
      for (const c of clientCounts) {
        const o = oltp[c];
        add(`oltp${c}.cpuMsPerTxn`, `TPC-B ${c}c: server CPU ms/txn`, fig(o, (x) => x.cpuMsPerTxn), 3);
        add(`oltp${c}.tps`, `TPC-B ${c}c: TPS (indicative)`, fig(o, (x) => x.tps), 0);
        add(`oltp${c}.walBytesPerTxn`, `TPC-B ${c}c: WAL bytes/txn`, fig(o, (x) => x.walBytesPerTxn), 0);
        const cap2 = fig(o, (x) => x.bytesPerEvent);
        figures[`oltp${c}.bytesPerEvent`] = cap2;
        rows.push([`TPC-B ${c}c: capture bytes/event`, ...present.map((n) => (n === 'none' ? '–' : fmtSpread(cap2[n], 0))), ...present.filter((n) => n !== 'none').map(() => '')]);
      }
    }
    if (parts.has('bulk')) {
      for (const step of ['insert', 'update', 'delete'] as const) {
        add(`bulk.${step}.seconds`, `bulk ${step}: s`, fig(bulk, (x) => x[step].seconds), 2);
        add(`bulk.${step}.cpuSeconds`, `bulk ${step}: server CPU s`, fig(bulk, (x) => x[step].cpuSeconds), 2);
        add(`bulk.${step}.walMB`, `bulk ${step}: WAL MB`, fig(bulk, (x) => x[step].walMB), 0);
        const b = fig(bulk, (x) => x[step].bytesPerEvent);
        figures[`bulk.${step}.bytesPerEvent`] = b;
        rows.push([`bulk ${step}: capture bytes/event`, ...present.map((n) => (n === 'none' ? '–' : fmtSpread(b[n], 0))), ...present.filter((n) => n !== 'none').map(() => '')]);
      }
    }
    // The goal "below PgQ in every round": pg2crate's CPU against PgQ's, round by round.
    if (present.includes('pgq') && parts.has('oltp')) {
      for (const c of clientCounts) {
        const rounds = oltp[c].pg2crate.map((x, i) => x.cpuMsPerTxn / oltp[c].pgq[i].cpuMsPerTxn);
        figures[`oltp${c}.cpuMsPerTxn`]['pg2crate/pgq'] = spread(rounds);
        note(`TPC-B ${c}c: pg2crate / PgQ server CPU per txn, round by round: ${rounds.map((r) => fmt(r, 2)).join(', ')} (below PgQ in ${rounds.filter((r) => r < 1).length} of ${rounds.length})`);
      }
    }
    printTable(
      `capture cost, min / median / max over ${reps} interleaved repetitions (pgbench scale ${scale}, ${duration} s per run; bulk ${bulkRows.toLocaleString('en')} rows, 10 columns; Postgres ${serverVersion}${pgqVersion ? `, pgq ${pgqVersion}` : ''})`,
      ['figure', ...present, ...present.filter((n) => n !== 'none').map((n) => `${n} / none`)],
      rows,
    );
    note(`pg2crate state.idle during the runs: ${idle} (${idle ? 'NOTIFY in every writing transaction' : 'no NOTIFY: the idle path was not active'}); PgQ's trigger never notifies.`);
    note('pgbench_history keyed by (aid, mtime) in pg2crate and PgQ; event tables emptied before every run; nothing consumes.');
    if (pgqNote) note(`NOTE: PgQ variant skipped: ${pgqNote}`);
    return {
      settings: { reps, duration, scale, clientCounts, bulkRows, serverVersion, pgqVersion, pgqSkipped: pgqNote, stateIdle: idle, historyKey: '(aid, mtime)' },
      pg2crateCapture: captured,
      figures,
      runs: { oltp, bulk },
    };
  } finally {
    for (const v of variants) await v.db.end().catch(() => {});
    await admin.end().catch(() => {});
    await cluster.stop();
  }
}
