// The captured tables of the soak, in schema `soak` of the source database, and their seed rows.
//
//   accounts  bigint key, numeric(38,10), text, text[], jsonb, timestamptz; MERGE, key changes
//   pairs     composite key (integer, text); group key changes; truncated now and then
//   docs      bigint keys beyond 2^53, jsonb, bigint[]
//   seq_log   single-row inserts at a high rate with sequential ids: the shape that once lost rows;
//             never repaired by the soak's `verify --repair`, so nothing can hide a loss there
//   scratch   truncated and refilled now and then
//   big       200,000 rows, filled before the replicators start and captured mid-run (initial load)
//   parted    (--partitions) list-partitioned, written through its partitions, partitions added
import type pg from 'pg';

export const SCHEMA = 'soak';
export const BIG_ROWS = 200_000;
/** captured from the start */
export const BASE_TABLES = ['accounts', 'pairs', 'docs', 'seq_log', 'scratch'];
export const BIG_TABLE = 'big';
export const PARTED_TABLE = 'parted';
/** tables whose columns the DDL part adds and drops */
export const DDL_TABLES = ['accounts', 'pairs', 'docs', 'scratch'];
/** tables `verify --repair` may repair: all but seq_log */
export const REPAIRABLE = ['accounts', 'pairs', 'docs', 'scratch', 'big', 'parted'];
export const ACCOUNT_KEYS = 3000;
export const PAIR_KEYS = 300;
export const DOC_KEYS = 1500;
export const INITIAL_REGIONS = 4;

export function qualified(table: string): string {
  return `${SCHEMA}.${table}`;
}

export async function createSourceTables(db: pg.Pool, partitions: boolean): Promise<void> {
  await db.query(`
    create schema ${SCHEMA};
    create table soak.accounts (
      id bigint primary key, balance numeric(38,10) not null default 0, owner text, tags text[], doc jsonb,
      updated_at timestamptz not null default clock_timestamp());
    create table soak.pairs (a integer, b text, val numeric(20,4), primary key (a, b));
    create table soak.docs (id bigint primary key, body jsonb, nums bigint[], note text);
    create sequence soak.seq_log_id;
    create table soak.seq_log (id bigint primary key, writer integer not null, at timestamptz not null default clock_timestamp(), payload text);
    create table soak.scratch (id integer primary key, v text, n bigint);
    create table soak.big (id integer primary key, grp integer not null, amount numeric(12,2), label text, created timestamptz, attrs jsonb);

    insert into soak.accounts
    select g, (g * 1234.0123456789)::numeric(38,10), 'owner ' || g || ' O''Brien "q" \\ ü 🦀', array['a', 'b''c', 'ü"'],
           jsonb_build_object('g', g, 'n', jsonb_build_object('x', g % 7, 'l', jsonb_build_array(1, 'two', null))),
           timestamptz '2001-02-03 04:05:06.789012+00' + g * interval '1 minute 0.000123 s'
      from generate_series(1, ${ACCOUNT_KEYS / 2}) g;
    insert into soak.pairs select g, b, g * 1.5 from generate_series(1, ${PAIR_KEYS}) g, unnest(array['x', E'o''q']) b;
    insert into soak.docs select 9007199254740000 + g, jsonb_build_object('seed', g), array[9007199254740993 + g, -g], E'seed\\n' || g
      from generate_series(1, ${DOC_KEYS / 3}) g;
    insert into soak.scratch select g, 'seed ' || g, g * 1000003 from generate_series(1, 200) g;
  `);
  if (partitions) {
    await db.query(`create table soak.parted (id bigint not null, region integer not null, v text, amount numeric(12,2), at timestamptz,
                      primary key (id, region)) partition by list (region)`);
    for (let r = 0; r < INITIAL_REGIONS; r++) await db.query(`create table soak.parted_r${r} partition of soak.parted for values in (${r})`);
    await db.query(`insert into soak.parted select g, g % ${INITIAL_REGIONS}, 'seed ' || g, g / 7.0, clock_timestamp() from generate_series(1, 2000) g`);
  }
}

/** The 200,000-row table: filled now, captured later (its initial load starts mid-run). */
export async function fillBigTable(db: pg.Pool): Promise<void> {
  await db.query(`
    insert into soak.big
    select g, g % 97, (g % 100000) / 7.0, 'row ' || g || case when g % 11 = 0 then ' '' ü 日本 \\ x' else '' end,
           timestamptz '2020-01-01 00:00:00.000001+00' + g * interval '1.000001 s',
           case when g % 5 = 0 then null else jsonb_build_object('g', g, 'odd', g % 2 = 1, 'tags', jsonb_build_array('t' || g % 13)) end
      from generate_series(1, ${BIG_ROWS}) g;
    analyze soak.big`);
}
