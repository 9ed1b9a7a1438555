// The honest reference for a drain into CrateDB: the operations the sink applies after coalescing
// (the same rows upserted, the same keys deleted, with the same statement kinds), sent as raw
// bulk_args requests into copies of the target tables, with nothing else to do.
//
// The operations are worked out here, in SQL, from a copy of the backlog's outbox rows, without the
// sink's code: each page of `pageSize` events in id order (what the drainer reads when the whole
// backlog lies in one window) is coalesced per key (the last event wins), and each row's parameter
// row is built by Postgres (bigint and numeric as text, as the sink sends them). The replay then
// goes page by page, deletes before upserts as the sink does, each statement's rows in requests of
// `requestRows`, at most `parallel` requests in flight; a page starts when the previous one is
// answered, which per-key order demands of any sink too. The copies start from the state the
// target tables had before the drain, so an upsert meets an existing key exactly where the sink's
// did; at the end each copy must equal the drained table.
import http from 'node:http';
import type pg from 'pg';
import { crateSql } from './crate-raw.js';

export interface ReplayColumn {
  name: string;
  /** sent as JSON text (bigint, numeric: CrateDB casts it), else as the row image's JSON value */
  asText: boolean;
}

export interface ReplayTable {
  /** the target table in CrateDB; the replay writes into `${table}_raw` */
  table: string;
  /** registry id of the source table (pg2crate.tables.id) */
  tableId: number;
  key: string;
  columns: ReplayColumn[];
}

interface Statement {
  sql: string;
  rows: string[];
}

/** Per page: the delete statements, then the upsert statements (one per table that has any). */
export type ReplayPage = [deletes: Statement[], upserts: Statement[]];

const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
const copyOf = (schema: string, t: string) => `${q(schema)}.${q(`${t}_raw`)}`;

/** Makes `${table}_raw` a copy of each table (its DDL and its rows), before the drain starts. */
export async function copyTargetTables(url: string, schema: string, tables: readonly ReplayTable[]): Promise<void> {
  for (const t of tables) {
    const name = `${q(schema)}.${q(t.table)}`;
    await crateSql(url, `drop table if exists ${copyOf(schema, t.table)}`);
    const ddl = (await crateSql(url, `show create table ${name}`)).rows![0][0] as string;
    await crateSql(url, ddl.replace(name, copyOf(schema, t.table)));
    await crateSql(url, `refresh table ${name}`);
    await crateSql(url, `insert into ${copyOf(schema, t.table)} select * from ${name}`);
    await crateSql(url, `refresh table ${copyOf(schema, t.table)}`);
    const [a, b] = [await count(url, name), await count(url, copyOf(schema, t.table))];
    if (a !== b) throw new Error(`copy of ${t.table}: ${b} rows, the table ${a}`);
  }
}

async function count(url: string, table: string): Promise<number> {
  return Number((await crateSql(url, `select count(*) from ${table}`)).rows![0][0]);
}

/** The coalesced operations of the events in `events` (a copy of the backlog's outbox rows), page by page. */
export async function coalescedPages(src: pg.Client, events: string, pageSize: number, schema: string, tables: readonly ReplayTable[]): Promise<ReplayPage[]> {
  const pages: ReplayPage[] = [];
  for (const t of tables) {
    const upsert = `INSERT INTO ${copyOf(schema, t.table)} (${t.columns.map((c) => q(c.name)).join(', ')}) VALUES (${t.columns.map(() => '?').join(', ')})` +
      ` ON CONFLICT (${q(t.key)}) DO UPDATE SET ${t.columns.filter((c) => c.name !== t.key).map((c) => `${q(c.name)} = excluded.${q(c.name)}`).join(', ')}`;
    const del = `DELETE FROM ${copyOf(schema, t.table)} WHERE ${q(t.key)} = ?`;
    const values = t.columns.map((c) => `data ${c.asText ? '->>' : '->'} '${c.name}'`).join(', ');
    const keyValue = `data ${t.columns.find((c) => c.name === t.key)!.asText ? '->>' : '->'} '${t.key}'`;
    // pages are numbered over every table's events, as the drainer reads them
    const res = await src.query<{ page: number; del: boolean; args: string }>(
      `with e as (select id, table_id, op, data, (row_number() over (order by id) - 1) / $2 as page from ${events})
       select page::int as page, del, args from (
         select distinct on (page, data->>'${t.key}') page, op in ('D', 'P') as del,
                case when op in ('D', 'P') then json_build_array(${keyValue}) else json_build_array(${values}) end::text as args
           from e where table_id = $1
          order by page, data->>'${t.key}', id desc) x
        order by page`,
      [t.tableId, pageSize],
    );
    for (const r of res.rows) {
      while (pages.length <= r.page) pages.push([[], []]);
      const list = pages[r.page][r.del ? 0 : 1];
      let s = list.find((x) => x.sql === (r.del ? del : upsert));
      if (!s) list.push((s = { sql: r.del ? del : upsert, rows: [] }));
      s.rows.push(r.args);
    }
  }
  return pages;
}

/** One bulk request over a kept-alive connection; checks every row's answer. */
function post(agent: http.Agent, url: URL, stmt: string, rows: string[], isDelete: boolean): Promise<void> {
  const body = `{"stmt":${JSON.stringify(stmt)},"bulk_args":[${rows.join(',')}]}`;
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new Error(`raw replay: HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
        const results = (JSON.parse(text) as { results?: Array<{ rowcount: number; error?: { code: number } }> }).results ?? [];
        // a delete may meet a key inserted and deleted within one page (never in the copy)
        const bad = results.findIndex((r) => !(r.rowcount === 1 || (isDelete && (r.rowcount === 0 || r.error?.code === 40411))));
        if (results.length !== rows.length || bad >= 0) return reject(new Error(`raw replay: a row was refused: ${JSON.stringify(results[bad])}`));
        resolve();
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Seconds to apply `pages` (see the top of this file). */
export async function replaySeconds(url: string, pages: readonly ReplayPage[], requestRows: number, parallel: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: parallel });
  const endpoint = new URL(`${url.split(',')[0].replace(/\/+$/, '')}/_sql`);
  try {
    const start = performance.now();
    for (const page of pages) {
      for (const [i, statements] of page.entries()) {
        const requests: Array<[string, string[]]> = [];
        for (const s of statements) for (let k = 0; k < s.rows.length; k += requestRows) requests.push([s.sql, s.rows.slice(k, k + requestRows)]);
        let next = 0;
        const worker = async () => {
          while (next < requests.length) {
            const [sql, rows] = requests[next++];
            await post(agent, endpoint, sql, rows, i === 0);
          }
        };
        await Promise.all(Array.from({ length: Math.min(parallel, requests.length) }, worker));
      }
    }
    return (performance.now() - start) / 1000;
  } finally {
    agent.destroy();
  }
}

/** Each copy holds what its drained table holds: row count and sums over every column kind compared. */
export async function checkCopies(url: string, schema: string, tables: readonly ReplayTable[], digest: (t: ReplayTable) => string): Promise<void> {
  for (const t of tables) {
    const [a, b] = [`${q(schema)}.${q(t.table)}`, copyOf(schema, t.table)];
    await crateSql(url, `refresh table ${a}`);
    await crateSql(url, `refresh table ${b}`);
    const sql = (name: string) => `select ${digest(t)} from ${name}`;
    const [x, y] = [JSON.stringify((await crateSql(url, sql(a))).rows), JSON.stringify((await crateSql(url, sql(b))).rows)];
    if (x !== y) throw new Error(`the raw replay of ${t.table} ended with ${y}, the drain with ${x}`);
  }
}

export async function dropCopies(url: string, schema: string, tables: readonly ReplayTable[]): Promise<void> {
  for (const t of tables) await crateSql(url, `drop table if exists ${copyOf(schema, t.table)}`);
}
