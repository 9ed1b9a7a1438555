// Writes made inside a captured statement by the application's own triggers (triggers.ts, "Writes
// made inside a captured statement"): the nested statement's capture fires before the outer one's,
// so the outer capture must not send its older images after the nested ones. The target must end
// equal to the source row by row.
import { before, test } from 'node:test';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { PARTITIONED_TABLE } from '../helpers/partitions.js';
import { assertSameRows, makeConfig, startReplicator, waitCaughtUp, type Running } from '../helpers/replication.js';

const bed = clusterForFile();
let src: pg.Pool;
let dst: pg.Pool;
let rep: Running;

before(async () => {
  let srcUrl: string, dstUrl: string;
  ({ srcUrl, dstUrl, src, dst } = await bed.databases());
  await src.query(`
    create table tree (id integer primary key, parent integer, path text);
    -- an AFTER ROW trigger that writes the row it fired for: a materialised path
    create function tree_path() returns trigger language plpgsql as $$
    begin
      update tree t set path = coalesce((select p.path from tree p where p.id = new.parent), '') || '/' || new.id where t.id = new.id;
      return null;
    end $$;
    create trigger tree_path after insert on tree for each row execute function tree_path();

    create table job (id integer primary key, state text not null);
    -- an AFTER ROW trigger that removes the row its statement just changed
    create function job_done() returns trigger language plpgsql as $$
    begin
      if new.state = 'done' then delete from job where id = new.id; end if;
      return null;
    end $$;
    create trigger job_done after update on job for each row execute function job_done();

    create table tally (id integer primary key, n integer not null);
    -- an AFTER STATEMENT trigger whose name sorts before pg2crate's, writing the statement's rows
    create function tally_touch() returns trigger language plpgsql as $$
    begin
      update tally t set n = t.n + 1000 where t.id in (select id from fresh);
      return null;
    end $$;
    create trigger a_touch after insert on tally referencing new table as fresh for each statement execute function tally_touch();

    ${PARTITIONED_TABLE}
    -- a row trigger on the partitioned table that moves the row it fired for to another partition
    create function m_move() returns trigger language plpgsql as $$
    begin
      if new.v = 'move' then update public.m set id = id + 100, v = 'moved' where id = new.id; end if;
      return null;
    end $$;
    create trigger m_move after insert on public.m for each row execute function m_move();`);
  rep = await startReplicator(makeConfig({
    DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.tree,public.job,public.tally,public.m',
  }));
  await dst.query('select 1');
  await waitCaughtUp(src);
});

bed.onClose(() => rep?.stop());

async function same(table: string): Promise<number> {
  await waitCaughtUp(src);
  return assertSameRows(src, dst, table, table, ['id']);
}

test('an AFTER ROW trigger that updates the inserted row: the target has the row as the trigger left it', async () => {
  await src.query(`insert into tree values (1, null, null)`);
  await src.query(`insert into tree values (2, 1, null), (3, 1, null)`);
  await src.query(`insert into tree select g, 2, null from generate_series(10, 200) g`);
  await same('public.tree');
});

test('an AFTER ROW trigger that deletes the row its UPDATE changed: the row is gone from the target too', async () => {
  await src.query(`insert into job select g, 'new' from generate_series(1, 50) g`);
  await src.query(`update job set state = 'done' where id <= 20`);
  await src.query(`update job set state = 'running' where id > 40`);
  await same('public.job');
});

test('an application AFTER STATEMENT trigger that runs before the capture and writes the statement\'s rows', async () => {
  await src.query(`insert into tally select g, g from generate_series(1, 30) g`);
  await src.query(`update tally set n = n - 1 where id % 2 = 0`);
  await same('public.tally');
});

test('a row trigger that moves the inserted row to another partition', async () => {
  await src.query(`insert into public.m values (5, 'move'), (6, 'stay')`);
  await src.query(`insert into public.m1 values (7, 'move')`);
  await same('public.m');
  // and afterwards, with nothing nested, capture takes its usual path again
  await src.query(`update public.m set v = 'plain' where id = 6`);
  await src.query(`delete from tree where id = 3`);
  await same('public.m');
  await same('public.tree');
});
