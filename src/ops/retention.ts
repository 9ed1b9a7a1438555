// Outbox retention by rotating generations, never by deleting rows one by one.
//
// The outbox has three list partitions (generations 0, 1, 2); writers append to the one named in
// the state row. A retention run (1) truncates each other generation whose events are all applied,
// and (2) moves writers on to the next generation once the current one has grown past the
// threshold and the next one is empty. So the outbox holds at most about three generations plus
// whatever is not yet applied, and vacuum has nothing to clean up.
//
// Safety of a truncate: it runs under an ACCESS EXCLUSIVE lock on that partition alone (writers of
// the current generation do not touch it). Taking the lock waits for every transaction that wrote
// into the partition to end; under the lock the run checks that every event in it is visible in
// every stream's prev_snapshot (applied), and only then truncates. A transaction that read the old
// generation number but writes after the truncate simply adds an event to the emptied partition,
// which is read and applied like any other. Unapplied events are never removed, nor are those a
// running direct initial load still has to look at (direct-load.ts). The same check runs first
// without the lock, so that a generation with events still to apply costs readers nothing.
import type pg from 'pg';
import { qualify } from '../core/identifiers.js';
import type { Logger } from '../core/logger.js';

export interface RetentionResult {
  truncated: number[];
  rotatedTo: number | null;
  /** bytes of the three partitions after the run */
  outboxBytes: number;
}

export interface RetentionOptions {
  schema: string;
  /** move writers on once the current generation holds this many bytes */
  rotateBytes: number;
  /** how long to wait for the lock of a generation before trying again next run */
  lockTimeoutMs: number;
  logger: Logger;
}

const GENERATIONS = [0, 1, 2];

export async function runRetention(pool: pg.Pool, opts: RetentionOptions): Promise<RetentionResult> {
  const log = opts.logger.child({ component: 'retention' });
  const s = opts.schema;
  const part = (g: number) => qualify(s, `outbox_${g}`);
  const { rows } = await pool.query<{ gen: number }>(`select gen from ${qualify(s, 'state')}`);
  const current = rows[0].gen;
  const truncated: number[] = [];
  // An event is pending while some stream has not applied it, or a running direct load still has
  // to re-send its key (direct-load.ts).
  const pendingSql = (g: number) => `select exists (select 1 from ${part(g)} o
      where exists (select 1 from ${qualify(s, 'checkpoint')} c
                     where c.prev_snapshot is null or not pg_visible_in_snapshot(o.xid, c.prev_snapshot))
         or not exists (select 1 from ${qualify(s, 'checkpoint')})
         or exists (select 1 from ${qualify(s, 'backfills')} b
                     where b.table_id = o.table_id and b.status <> 'done' and b.snapshot is not null
                       and not pg_visible_in_snapshot(o.xid, b.snapshot))) as pending`;
  for (const g of GENERATIONS) {
    if (g === current) continue;
    const any = await pool.query(`select 1 from ${part(g)} limit 1`);
    if (any.rows.length === 0) continue;
    // First without a lock: a generation with events still to apply is skipped without blocking
    // anyone. Under the exclusive lock the same scan would stop the drainer's reads of the whole
    // outbox for as long as it runs, and with a large backlog that was most of the time.
    if ((await pool.query<{ pending: boolean }>(pendingSql(g))).rows[0].pending) {
      log.debug({ generation: g }, 'generation still has unapplied events');
      continue;
    }
    const client = await pool.connect();
    try {
      await client.query('begin');
      await client.query(`set local lock_timeout = ${Math.max(1, Math.round(opts.lockTimeoutMs))}`);
      await client.query(`lock table ${part(g)} in access exclusive mode`);
      // Again under the lock, which waited for every writer of the partition to end: the check
      // that makes the truncate safe. It finds every event applied unless one came in meanwhile.
      if ((await client.query<{ pending: boolean }>(pendingSql(g))).rows[0].pending) {
        await client.query('rollback');
        log.debug({ generation: g }, 'generation got an unapplied event meanwhile');
        continue;
      }
      await client.query(`truncate ${part(g)}`);
      await client.query('commit');
      truncated.push(g);
      log.info({ generation: g }, 'truncated applied outbox generation');
    } catch (err) {
      await client.query('rollback').catch(() => {});
      if ((err as { code?: string }).code === '55P03') {
        log.info({ generation: g }, 'outbox generation busy; retention tries again next run');
        continue;
      }
      throw err;
    } finally {
      client.release();
    }
  }
  let rotatedTo: number | null = null;
  const size = await pool.query<{ bytes: string }>(`select pg_total_relation_size($1::regclass)::text as bytes`, [part(current)]);
  const next = (current + 1) % GENERATIONS.length;
  if (Number(size.rows[0].bytes) >= opts.rotateBytes) {
    const empty = (await pool.query(`select 1 from ${part(next)} limit 1`)).rows.length === 0;
    if (empty) {
      await pool.query(`update ${qualify(s, 'state')} set gen = $1, gen_switched_at = now() where gen = $2`, [next, current]);
      rotatedTo = next;
      log.info({ from: current, to: next, bytes: Number(size.rows[0].bytes) }, 'outbox writers moved to the next generation');
    } else {
      log.warn({ generation: next }, 'outbox cannot rotate: the next generation still holds unapplied events (is the drainer running?)');
    }
  }
  const total = await pool.query<{ bytes: string }>(
    `select sum(pg_total_relation_size(format('%I.%I', $1::text, 'outbox_' || g)::regclass))::text as bytes from unnest(array[0, 1, 2]) g`,
    [s],
  );
  return { truncated, rotatedTo, outboxBytes: Number(total.rows[0].bytes) };
}
