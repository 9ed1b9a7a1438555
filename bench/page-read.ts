// What reading outbox pages costs Node and the source's backend, by the shape of the read.
//
// Issue 20 asks for Node CPU ≤ 6 ms per 1,000 mixed events while draining; a CPU profile put much
// of it in pg's work for each row of a page read as a query (a message, a field array, a row array
// and a string per column). This measures that part alone, in three shapes: the page query's rows
// (the drainer before binary COPY), the same page sent as one text (string_agg over the page
// query, a row per line, columns split by tabs), which Node splits itself, and the page as a
// binary COPY of the page query (what the drainer reads now: src/source/copy-page.ts).
//
// One throwaway cluster; the drain bench's mixed backlog (3 tables of 10 columns, transactions of
// 200 inserts, 700 updates and 100 deletes) captured into the outbox, no replicator running. Each
// round reads the whole backlog page by page with each shape in turn (interleaved), on one
// connection set up as the drainer's (enable_sort off), through the drainer's own page query
// (src/source/copy-page.ts pageSql). All end with the same tuples (id, table_id, op, data,
// source_time) per event, checked equal. Reported per 1,000 events: this process's CPU, the
// backend's CPU (from /proc) and the wall time; min / median / max over the rounds.
import pg from 'pg';
import { loadConfig } from '../src/core/config.js';
import { createLogger } from '../src/core/logger.js';
import { Runner } from '../src/runner.js';
import { migrate } from '../src/commands/migrate.js';
import { copyPageSql, pageSql, readCopyRows } from '../src/source/copy-page.js';
import { startCluster } from '../test/helpers/cluster.js';
import { MIXED_TABLES, mixedTable, mixedValues, UPDATABLE, writeMixedBacklog } from './drain.js';
import { fmtSpread, note, printTable, spread, type BenchArgs } from './report.js';
import { processCpuSeconds } from './server-cpu.js';

export const description = "Node's and the source backend's CPU to read outbox pages: the page query's rows, the page as one text, the page as binary COPY (today)";

type Tuple = [id: string, tableId: number, op: string, data: string | null, sourceTime: string | null];

const OUTBOX = 'pg2crate.outbox';

/** The page as one text: the page query's rows, in its order, one line each, columns split by tabs (NULL as an empty column). */
const TEXT_PAGE = `select string_agg(concat_ws(E'\\t', p.id, p.table_id, p.op, coalesce(p.source_time, ''), coalesce(p.data, '')), E'\\n' order by p.id::int8) as page
  from (${pageSql(OUTBOX)}) p`;

interface Shape {
  name: string;
  /** the tuples of the page after `from` */
  read(db: pg.Client, from: string, window: Window): Promise<Tuple[]>;
}

interface Window {
  upper: string;
  snapshot: string;
  pageSize: number;
}

const SHAPES: Shape[] = [
  {
    name: 'one row per event',
    async read(db, from, w) {
      const res = await db.query<Tuple>({ rowMode: 'array', text: pageSql(OUTBOX), values: [from, w.upper, w.snapshot, null, w.pageSize] });
      return res.rows;
    },
  },
  {
    name: 'the page as one text',
    async read(db, from, w) {
      const res = await db.query<[string | null]>({ rowMode: 'array', text: TEXT_PAGE, values: [from, w.upper, w.snapshot, null, w.pageSize] });
      const text = res.rows[0][0];
      const out: Tuple[] = [];
      if (text === null) return out;
      for (let at = 0; at < text.length;) {
        let end = text.indexOf('\n', at);
        if (end < 0) end = text.length;
        const a = text.indexOf('\t', at);
        const b = text.indexOf('\t', a + 1);
        const c = text.indexOf('\t', b + 1);
        const d = text.indexOf('\t', c + 1);
        out.push([text.slice(at, a), Number(text.slice(a + 1, b)), text.slice(b + 1, c), d + 1 < end ? text.slice(d + 1, end) : null, c + 1 < d ? text.slice(c + 1, d) : null]);
        at = end + 1;
      }
      return out;
    },
  },
  {
    name: 'binary COPY of the page (today)',
    read(db, from, w) {
      return readCopyRows(db, copyPageSql(OUTBOX, from, w.upper, w.snapshot, null, w.pageSize));
    },
  },
];

export async function run(args: BenchArgs): Promise<object> {
  const events = Number(args.events ?? 200_000);
  const pageSize = Number(args['page-size'] ?? 5000);
  const rounds = Number(args.rounds ?? 5);
  const cluster = await startCluster();
  const [url, dstUrl] = [await cluster.createDatabase('page_read'), await cluster.createDatabase('page_read_dst')];
  const src = new pg.Pool({ connectionString: url, max: 2 });
  const db = new pg.Client({ connectionString: url });
  try {
    const deletable = Math.ceil(Math.ceil(events / 1000) / 3) * 100;
    for (const t of MIXED_TABLES) {
      await src.query(mixedTable(t));
      await src.query(`insert into ${t} select ${mixedValues('g', '0')} from generate_series(1, ${UPDATABLE + deletable}) g`);
    }
    // Captured only: no replicator runs.
    const runner = new Runner(loadConfig({ DATABASE_URL: url, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: MIXED_TABLES.map((t) => `public.${t}`).join(','), LOG_LEVEL: 'warn' }), createLogger('warn'));
    try { await migrate(runner); } finally { await runner.close(); }
    await writeMixedBacklog(src, events, deletable);
    await src.query(`vacuum analyze ${OUTBOX}`);
    await db.connect();
    await db.query('set enable_sort = off');
    const backend = (await db.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0].pid;
    const w = (await db.query<{ upper: string; snapshot: string }>(`select max(id)::text as upper, pg_current_snapshot()::text as snapshot from ${OUTBOX}`)).rows[0];
    const window: Window = { ...w, pageSize };
    const figures = SHAPES.map(() => ({ node: [] as number[], backend: [] as number[], wall: [] as number[] }));
    let reference: string | null = null;
    for (let round = 0; round < rounds; round++) {
      for (const [i, shape] of SHAPES.entries()) {
        let n = 0;
        let digest = 0;
        const cpu0 = process.cpuUsage();
        const b0 = processCpuSeconds(backend);
        const t0 = performance.now();
        for (let from = '0'; ;) {
          const rows = await shape.read(db, from, window);
          for (const r of rows) digest = (digest * 31 + r[0].length + r[1] + r[2].charCodeAt(0) + (r[3]?.length ?? 0) + (r[4]?.length ?? 0)) | 0;
          n += rows.length;
          if (rows.length < pageSize) break;
          from = rows[rows.length - 1][0];
        }
        const wall = performance.now() - t0;
        const cpu = process.cpuUsage(cpu0);
        const k = n / 1000;
        figures[i].node.push((cpu.user + cpu.system) / 1000 / k);
        figures[i].backend.push(((processCpuSeconds(backend) - b0) * 1000) / k);
        figures[i].wall.push(wall / k);
        // Both shapes must have read the same events, the same way.
        const seen = `${n} events, digest ${digest}`;
        if (reference === null) reference = seen;
        else if (seen !== reference) throw new Error(`${shape.name} read ${seen}, the first shape ${reference}`);
      }
      note(`round ${round + 1} of ${rounds} done`);
    }
    const rows = SHAPES.map((s, i) => [s.name, fmtSpread(spread(figures[i].node)), fmtSpread(spread(figures[i].backend)), fmtSpread(spread(figures[i].wall))]);
    printTable(`reading ${reference} of the mixed backlog in pages of ${pageSize.toLocaleString('en')}, ${rounds} interleaved rounds (min / median / max, ms per 1,000 events)`,
      ['read', 'Node CPU', 'backend CPU', 'wall'], rows);
    return { events, pageSize, rounds, shapes: SHAPES.map((s, i) => ({ name: s.name, ...figures[i] })) };
  } finally {
    await db.end().catch(() => {});
    await src.end();
    await cluster.stop();
  }
}
