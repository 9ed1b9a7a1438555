-- The tool's own schema in the source database. `__SCHEMA__` is replaced by the quoted schema name
-- from the configuration before this file runs. Forward-only: never edit once released.

-- Captured tables. Triggers refer to a table by `id`, so the outbox stores 4 bytes, not a name.
create table __SCHEMA__.tables (
  id            integer generated always as identity primary key,
  relid         oid not null unique,
  source_schema text not null,
  source_table  text not null,
  key_columns   text[] not null check (cardinality(key_columns) > 0),
  key_origin    text not null check (key_origin in ('primary key', 'config')),
  target_schema text not null,
  target_table  text not null,
  added_at      timestamptz not null default now(),
  unique (source_schema, source_table)
);

-- Ids come from a sequence with CACHE 1: the drainer's window bounds rely on a nextval() that
-- happens after a read of last_value returning a larger value. Do not alter its cache.
create sequence __SCHEMA__.outbox_id_seq as bigint cache 1;

-- One row per change (or per truncate). `op`: I insert, U update, D delete (data = key), T truncate,
-- B a row copied by an initial load. `xid` is the writing transaction's top-level id; the drainer
-- consumes by snapshot visibility of it.
-- Retention without row-by-row deletes: the outbox is split into three generations (list
-- partitions). Writers append to the generation named in `state`; once every event of an older
-- generation is applied, that partition is truncated whole, which leaves nothing for vacuum.
create table __SCHEMA__.outbox (
  id       bigint not null default nextval('__SCHEMA__.outbox_id_seq'),
  gen      smallint not null,
  xid      xid8 not null default pg_current_xact_id(),
  table_id integer not null,
  op       "char" not null,
  data     jsonb
) partition by list (gen);
create table __SCHEMA__.outbox_0 partition of __SCHEMA__.outbox for values in (0);
create table __SCHEMA__.outbox_1 partition of __SCHEMA__.outbox for values in (1);
create table __SCHEMA__.outbox_2 partition of __SCHEMA__.outbox for values in (2);
create index on __SCHEMA__.outbox (id);
alter sequence __SCHEMA__.outbox_id_seq owned by __SCHEMA__.outbox.id;

-- Where a stream stands. A window is the set of events whose transaction is visible in
-- cur_snapshot and not in prev_snapshot; ids of the window lie in (low_id, cur_upper].
-- after_id is the position of the last applied page inside the current window.
create table __SCHEMA__.checkpoint (
  stream         text primary key,
  prev_snapshot  pg_snapshot,
  -- when prev_snapshot was taken: every change committed before it is applied
  prev_taken_at  timestamptz,
  cur_snapshot   pg_snapshot,
  cur_taken_at   timestamptz,
  cur_upper      bigint,
  after_id       bigint not null default 0,
  low_id         bigint not null default 0,
  applied_events bigint not null default 0,
  windows        bigint not null default 0,
  last_applied_at timestamptz,
  updated_at     timestamptz not null default now()
);

-- Facts for the lower id bound of a window: `seq_before` is the sequence's last_value, read before
-- this session was given the transaction id `xid_after`. A transaction whose xid is greater than
-- `xid_after` was assigned it later, so all its ids (nextval after its first write) exceed seq_before.
-- (A snapshot's xmax cannot serve here: it is one past the latest *completed* xid, and a
-- transaction with a higher xid may already be running and have taken ids.)
create table __SCHEMA__.window_marks (
  stream     text not null,
  xid_after  xid8 not null,
  seq_before bigint not null,
  primary key (stream, xid_after)
);

-- One row the capture triggers read: the generation to write into, and whether to send a NOTIFY
-- (only while the drainer says it is idle: notifying transactions serialise their commits on a
-- global lock).
create table __SCHEMA__.state (
  singleton       boolean primary key default true check (singleton),
  idle            boolean not null default false,
  gen             smallint not null default 0 check (gen between 0 and 2),
  gen_switched_at timestamptz not null default now()
);
insert into __SCHEMA__.state default values;

-- Writers other than the triggers (initial load, repair) take the generation from here.
create function __SCHEMA__.current_generation() returns smallint
  language sql stable set search_path = pg_catalog, pg_temp
  as 'select gen from __SCHEMA__.state';
alter table __SCHEMA__.outbox alter column gen set default __SCHEMA__.current_generation();

-- Changes the target refused after retries, kept with the target's message, never counted as applied.
create table __SCHEMA__.dead_letters (
  id          bigint generated always as identity primary key,
  stream      text not null,
  event_id    bigint not null,
  table_id    integer not null,
  op          "char" not null,
  data        jsonb,
  error_code  text,
  error       text not null,
  attempts    integer not null,
  created_at  timestamptz not null default now()
);
