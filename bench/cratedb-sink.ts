// CrateDB sink throughput: rows/s of CrateSink.apply() into a real CrateDB (CRATEDB_URL), beside a
// plain loop of bulk_args INSERTs of the same rows measured in the same run.
//
// Rows: --rows (100k) of a 7-column table (bigint key past 2^53, integer, 40-character text,
// numeric(12,2), timestamptz, text[], small jsonb object), built and parsed before timing, as the
// drainer hands them over. Variants, interleaved per repetition (--reps, 3) so drift hits all alike:
//   - sink insert: apply() in pages of --page (5000) upserts into an empty table (created by
//     prepare(), outside the timing): conversion, ON CONFLICT, per-row checks, bounded requests,
//     --parallel (2, the sink's default) requests in flight.
//   - sink update: the same rows again: every row takes the ON CONFLICT … DO UPDATE path.
//   - sink delete: every key deleted by key (bulk_args, one parameter row per key).
//   - sink insert, 1 in flight: the same as sink insert, one request at a time (as the plain loop).
//   - plain insert: INSERT … VALUES (?, …) with bulk_args of the same request size, JSON.stringify
//     and fetch(): what a bare client does, without conversion, conflict handling or checks.
//   - plain insert, best: the same with --raw-rows (10,000) rows per request and --raw-parallel (2)
//     requests in flight, the fastest raw setting found on this machine kind: the rate to beat.
// Each timing ends when CrateDB acknowledged the last request (no refresh).
import { LosslessNumber } from 'lossless-json';
import type { Change, ColumnInfo, TableInfo } from '../src/core/change.js';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { CrateSink } from '../src/sink/cratedb/cratedb-sink.js';
import { CrateClient } from '../src/sink/cratedb/crate-client.js';
import { fmt, fmtSpread, note, printTable, spread, type BenchArgs, type Spread } from './report.js';

export const description = 'CrateDB sink rows/s (insert, update, delete) beside a plain bulk_args INSERT loop; needs CRATEDB_URL';

const SCHEMA = 'pg2crate_bench';
const COLUMNS: ColumnInfo[] = [
  { name: 'id', type: 'bigint', baseType: 'int8', baseFormatted: 'bigint', dims: 0, typtype: 'b', notNull: true },
  { name: 'k', type: 'integer', baseType: 'int4', baseFormatted: 'integer', dims: 0, typtype: 'b', notNull: false },
  { name: 'v', type: 'text', baseType: 'text', baseFormatted: 'text', dims: 0, typtype: 'b', notNull: false },
  { name: 'amount', type: 'numeric(12,2)', baseType: 'numeric', baseFormatted: 'numeric(12,2)', dims: 0, typtype: 'b', notNull: false },
  { name: 'created', type: 'timestamp with time zone', baseType: 'timestamptz', baseFormatted: 'timestamp with time zone', dims: 0, typtype: 'b', notNull: false },
  { name: 'tags', type: 'text[]', baseType: 'text', baseFormatted: 'text', dims: 1, typtype: 'b', notNull: false },
  { name: 'body', type: 'jsonb', baseType: 'jsonb', baseFormatted: 'jsonb', dims: 0, typtype: 'b', notNull: false },
];

function tableInfo(table: string): TableInfo {
  return { id: 1, relid: 1, sourceSchema: 'public', sourceTable: table, targetSchema: SCHEMA, targetTable: table, keyColumns: ['id'], columns: COLUMNS };
}

/** Change objects as the drainer builds them: raw JSON text as Postgres wrote it, and the parsed row. */
function makeChanges(n: number, op: 'I' | 'U'): Change[] {
  const out: Change[] = [];
  for (let i = 0; i < n; i++) {
    const id = 9_007_199_254_740_993n + BigInt(i);
    const created = new Date(Date.UTC(2024, 0, 1) + i * 1000).toISOString().replace('Z', '+00:00').replace('.000', '.123456');
    const raw = `{"id": ${id}, "k": ${i % 1000}, "v": "row ${i} ${'x'.repeat(30)}", "amount": ${(i % 100000) / 100 + (op === 'U' ? 1 : 0)}, ` +
      `"created": "${created}", "tags": ["a", "b${i % 7}"], "body": {"n": ${i}, "kind": "k${i % 5}", "ok": true}}`;
    const row = { id: new LosslessNumber(String(id)), k: i % 1000, v: `row ${i} ${'x'.repeat(30)}`, amount: (i % 100000) / 100, created, tags: ['a', `b${i % 7}`], body: { n: i, kind: `k${i % 5}`, ok: true } };
    out.push({ id: i + 1, tableId: 1, op, key: String(id), row, raw });
  }
  return out;
}

function pages<T>(xs: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size));
  return out;
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export async function run(args: BenchArgs): Promise<object> {
  const url = args.url ?? process.env.CRATEDB_URL;
  if (!url) throw new Error('set CRATEDB_URL (e.g. CRATEDB_URL=http://127.0.0.1:4200 npm run bench -- cratedb-sink)');
  const rows = Number(args.rows ?? 100_000);
  const reps = Math.max(3, Number(args.reps ?? 3));
  const pageSize = Number(args.page ?? 5000);
  const parallel = Number(args.parallel ?? 2);
  const config = loadConfig({
    DATABASE_URL: 'postgres://unused@127.0.0.1/unused', CRATEDB_URL: url,
    ...(args['max-rows'] ? { PG2CRATE_CRATE_MAX_ROWS: args['max-rows'] } : {}),
    ...(args['max-bytes'] ? { PG2CRATE_CRATE_MAX_BYTES: args['max-bytes'] } : {}),
  });
  if (config.target.kind !== 'cratedb') throw new Error('unreachable');
  const target = config.target;
  const requestRows = config.crate.maxRequestRows;
  const client = new CrateClient({ url: target.urls, username: target.username, password: target.password, timeoutMs: 120_000 });
  const auth = `Basic ${Buffer.from(`${target.username}:${target.password ?? ''}`).toString('base64')}`;
  const inserts = makeChanges(rows, 'I');
  const updates = makeChanges(rows, 'U');
  const deletes: Change[] = inserts.map((c) => ({ ...c, op: 'D', row: { id: c.row!.id }, raw: `{"id": ${String(c.row!.id)}}` }));
  note(`cratedb sink: ${fmt(rows)} rows, pages of ${pageSize}, requests of ≤ ${requestRows} rows / ${fmt(config.crate.maxRequestBytes / 1024)} KiB, ${parallel} in flight (plain: 1), ${reps} repetitions`);

  const drop = (t: string) => client.sql(`DROP TABLE IF EXISTS "${SCHEMA}"."${t}"`);
  const one = 'sink insert, 1 in flight';
  const rawRows = Number(args['raw-rows'] ?? 10_000);
  const rawParallel = Number(args['raw-parallel'] ?? 2);
  const best = `plain insert, ${rawRows} rows × ${rawParallel} in flight`;
  const result: Record<string, number[]> = { 'sink insert': [], 'sink update': [], 'sink delete': [], [one]: [], 'plain insert': [], [best]: [] };

  // --also-max-rows=10000,…: the sink's insert with other request sizes, in the same repetitions.
  const otherSizes = (args['also-max-rows'] ?? '').split(',').filter(Boolean).map(Number);
  for (const n of otherSizes) result[`sink insert, ${n}-row requests`] = [];
  async function sizedRound(maxRows: number): Promise<void> {
    const info = tableInfo('sink');
    await drop('sink');
    const sink = new CrateSink(target, { ...config.crate, maxRequestRows: maxRows, maxRequestBytes: Math.max(config.crate.maxRequestBytes, 16 << 20) }, createLogger('warn'), { parallel });
    await sink.start();
    await sink.prepare(info);
    const seconds = await timed(async () => {
      for (const p of pages(inserts, pageSize)) {
        const res = await sink.apply([{ table: info, truncate: false, deletes: [], upserts: p }]);
        if (res.rejected.length > 0) throw new Error(`${res.rejected.length} rows rejected: ${res.rejected[0].message}`);
      }
    });
    result[`sink insert, ${maxRows}-row requests`].push(rows / seconds);
    await sink.stop();
  }

  async function sinkRound(inFlight = parallel): Promise<void> {
    const info = tableInfo('sink');
    await drop('sink');
    const sink = new CrateSink(target, config.crate, createLogger('warn'), { parallel: inFlight });
    await sink.start();
    await sink.prepare(info);
    const apply = async (changes: Change[], kind: 'upserts' | 'deletes') => {
      for (const p of pages(changes, pageSize)) {
        const res = await sink.apply([{ table: info, truncate: false, deletes: kind === 'deletes' ? p : [], upserts: kind === 'upserts' ? p : [] }]);
        if (res.rejected.length > 0) throw new Error(`${res.rejected.length} rows rejected: ${res.rejected[0].message}`);
      }
    };
    if (inFlight !== parallel) {
      result[one].push(rows / (await timed(() => apply(inserts, 'upserts'))));
      await sink.stop();
      return;
    }
    result['sink insert'].push(rows / (await timed(() => apply(inserts, 'upserts'))));
    result['sink update'].push(rows / (await timed(() => apply(updates, 'upserts'))));
    result['sink delete'].push(rows / (await timed(() => apply(deletes, 'deletes'))));
    await sink.stop();
  }

  async function plainRound(size = requestRows, inFlight = 1): Promise<void> {
    await drop('plain');
    // the same DDL the sink made, so that both write into the same kind of table
    const ddl = (await client.sql(`SHOW CREATE TABLE "${SCHEMA}"."sink"`)).rows[0][0] as string;
    await client.sql(ddl.replace(`"${SCHEMA}"."sink"`, `"${SCHEMA}"."plain"`));
    const stmt = `INSERT INTO "${SCHEMA}"."plain" ("id", "k", "v", "amount", "created", "tags", "body") VALUES (?, ?, ?, ?, ?, ?, ?)`;
    const chunks = pages(inserts, size);
    const seconds = await timed(async () => {
      let next = 0;
      const worker = async () => {
        for (let i = next++; i < chunks.length; i = next++) {
          const bulkArgs = chunks[i].map((c) => {
            const r = c.row!;
            return [String(r.id), r.k, r.v, String(r.amount), r.created, r.tags, r.body];
          });
          const res = await fetch(`${target.urls[0]}/_sql`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: auth }, body: JSON.stringify({ stmt, bulk_args: bulkArgs }) });
          const body = (await res.json()) as { results?: Array<{ rowcount: number }> };
          if (!res.ok || !body.results || body.results.some((x) => x.rowcount !== 1)) throw new Error(`plain insert failed: HTTP ${res.status}`);
        }
      };
      await Promise.all(Array.from({ length: inFlight }, worker));
    });
    result[size === requestRows && inFlight === 1 ? 'plain insert' : best].push(rows / seconds);
  }

  // the sink goes first once, so that the plain round can copy its DDL
  for (let i = 0; i < reps; i++) {
    if (i % 2 === 0) {
      await sinkRound();
      await plainRound();
      await plainRound(rawRows, rawParallel);
      for (const n of otherSizes) await sizedRound(n);
      if (parallel !== 1) await sinkRound(1);
    } else {
      if (parallel !== 1) await sinkRound(1);
      for (const n of [...otherSizes].reverse()) await sizedRound(n);
      await plainRound(rawRows, rawParallel);
      await plainRound();
      await sinkRound();
    }
    note(`  repetition ${i + 1}: ${Object.entries(result).filter(([, v]) => v.length > 0).map(([k, v]) => `${k} ${fmt(v[v.length - 1])}`).join(', ')} rows/s`);
  }
  await drop('sink');
  await drop('plain');
  client.close();

  const spreads: Record<string, Spread> = Object.fromEntries(Object.entries(result).filter(([, v]) => v.length > 0).map(([k, v]) => [k, spread(v)]));
  printTable(`rows/s, min / median / max of ${reps}`, ['variant', 'rows/s'], Object.entries(spreads).map(([k, s]) => [k, fmtSpread(s)]));
  const vsBest = spread(result['sink insert'].map((v, i) => v / result[best][i]));
  const ratios: string[][] = [['sink insert', fmtSpread(vsBest, 2)]];
  for (const n of otherSizes) ratios.push([`sink insert, ${n}-row requests`, fmtSpread(spread(result[`sink insert, ${n}-row requests`].map((v, i) => v / result[best][i])), 2)]);
  printTable('sink / best plain insert, same repetition', ['variant', 'ratio'], ratios);
  return { rows, reps, pageSize, parallel, requestRows, requestBytes: config.crate.maxRequestBytes, rawRows, rawParallel, rowsPerSecond: spreads, sinkVsBestPlain: vsBest, raw: result };
}
