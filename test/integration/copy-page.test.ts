// Outbox pages read as binary COPY (src/source/copy-page.ts) on a real server: the same tuples as
// the page query's rows, and a COPY that fails part way, or whose connection dies, rejects instead
// of hanging or handing over a part of the page.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { copyPageSql, pageSql, readCopyRows } from '../../src/source/copy-page.js';
import { clusterForFile } from '../helpers/file-cluster.js';

const bed = clusterForFile();
let srcUrl: string;
let src: pg.Pool;
const clients: pg.Client[] = [];

async function client(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: srcUrl });
  c.on('error', () => {});
  await c.connect();
  clients.push(c);
  return c;
}

/** Five columns as the page query gives them: id text, table_id int4, op "char", data text, source_time text. */
const ROWS = (n: number, extra = '') => `select g::text as id, (g % 3)::int4 as table_id, (case g % 3 when 0 then 'I' when 1 then 'U' else 'D' end)::"char" as op,
  case when g % 97 = 0 then null else json_build_object('id', g, 's', repeat('é日🎉' || g, 1 + g % 50) || E'\\t\\n"\\\\', 'big', case when g % 1000 = 1 then repeat('x', 200000) end)::text end as data,
  case when g % 2 = 0 then to_char((timestamptz '2026-12-08 00:00:00+00' + g * interval '1 ms') at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') end as source_time${extra}
  from generate_series(1, ${n}) g`;

before(async () => {
  ({ srcUrl, src } = await bed.databases());
});

bed.onClose(async () => {
  for (const c of clients) await c.end().catch(() => {});
});

test('a binary COPY of rows gives exactly the rows the query gives, values of every size and script included', async () => {
  const db = await client();
  const want = await db.query({ rowMode: 'array', text: ROWS(20000) });
  const got = await readCopyRows(db, `copy (${ROWS(20000)}) to stdout (format binary)`);
  assert.equal(got.length, 20000);
  assert.deepEqual(got, want.rows);
  // and the connection goes on as before
  assert.equal((await db.query('select 1 as one')).rows[0].one, 1);
});

test('the page query as COPY reads the outbox page by page as the query did', async () => {
  // a schema whose name holds `$1`: the page's inputs are written in, not substituted into the text
  await src.query(`create schema "p$1"; create table "p$1".outbox (id bigint primary key, xid xid8 not null default pg_current_xact_id(), table_id integer not null, op "char" not null, data json, source_time timestamptz)`);
  await src.query(`insert into "p$1".outbox (id, table_id, op, data, source_time) select g, 1, 'I', json_build_object('id', g), now() from generate_series(1, 1234) g`);
  const db = await client();
  const snap = (await db.query<{ s: string }>('select pg_current_snapshot()::text as s')).rows[0].s;
  const ids: string[] = [];
  for (let after = '0'; ;) {
    const page = await readCopyRows(db, copyPageSql('"p$1".outbox', after, '1234', snap, null, 500));
    const query = await db.query({ rowMode: 'array', text: pageSql('"p$1".outbox'), values: [after, '1234', snap, null, 500] });
    assert.deepEqual(page, query.rows);
    ids.push(...page.map((r) => r[0]));
    if (page.length < 500) break;
    after = page[page.length - 1][0];
  }
  assert.equal(ids.length, 1234);
  assert.deepEqual(ids, Array.from({ length: 1234 }, (_, i) => String(i + 1)));
});

test('a COPY that fails part way rejects with the server error and leaves the connection usable', async () => {
  const db = await client();
  await assert.rejects(
    readCopyRows(db, `copy (${ROWS(30000, ', case when g = 25000 then (1 / (g - g))::text end as boom')}) to stdout (format binary)`),
    /division by zero|5 columns|expected 5/,
  );
  // the 6-column COPY above is refused by the parser or the server; now one that fails on the server only
  await assert.rejects(
    readCopyRows(db, `copy (select * from (${ROWS(30000)}) r where case when r.id::int = 25000 then 1 / (r.id::int - r.id::int) = 0 else true end) to stdout (format binary)`),
    /division by zero/,
  );
  assert.equal((await db.query('select 2 as two')).rows[0].two, 2);
});

test('a COPY whose connection is terminated part way rejects', async () => {
  const db = await client();
  const pid = (await db.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0].pid;
  const reading = readCopyRows(db, `copy (select * from (${ROWS(3000)}) r where r.id::int < 1000 or pg_sleep(0.01) is not null) to stdout (format binary)`);
  // the rejection is awaited from the start: it may come while the terminate is still answered
  const rejected = assert.rejects(reading, /terminat|Connection|closed|ended/i);
  await new Promise((r) => setTimeout(r, 1000));
  await src.query('select pg_terminate_backend($1)', [pid]);
  await rejected;
});
