// A table whose pages tell their order: the tests of how the drainer reads ahead and overlaps pages
// (staged-pages, overlapped-pages) write to it in pages of PAGE events and check that the target
// ends with the latest change of every key.
import assert from 'node:assert/strict';
import type pg from 'pg';
import type { FileCluster } from './file-cluster.js';
import { assertSameRows, makeConfig } from './replication.js';

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
