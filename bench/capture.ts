// Capture cost: what the triggers cost the application's own writes, with no drainer running.
//
// Two databases on one throwaway cluster, identical but for capture: `plain` (no triggers) and
// `cap` (pg2crate migrated, the four pgbench tables and the bulk table captured). Rounds are
// interleaved (plain, cap, plain, cap …) so that drift on the machine hits both alike.
//   - pgbench TPC-B (default script), 8 clients, 2 threads, --duration seconds per round, scale
//     --scale. pgbench_history has no primary key: it is captured with configured key columns
//     (aid, mtime), so the baseline stays stock pgbench (no column or index added to either side).
//   - one INSERT … SELECT of 500k rows, then one UPDATE of all 500k rows, into a 5-column table.
// Before every measured round: pgbench's own preparation (vacuum branches and tellers, truncate
// history) or truncate of the bulk table, then TRUNCATE of the outbox (each round starts from an
// empty outbox; nothing drains it), then CHECKPOINT. Autovacuum stays on except for the bulk table
// (its vacuum after the insert would otherwise overlap the update); the outbox keeps its defaults.
// Server CPU per transaction is read from /proc (bench/server-cpu.ts) before and after each round;
// WAL from pg_current_wal_lsn(). The NOTIFY path: triggers notify only while the state row says the
// drainer is idle; no drainer has run here, so `state.idle` is false and no round notifies
// (reported from the database, not assumed).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { loadConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { Runner } from '../src/runner.js';
import { startCluster } from '../test/helpers/cluster.js';
import { fmt, fmtSpread, note, printTable, sleep, spread, type BenchArgs, type Spread } from './report.js';
import { postmasterPid, serverCpuSeconds } from './server-cpu.js';

export const description = 'capture cost: pgbench TPC-B and 500k-row bulk INSERT/UPDATE, without vs with trigger capture (no drainer)';

function pgBin(name: string): string {
  const onPath = execFileSync('sh', ['-c', `command -v ${name} || true`], { encoding: 'utf8' }).trim();
  if (onPath) return onPath;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    for (const v of readdirSync(root).sort((a, b) => Number(b) - Number(a))) {
      const p = join(root, v, 'bin', name);
      if (existsSync(p)) return p;
    }
  }
  throw new Error(`${name} not found on PATH nor under /usr/lib/postgresql/*/bin`);
}

function runPgbench(bin: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`pgbench exited ${code}:\n${out}`))));
  });
}

const BULK_TABLE = `create table bulk (
  id bigint primary key, k integer not null, v text not null, amount numeric(12,2), created timestamptz not null
) with (autovacuum_enabled = false)`;

interface Variant {
  name: 'plain' | 'cap';
  url: string;
  db: pg.Client;
  captured: boolean;
}

interface OltpRound { tps: number; txns: number; cpuMsPerTxn: number; walBytesPerTxn: number; eventsPerTxn: number }
interface BulkRound { seconds: number; cpuSeconds: number; walMB: number; events: number }

export async function run(args: BenchArgs): Promise<object> {
  const rounds = Number(args.rounds ?? 3);
  const bulkRounds = Number(args['bulk-rounds'] ?? Math.max(rounds, 5));
  const duration = Number(args.duration ?? 25);
  const scale = Number(args.scale ?? 10);
  const clients = Number(args.clients ?? 8);
  const threads = Number(args.threads ?? 2);
  const bulkRows = Number(args['bulk-rows'] ?? 500_000);
  const pgbench = pgBin('pgbench');

  const cluster = await startCluster();
  const admin = new pg.Client({ connectionString: cluster.url() });
  admin.on('error', (err) => process.stderr.write(`bench: connection failed: ${err.message}\n`));
  const variants: Variant[] = [];
  try {
    await admin.connect();
    const pm = await postmasterPid(admin);
    const serverVersion = (await admin.query<{ v: string }>("select current_setting('server_version') as v")).rows[0].v;
    for (const name of ['plain', 'cap'] as const) {
      const url = await cluster.createDatabase(name);
      note(`setting up ${name}: pgbench -i -s ${scale} …`);
      await runPgbench(pgbench, ['-i', '-q', '-s', String(scale), url]);
      const db = new pg.Client({ connectionString: url });
      db.on('error', (err) => process.stderr.write(`bench: connection failed: ${err.message}\n`));
      await db.connect();
      await db.query(BULK_TABLE);
      variants.push({ name, url, db, captured: name === 'cap' });
    }
    const cap = variants[1];
    const logger = createLogger('warn', { write: (s: string) => { process.stderr.write(s); } });
    const runner = new Runner(loadConfig({ DATABASE_URL: cap.url, TARGET_DATABASE_URL: cluster.url() }), logger);
    try {
      await runner.migrate();
      await runner.addTables([
        { schema: 'public', table: 'pgbench_accounts' }, { schema: 'public', table: 'pgbench_branches' },
        { schema: 'public', table: 'pgbench_tellers' }, { schema: 'public', table: 'pgbench_history', keyColumns: ['aid', 'mtime'] },
        { schema: 'public', table: 'bulk' },
      ]);
    } finally {
      await runner.close();
    }
    const idle = (await cap.db.query<{ idle: boolean }>('select idle from pg2crate.state')).rows[0].idle;
    await admin.query('checkpoint');

    const walNow = async (): Promise<bigint> => BigInt((await admin.query<{ b: string }>(`select pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::text as b`)).rows[0].b.split('.')[0]);
    const outboxCount = async (v: Variant): Promise<number> => (v.captured ? Number((await v.db.query<{ n: string }>('select count(*) as n from pg2crate.outbox')).rows[0].n) : 0);
    const emptyOutbox = async (v: Variant) => { if (v.captured) await v.db.query('truncate pg2crate.outbox'); };

    const oltp: Record<string, OltpRound[]> = { plain: [], cap: [] };
    const insert: Record<string, BulkRound[]> = { plain: [], cap: [] };
    const update: Record<string, BulkRound[]> = { plain: [], cap: [] };

    for (let r = 1; r <= rounds; r++) {
      for (const v of variants) {
        await v.db.query('vacuum analyze pgbench_branches, pgbench_tellers');
        await v.db.query('truncate pgbench_history');
        await emptyOutbox(v);
        await admin.query('checkpoint');
        await sleep(500);
        const cpu0 = serverCpuSeconds(pm);
        const wal0 = await walNow();
        const out = await runPgbench(pgbench, ['-n', '-c', String(clients), '-j', String(threads), '-T', String(duration), v.url]);
        await sleep(300); // let the postmaster reap the backends, so their CPU is in its cutime
        const cpu = serverCpuSeconds(pm) - cpu0;
        const wal = Number((await walNow()) - wal0);
        const txns = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
        const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1]);
        if (!txns || !tps) throw new Error(`cannot read pgbench's output:\n${out}`);
        const events = await outboxCount(v);
        const round = { tps, txns, cpuMsPerTxn: (cpu * 1000) / txns, walBytesPerTxn: wal / txns, eventsPerTxn: events / txns };
        oltp[v.name].push(round);
        note(`  pgbench round ${r}/${rounds} ${v.name.padEnd(5)} ${fmt(tps, 0)} tps, ${fmt(round.cpuMsPerTxn, 3)} ms server CPU/txn, ${fmt(round.walBytesPerTxn, 0)} WAL B/txn${v.captured ? `, ${fmt(round.eventsPerTxn, 2)} events/txn` : ''}`);
      }
    }

    const bulkStatement = async (v: Variant, sql: string): Promise<BulkRound> => {
      await admin.query('checkpoint');
      await sleep(300);
      const cpu0 = serverCpuSeconds(pm);
      const wal0 = await walNow();
      const t0 = performance.now();
      await v.db.query(sql);
      const seconds = (performance.now() - t0) / 1000;
      await sleep(100);
      const cpuSeconds = serverCpuSeconds(pm) - cpu0;
      const walMB = Number((await walNow()) - wal0) / 1e6;
      return { seconds, cpuSeconds, walMB, events: await outboxCount(v) };
    };
    for (let r = 1; r <= bulkRounds; r++) {
      for (const v of variants) {
        await v.db.query('truncate bulk');
        await emptyOutbox(v);
        const ins = await bulkStatement(v, `insert into bulk select g, g % 1000, md5(g::text), (g % 100000) / 100.0, timestamptz '2024-01-01' + g * interval '1 second' from generate_series(1, ${bulkRows}) g`);
        insert[v.name].push(ins);
        await emptyOutbox(v);
        await v.db.query('vacuum analyze bulk');
        const upd = await bulkStatement(v, 'update bulk set k = k + 1, amount = amount + 1');
        update[v.name].push(upd);
        note(`  bulk round ${r}/${bulkRounds} ${v.name.padEnd(5)} insert ${fmt(ins.seconds, 2)} s, update ${fmt(upd.seconds, 2)} s${v.captured ? ` (${ins.events} + ${upd.events} events)` : ''}`);
      }
    }

    // Rounds are paired (interleaved), so ratios are taken per round, then spread.
    const ratios = (a: number[], b: number[]) => spread(b.map((x, i) => x / a[i]));
    const col = <T>(xs: T[], f: (x: T) => number) => xs.map(f);
    const figures = {
      tps: { plain: spread(col(oltp.plain, (x) => x.tps)), cap: spread(col(oltp.cap, (x) => x.tps)), ratio: ratios(col(oltp.plain, (x) => x.tps), col(oltp.cap, (x) => x.tps)) },
      cpuPerTxnMs: { plain: spread(col(oltp.plain, (x) => x.cpuMsPerTxn)), cap: spread(col(oltp.cap, (x) => x.cpuMsPerTxn)), ratio: ratios(col(oltp.plain, (x) => x.cpuMsPerTxn), col(oltp.cap, (x) => x.cpuMsPerTxn)) },
      walPerTxnBytes: { plain: spread(col(oltp.plain, (x) => x.walBytesPerTxn)), cap: spread(col(oltp.cap, (x) => x.walBytesPerTxn)), ratio: ratios(col(oltp.plain, (x) => x.walBytesPerTxn), col(oltp.cap, (x) => x.walBytesPerTxn)) },
      insertSeconds: { plain: spread(col(insert.plain, (x) => x.seconds)), cap: spread(col(insert.cap, (x) => x.seconds)), ratio: ratios(col(insert.plain, (x) => x.seconds), col(insert.cap, (x) => x.seconds)) },
      insertCpuSeconds: { plain: spread(col(insert.plain, (x) => x.cpuSeconds)), cap: spread(col(insert.cap, (x) => x.cpuSeconds)), ratio: ratios(col(insert.plain, (x) => x.cpuSeconds), col(insert.cap, (x) => x.cpuSeconds)) },
      insertWalMB: { plain: spread(col(insert.plain, (x) => x.walMB)), cap: spread(col(insert.cap, (x) => x.walMB)), ratio: ratios(col(insert.plain, (x) => x.walMB), col(insert.cap, (x) => x.walMB)) },
      updateSeconds: { plain: spread(col(update.plain, (x) => x.seconds)), cap: spread(col(update.cap, (x) => x.seconds)), ratio: ratios(col(update.plain, (x) => x.seconds), col(update.cap, (x) => x.seconds)) },
      updateCpuSeconds: { plain: spread(col(update.plain, (x) => x.cpuSeconds)), cap: spread(col(update.cap, (x) => x.cpuSeconds)), ratio: ratios(col(update.plain, (x) => x.cpuSeconds), col(update.cap, (x) => x.cpuSeconds)) },
      updateWalMB: { plain: spread(col(update.plain, (x) => x.walMB)), cap: spread(col(update.cap, (x) => x.walMB)), ratio: ratios(col(update.plain, (x) => x.walMB), col(update.cap, (x) => x.walMB)) },
    };
    const row = (label: string, f: { plain: Spread; cap: Spread; ratio: Spread }, digits?: number) =>
      [label, fmtSpread(f.plain, digits), fmtSpread(f.cap, digits), fmtSpread(f.ratio, 2)];
    printTable(
      `capture cost (min / median / max; pgbench ${rounds} rounds × ${duration} s, ${clients} clients, scale ${scale}; bulk ${bulkRounds} rounds × ${bulkRows.toLocaleString('en')} rows; Postgres ${serverVersion})`,
      ['figure', 'without capture', 'with capture', 'ratio with/without'],
      [
        row('pgbench TPS', figures.tps, 0),
        row('server CPU ms per txn', figures.cpuPerTxnMs, 3),
        row('WAL bytes per txn', figures.walPerTxnBytes, 0),
        row('INSERT … SELECT, s', figures.insertSeconds, 2),
        row('INSERT server CPU, s', figures.insertCpuSeconds, 2),
        row('INSERT WAL, MB', figures.insertWalMB, 0),
        row('UPDATE all rows, s', figures.updateSeconds, 2),
        row('UPDATE server CPU, s', figures.updateCpuSeconds, 2),
        row('UPDATE WAL, MB', figures.updateWalMB, 0),
      ],
    );
    note(`outbox events per pgbench txn with capture: ${fmtSpread(spread(col(oltp.cap, (x) => x.eventsPerTxn)), 2)}; state.idle during the rounds: ${idle} (${idle ? 'NOTIFY in every writing transaction' : 'no NOTIFY: the idle path was not active'})`);
    note('pgbench_history captured with configured key columns (aid, mtime); outbox truncated before every round; no drainer running.');
    return {
      settings: { rounds, bulkRounds, duration, scale, clients, threads, bulkRows, serverVersion, historyKey: 'configured key columns (aid, mtime)', outbox: 'truncated before every round', stateIdle: idle },
      figures,
      rounds: { oltp, insert, update },
    };
  } finally {
    for (const v of variants) await v.db.end().catch(() => {});
    await admin.end().catch(() => {});
    await cluster.stop();
  }
}
