// Helpers for partitioned-table tests: the shared partition tree, and "the partition watch has
// reached every partition" read from the catalog (a leaf's guard clone disabled, a sub-partitioned
// partition carrying the truncate trigger), not from the watch's own account.
import type pg from 'pg';
import { waitFor } from './replication.js';

/** public.m partitioned by range on id: m1 [0,100), m2 [100,200) split into m2a and m2b. */
export const PARTITIONED_TABLE = `
  create table public.m (id integer primary key, v text not null) partition by range (id);
  create table public.m1 partition of public.m for values from (0) to (100);
  create table public.m2 partition of public.m for values from (100) to (200) partition by range (id);
  create table public.m2a partition of public.m2 for values from (100) to (150);
  create table public.m2b partition of public.m2 for values from (150) to (200);`;

export async function watchReachedAll(src: pg.Pool, table = 'public.m'): Promise<void> {
  await waitFor('the partition watch to reach every partition', async () => {
    const res = await src.query(`select 1 from pg_partition_tree($1::regclass) p
      where p.level > 0 and case when p.isleaf
        then exists (select 1 from pg_trigger g where g.tgrelid = p.relid and g.tgname = 'pg2crate_capture_g' and g.tgenabled <> 'D')
        else not exists (select 1 from pg_trigger g where g.tgrelid = p.relid and g.tgname = 'pg2crate_capture_b') end`, [table]);
    return res.rows.length === 0;
  }, 30_000, 100);
}
