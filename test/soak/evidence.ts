// When the soak finds a difference, everything needed to understand it goes into the run folder
// (.tmp/soak/<timestamp>/): the differing keys with both sides' rows, every audited outbox event of
// those keys (and the truncates of their tables), the checkpoint history, the window marks, the
// window check's violations, the dead letters, and the logs of every replicator process.
import { copyFileSync, mkdirSync, writeFileSync, createWriteStream } from 'node:fs';
import { basename, join } from 'node:path';
import type pg from 'pg';
import type { ChildReplicator } from '../helpers/child-replicator.js';
import type { TableDiff } from './compare.js';
import type { WindowReport } from './audit.js';

export interface Evidence {
  runDir: string;
  src: pg.Pool;
  diffs: TableDiff[];
  windows: WindowReport | null;
  replicators: readonly ChildReplicator[];
  summary: Record<string, unknown>;
}

export async function writeEvidence(e: Evidence): Promise<string[]> {
  const written: string[] = [];
  const file = (name: string, data: unknown) => {
    writeFileSync(join(e.runDir, name), typeof data === 'string' ? data : JSON.stringify(data, null, 2));
    written.push(name);
  };
  file('summary.json', e.summary);
  file('differences.json', e.diffs.filter((d) => d.rows.length > 0));
  if (e.windows) file('window-check.json', e.windows);
  const attempt = async (name: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      file(`${name}.error.txt`, String((err as Error)?.stack ?? err));
    }
  };
  await attempt('events-of-differing-keys', async () => {
    const out: Record<string, unknown[]> = {};
    for (const d of e.diffs) {
      if (d.rows.length === 0) continue;
      const keys = d.rows.map((r) => JSON.parse(r.key) as unknown);
      const res = await e.src.query(
        `select e.id::text, e.xid::text, e.op, e.gen, e.key, e.mode, e.at
           from soak_audit.events e
          where e.table_id = $1 and (e.key in (select value from jsonb_array_elements($2::jsonb)) or e.op = 'T')
          order by e.id`,
        [d.tableId, JSON.stringify(keys)],
      );
      out[d.table] = res.rows;
    }
    file('events-of-differing-keys.json', out);
  });
  await attempt('checkpoint-history', async () => {
    await dumpJsonLines(e.src, `select * from soak_audit.checkpoints order by seq`, join(e.runDir, 'checkpoint-history.jsonl'));
    written.push('checkpoint-history.jsonl');
  });
  await attempt('window-marks', async () => {
    const now = await e.src.query(`select m.stream, m.xid_after::text, m.seq_before::text from pg2crate.window_marks m order by m.xid_after`);
    const history = await e.src.query(`select m.seq, m.at, m.stream, m.xid_after::text, m.seq_before::text from soak_audit.marks m order by m.seq`);
    file('window-marks.json', { current: now.rows, everyMarkWritten: history.rows });
  });
  await attempt('checkpoint', async () => {
    file('checkpoint.json', (await e.src.query(`select * from pg2crate.checkpoint`)).rows);
  });
  await attempt('dead-letters', async () => {
    file('dead-letters.json', (await e.src.query(`select id, event_id::text, table_id, op, data, error_code, error, attempts, created_at from pg2crate.dead_letters order by id`)).rows);
  });
  await attempt('backfills', async () => {
    file('backfills.json', (await e.src.query(`select b.*, b.snapshot::text as snapshot from pg2crate.backfills b`)).rows);
  });
  mkdirSync(join(e.runDir, 'logs'), { recursive: true });
  for (const r of e.replicators) {
    try {
      copyFileSync(r.logFile, join(e.runDir, 'logs', basename(r.logFile)));
    } catch {
      // a log that was never written
    }
  }
  written.push('logs/');
  return written;
}

/** Streams a query's rows as JSON lines, page by page (the history may be long). */
async function dumpJsonLines(db: pg.Pool, sql: string, path: string): Promise<void> {
  const out = createWriteStream(path);
  const c = await db.connect();
  try {
    await c.query('begin');
    await c.query(`declare soak_dump no scroll cursor for ${sql}`);
    for (;;) {
      const page = await c.query('fetch 5000 from soak_dump');
      for (const row of page.rows) out.write(`${JSON.stringify(row)}\n`);
      if (page.rows.length < 5000) break;
    }
    await c.query('commit');
  } finally {
    c.release();
    await new Promise<void>((resolve) => out.end(resolve));
  }
}
