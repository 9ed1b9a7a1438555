// Capture cost of a partitioned table beside a plain one: what pg2crate's trigger capture costs the
// application's own writes when the table is partitioned, with no consumer running.
//
// Four databases on one throwaway cluster, each with the 10-column mixed-type table `bulk` of
// bench/capture.ts:
//   plain                  the table as it is, no capture;
//   plain+pg2crate         the same, captured through `tables add` (what src/ installs today);
//   partitioned            the table partitioned by range on id into --partitions (4) partitions
//                          bulk_p1 … of --bulk-rows / 4 ids each, no capture;
//   partitioned+pg2crate   the same, captured through `tables add`: statement triggers on the
//                          root and on every partition, the guard row trigger on the root, its clone
//                          disabled on every leaf (src/source/capture-install.ts). Printed as found
//                          in the catalog, not assumed.
// Rounds are interleaved: every round runs each variant once, the order rotating from one round to
// the next, so drift on the machine hits all alike; ratios are taken within each round, then given
// as min / median / max:
//   OLTP  pgbench with a custom script (-f): one transaction of single-row writes through the root,
//         an UPDATE of one row, a DELETE of another and the INSERT of it back (3 events when
//         captured), at each of --clients (1 and 8) for --duration s. Each client writes only ids
//         congruent to its client_id, so no two clients wait on one row. For the partitioned
//         variants the same script is also run through the partition bulk_p1's own name (ids in its
//         range), at --partition-clients (8) clients. Main figure: server CPU per transaction
//         (bench/server-cpu.ts, /proc: the cluster's processes only, not pgbench); TPS indicative
//         (the client shares the 2 cores). The table holds --bulk-rows rows, vacuumed before
//         each run.
//   bulk  INSERT … SELECT of --bulk-rows rows through the root, UPDATE of all of them, DELETE of all
//         of them: seconds and server CPU seconds.
// Before every measured run the outbox is emptied and a CHECKPOINT taken. Every captured run is
// checked to have written the events its writes make (3 per OLTP transaction, one per row in bulk).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startCluster } from '../test/helpers/cluster.js';
import {
  BULK_TABLE, bulkInsert, bulkRound, bulkRowSql, captureWithPg2crate, partitionedBulkTableSql, pg2crateOutbox, pgbenchStep, type BulkRun, type Measured,
} from './capture-common.js';
import { pgbenchSummary } from './pgbench.js';
import { fmt, fmtSpread, note, printTable, spread, type BenchArgs, type Spread } from './report.js';
import { postmasterPid } from './server-cpu.js';

export const description = 'capture cost of a partitioned table (4 range partitions) beside a plain one: single-row OLTP through the root and a partition, 500k-row bulk INSERT/UPDATE/DELETE, interleaved';

const NAMES = ['plain', 'plain+pg2crate', 'partitioned', 'partitioned+pg2crate'] as const;
type Name = (typeof NAMES)[number];

interface Variant extends Measured {
  name: Name;
  url: string;
  partitioned: boolean;
  captured: boolean;
}

interface OltpRun { tps: number; txns: number; cpuMsPerTxn: number; eventsPerTxn: number }

/** One transaction of single-row writes into `table`; ids 1 + client_id + nclients × [0, span). */
const oltpScript = (table: string) => `\\set id 1 + :client_id + :nclients * random(0, :span - 1)
\\set id2 1 + :client_id + :nclients * random(0, :span - 1)
begin;
update ${table} set k = k + 1, amount = amount + 1 where id = :id;
delete from ${table} where id = :id2;
insert into ${table} values (${bulkRowSql(':id2')});
end;
`;

/** Per-round ratios a/b of two variants' runs. */
const ratio = <T>(a: T[], b: T[], f: (x: T) => number): Spread => spread(a.map((x, i) => f(x) / f(b[i])));

export async function run(args: BenchArgs): Promise<object> {
  const rounds = Number(args.rounds ?? args.reps ?? 3);
  const duration = Number(args.duration ?? 10);
  const clientCounts = (args.clients ?? '1,8').split(',').map(Number);
  const partitionClients = Number(args['partition-clients'] ?? 8);
  const bulkRows = Number(args['bulk-rows'] ?? 500_000);
  const partitions = Number(args.partitions ?? 4);
  const parts = new Set((args.parts ?? 'oltp,bulk').split(','));
  const partitionRows = Math.floor(bulkRows / partitions); // bulk_p1 holds ids 1 … partitionRows

  const cluster = await startCluster();
  const admin = new pg.Client({ connectionString: cluster.url() });
  admin.on('error', (err) => process.stderr.write(`bench: connection failed: ${err.message}\n`));
  const variants: Variant[] = [];
  const scripts = mkdtempSync(join(tmpdir(), 'pg2crate-bench-'));
  try {
    await admin.connect();
    const pm = await postmasterPid(admin);
    const serverVersion = (await admin.query<{ v: string }>("select current_setting('server_version') as v")).rows[0].v;
    for (const table of ['bulk', 'bulk_p1']) writeFileSync(join(scripts, `${table}.sql`), oltpScript(table));

    for (const name of NAMES) {
      const partitioned = name.startsWith('partitioned');
      const captured = name.endsWith('+pg2crate');
      const url = await cluster.createDatabase(`part_${name.replace('+', '_')}`);
      note(`setting up ${name} …`);
      const db = new pg.Client({ connectionString: url });
      db.on('error', (err) => process.stderr.write(`bench: connection failed: ${err.message}\n`));
      await db.connect();
      for (const stmt of partitioned ? partitionedBulkTableSql(bulkRows, partitions) : [BULK_TABLE]) await db.query(stmt);
      let events: Variant['events'] = async () => ({ n: 0, bytes: 0 });
      let empty: Variant['empty'] = async () => {};
      if (captured) {
        await captureWithPg2crate(url, cluster.url(), [{ schema: 'public', table: 'bulk' }]);
        ({ events, empty } = pg2crateOutbox(db));
      }
      variants.push({ name, url, db, events, empty, partitioned, captured });
    }

    // What was measured: the triggers on the root and on bulk_p1, and the capture functions (src/ changes over time).
    const triggersOn = async (db: pg.Client, rel: string) => (await db.query<{ t: string }>(
      `select t.tgname || ' ' || case t.tgtype & 1 when 1 then 'row' else 'statement' end || case t.tgenabled when 'D' then ' (disabled)' else '' end as t
         from pg_trigger t where t.tgrelid = $1::regclass and not t.tgisinternal order by t.tgname`, [rel],
    )).rows.map((r) => r.t);
    const capturedSetup: Record<string, unknown> = {};
    for (const v of variants.filter((x) => x.captured)) {
      const md5 = (await v.db.query<{ md5: string }>(`select md5(string_agg(pg_get_functiondef(p.oid), E'\\n' order by p.proname)) as md5 from pg_proc p where p.pronamespace = 'pg2crate'::regnamespace`)).rows[0].md5;
      const idle = (await v.db.query<{ idle: boolean }>('select idle from pg2crate.state')).rows[0].idle;
      const setup = { root: await triggersOn(v.db, 'bulk'), ...(v.partitioned ? { bulk_p1: await triggersOn(v.db, 'bulk_p1') } : {}), functionsMd5: md5, stateIdle: idle };
      capturedSetup[v.name] = setup;
      note(`${v.name}: on bulk ${setup.root.join(', ')}${setup.bulk_p1 ? `; on bulk_p1 ${setup.bulk_p1.join(', ')}` : ''}; md5 of the pg2crate functions ${md5}; state.idle ${idle} (${idle ? 'NOTIFY in every writing transaction' : 'no NOTIFY'})`);
    }
    await admin.query('checkpoint');
    const order = <T>(xs: T[], round: number) => xs.map((_, i) => xs[(i + round) % xs.length]);

    // OLTP: through the root for every variant at each client count, through bulk_p1 for the partitioned ones.
    type Through = 'root' | 'partition';
    const oltpKey = (clients: number, through: Through) => `${through === 'root' ? 'bulk' : 'bulk_p1'} ${clients}c`;
    const oltp: Record<string, Partial<Record<Name, OltpRun[]>>> = {};
    const oltpRuns: { clients: number; through: Through; v: Variant }[] = [];
    for (const clients of clientCounts) for (const v of variants) oltpRuns.push({ clients, through: 'root', v });
    for (const v of variants.filter((x) => x.partitioned)) oltpRuns.push({ clients: partitionClients, through: 'partition', v });
    if (parts.has('oltp')) {
      // Filled with triggers off (session_replication_role): setup, not measured; the outbox is emptied before every run anyway.
      for (const v of variants) {
        await v.db.query(`set session_replication_role = replica; ${bulkInsert(bulkRows)}; reset session_replication_role`);
        await v.db.query('vacuum analyze bulk');
      }
      for (let r = 0; r < rounds; r++) {
        for (const { clients, through, v } of order(oltpRuns, r)) {
          const table = through === 'root' ? 'bulk' : 'bulk_p1';
          const span = Math.floor((through === 'root' ? bulkRows : partitionRows) / clients);
          const { out, cpuSeconds } = await pgbenchStep(admin, pm, async () => {
            await v.db.query('vacuum analyze bulk');
            await v.empty();
          }, ['-n', '-f', join(scripts, `${table}.sql`), '-D', `nclients=${clients}`, '-D', `span=${span}`,
            '-c', String(clients), '-j', String(Math.min(clients, 2)), '-T', String(duration), v.url]);
          const { txns, tps } = pgbenchSummary(out);
          const ev = await v.events();
          const run: OltpRun = { tps, txns, cpuMsPerTxn: (cpuSeconds * 1000) / txns, eventsPerTxn: ev.n / txns };
          if (v.captured && ev.n !== 3 * txns) throw new Error(`${v.name} through ${table}: ${ev.n} events for ${txns} transactions, expected ${3 * txns}`);
          ((oltp[oltpKey(clients, through)] ??= {})[v.name] ??= []).push(run);
          note(`  round ${r + 1}/${rounds} oltp via ${table.padEnd(7)} ${clients} client(s) ${v.name.padEnd(20)} ${fmt(run.cpuMsPerTxn, 3)} ms server CPU/txn, ${fmt(tps, 0)} tps${v.captured ? `, ${fmt(run.eventsPerTxn, 2)} events/txn` : ''}`);
        }
      }
    }

    const bulk: Partial<Record<Name, BulkRun[]>> = {};
    if (parts.has('bulk')) {
      for (let r = 0; r < rounds; r++) {
        for (const v of order(variants, r)) {
          const b = await bulkRound(admin, pm, v, bulkRows);
          for (const step of ['insert', 'update', 'delete'] as const) {
            if (v.captured && b[step].events !== bulkRows) throw new Error(`${v.name} bulk ${step}: ${b[step].events} events for ${bulkRows} rows`);
          }
          (bulk[v.name] ??= []).push(b);
          const { insert: ins, update: upd, delete: del } = b;
          note(`  round ${r + 1}/${rounds} bulk ${v.name.padEnd(20)} insert ${fmt(ins.seconds, 2)} s (${fmt(ins.cpuSeconds, 2)} CPU s), update ${fmt(upd.seconds, 2)} s (${fmt(upd.cpuSeconds, 2)}), delete ${fmt(del.seconds, 2)} s (${fmt(del.cpuSeconds, 2)})`);
        }
      }
    }

    // Figures: each variant's spread, and ratios taken within each round: the three printed, and partitioned / plain without capture (JSON only).
    const figures: Record<string, Record<string, Spread>> = {};
    const rows: string[][] = [];
    const add = <T>(key: string, label: string, runs: Partial<Record<Name, T[]>>, f: (x: T) => number, digits: number) => {
      const fig: Record<string, Spread> = {};
      for (const n of NAMES) if (runs[n]) fig[n] = spread(runs[n]!.map(f));
      const pairs: [string, Name, Name][] = [
        ['plain+pg2crate / plain', 'plain+pg2crate', 'plain'],
        ['partitioned+pg2crate / partitioned', 'partitioned+pg2crate', 'partitioned'],
        ['partitioned+pg2crate / plain+pg2crate', 'partitioned+pg2crate', 'plain+pg2crate'],
        ['partitioned / plain', 'partitioned', 'plain'],
      ];
      for (const [k, a, b] of pairs) if (runs[a] && runs[b]) fig[k] = ratio(runs[a]!, runs[b]!, f);
      figures[key] = fig;
      rows.push([label, ...NAMES.map((n) => (fig[n] ? fmtSpread(fig[n], digits) : '–')), ...pairs.slice(0, 3).map(([k]) => (fig[k] ? fmtSpread(fig[k], 2) : '–'))]);
    };
    if (parts.has('oltp')) {
      for (const clients of clientCounts) {
        const o = oltp[oltpKey(clients, 'root')];
        add(`oltp.root.${clients}c.cpuMsPerTxn`, `OLTP ${clients}c via root: server CPU ms/txn`, o, (x) => x.cpuMsPerTxn, 3);
        add(`oltp.root.${clients}c.tps`, `OLTP ${clients}c via root: TPS (indicative)`, o, (x) => x.tps, 0);
      }
      // Writes through bulk_p1, beside the plain table's through its name at the same client count.
      const p = { ...oltp[oltpKey(partitionClients, 'partition')] };
      const plainCaptured = oltp[oltpKey(partitionClients, 'root')]?.['plain+pg2crate'];
      const cmp: Partial<Record<Name, OltpRun[]>> = { partitioned: p.partitioned, 'partitioned+pg2crate': p['partitioned+pg2crate'], ...(plainCaptured ? { 'plain+pg2crate': plainCaptured } : {}) };
      add(`oltp.partition.${partitionClients}c.cpuMsPerTxn`, `OLTP ${partitionClients}c via bulk_p1: server CPU ms/txn`, cmp, (x) => x.cpuMsPerTxn, 3);
      rows[rows.length - 1][2] = '–';
      const root = oltp[oltpKey(partitionClients, 'root')];
      if (root?.['partitioned+pg2crate'] && p['partitioned+pg2crate']) {
        figures[`oltp.partition.${partitionClients}c.cpuMsPerTxn`]['via bulk_p1 / via root, partitioned+pg2crate'] = ratio(p['partitioned+pg2crate'], root['partitioned+pg2crate'], (x) => x.cpuMsPerTxn);
        figures[`oltp.partition.${partitionClients}c.cpuMsPerTxn`]['via bulk_p1 / via root, partitioned'] = ratio(p.partitioned!, root.partitioned!, (x) => x.cpuMsPerTxn);
      }
    }
    if (parts.has('bulk')) {
      for (const step of ['insert', 'update', 'delete'] as const) {
        add(`bulk.${step}.seconds`, `bulk ${step}: s`, bulk, (x) => x[step].seconds, 2);
        add(`bulk.${step}.cpuSeconds`, `bulk ${step}: server CPU s`, bulk, (x) => x[step].cpuSeconds, 2);
      }
    }
    printTable(
      `capture cost of a partitioned table, min / median / max over ${rounds} interleaved rounds (${bulkRows.toLocaleString('en')} rows × 10 columns, ${partitions} range partitions on id; OLTP: 1 UPDATE + 1 DELETE + 1 INSERT of single rows per txn, ${duration} s per run; Postgres ${serverVersion})`,
      ['figure', ...NAMES, 'plain: captured / not', 'partitioned: captured / not', 'partitioned / plain, captured'],
      rows,
    );
    note('via bulk_p1: the same transactions through the partition\'s own name (ids in its range); its last ratio is against plain+pg2crate through its name at the same client count.');
    return {
      settings: { rounds, duration, clientCounts, partitionClients, bulkRows, partitions, serverVersion },
      captured: capturedSetup,
      figures,
      runs: { oltp, bulk },
    };
  } finally {
    rmSync(scripts, { recursive: true, force: true });
    for (const v of variants) await v.db.end().catch(() => {});
    await admin.end().catch(() => {});
    await cluster.stop();
  }
}
