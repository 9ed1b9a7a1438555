// A table whose pages tell their order: the tests of how the drainer reads ahead and overlaps pages
// (staged-pages, overlapped-pages, on Postgres and CrateDB) write to it in pages of PAGE events,
// watch the pages in flight, and check that the target ends with the latest change of every key.
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { SinkTableBatch } from '../../src/sink/sink.js';
import type { FileCluster } from './file-cluster.js';
import { assertSameRows, makeConfig } from './replication.js';
import type { ApplyCall } from './sinks.js';

export const PAGE = 50;

/** A settled source and target with public.ledger captured, pages of PAGE events. */
export async function ledger(bed: FileCluster) {
  const { src, dst, env } = await bed.settled(
    `create table public.ledger (id integer primary key, amount bigint not null, memo text)`,
    { PG2CRATE_TABLES: 'public.ledger', PG2CRATE_PAGE_SIZE: String(PAGE) },
    8,
  );
  return { src, dst, config: makeConfig(env) };
}

/**
 * Every amount doubles many times over the pages, and keys move: an older image applied after a
 * newer one shows. `thrice` adds a last round of updates of every key.
 */
export async function doubling(src: pg.Pool, thrice = false): Promise<void> {
  await src.query(`insert into ledger select g, g, 'first' from generate_series(1, 120) g`);
  for (let i = 0; i < 12; i++) await src.query(`update ledger set amount = amount * 2, memo = memo || '.' where id % 12 = $1`, [i]);
  for (let i = 0; i < 6; i++) await src.query(`update ledger set amount = amount + 1 where id % 6 = $1`, [i]);
  await src.query(`delete from ledger where id % 7 = 0`);
  await src.query(`update ledger set id = id + 1000 where id between 50 and 60`);
  if (thrice) for (let i = 0; i < 12; i++) await src.query(`update ledger set amount = amount * 3 where id % 12 = $1`, [i]);
}

/**
 * Writes `work`; returns the page (1-based) of each outbox id it wrote. The whole workload lies in
 * one window, so pages are runs of PAGE ids in id order.
 */
export async function paged(src: pg.Pool, work: (src: pg.Pool) => Promise<void>, minPages: number): Promise<(id: number) => number> {
  const before = Number((await src.query(`select coalesce(max(id), 0)::text as id from pg2crate.outbox`)).rows[0].id);
  await work(src);
  const ids = (await src.query<{ id: string }>(`select o.id::text as id from pg2crate.outbox o where o.id > $1 order by o.id`, [before])).rows.map((r) => Number(r.id));
  assert.ok(ids.length > minPages * PAGE, `the workload must span more than ${minPages} pages, got ${ids.length} events`);
  const place = new Map(ids.map((id, i) => [id, Math.floor(i / PAGE) + 1]));
  return (id) => place.get(id) ?? 0;
}

export async function checkpointAfter(src: pg.Pool): Promise<number> {
  return Number((await src.query(`select after_id::text as after from pg2crate.checkpoint where stream = 'main'`)).rows[0].after);
}

/** The target's ledger equals the source's, row by row and in its sum. */
export async function assertConverged(src: pg.Pool, dst: pg.Pool): Promise<void> {
  await assertSameRows(src, dst, 'public.ledger', 'public.ledger', ['id']);
  const sum = (db: pg.Pool) => db.query<{ s: string }>(`select sum(amount)::text || '/' || count(*) as s from ledger`).then((r) => r.rows[0].s);
  assert.equal(await sum(dst), await sum(src));
}

/** Inserts of `rows` distinct keys from `from` on, in transactions of 25: every page may begin beside the one before it. */
export const inserts = (rows: number, from = 1) => async (src: pg.Pool): Promise<void> => {
  for (let k = from; k < from + rows; k += 25) await src.query(`insert into ledger select g, g, 'new' from generate_series($1::int, $1::int + 24) g`, [k]);
};

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const keysOf = (batches: SinkTableBatch[]) => new Set(batches.flatMap((b) => [...b.deletes, ...b.upserts].map((c) => `${b.table.id}/${c.key}`)));

interface InFlight {
  page: number;
  ids: number[];
  keys: Set<string>;
}

/**
 * Watches the pages in flight through a recorder's hooks (begin in `before`, end in `after`, drop for
 * a page failed before it was written): which began beside another (`overlapped`, as [earlier,
 * later]), the most at once, and every breach of what overlapping must keep (a key in two pages in
 * flight, a checkpoint past a page still being written), each as a message.
 */
export function watcher(pageOf: (id: number) => number, src: pg.Pool) {
  const inFlight: InFlight[] = [];
  const remove = (call: ApplyCall) => {
    const i = inFlight.findIndex((f) => f.ids === call.ids);
    if (i >= 0) inFlight.splice(i, 1);
  };
  const w = {
    inFlight,
    overlapped: [] as Array<[number, number]>,
    most: 0,
    breaches: [] as string[],
    begin(call: ApplyCall, batches: SinkTableBatch[]): InFlight {
      const f: InFlight = { page: pageOf(call.ids[0]), ids: call.ids, keys: keysOf(batches) };
      for (const other of inFlight) {
        w.overlapped.push([other.page, f.page]);
        const shared = [...f.keys].filter((k) => other.keys.has(k));
        if (shared.length > 0) w.breaches.push(`page ${f.page} began while page ${other.page}, which holds ${shared.length} of its keys (${shared.slice(0, 3).join(', ')}), was in flight`);
      }
      inFlight.push(f);
      w.most = Math.max(w.most, inFlight.length);
      return f;
    },
    async end(call: ApplyCall): Promise<void> {
      remove(call);
      // This page is written but not yet confirmed; neither is any page still in flight.
      const after = await checkpointAfter(src);
      const open = Math.min(...call.ids, ...inFlight.flatMap((f) => f.ids));
      if (after >= open) w.breaches.push(`the checkpoint (${after}) passed event ${open} of a page not yet confirmed (page ${pageOf(call.ids[0])} done)`);
    },
    drop: remove,
  };
  return w;
}

/** The pages of `keys` (page → its keys) that share a key with the page before them. */
export function sharingPages(keys: ReadonlyMap<number, ReadonlySet<string>>): number[] {
  return [...keys.keys()].sort((a, b) => a - b).filter((p) => keys.has(p - 1) && [...keys.get(p)!].some((k) => keys.get(p - 1)!.has(k)));
}
