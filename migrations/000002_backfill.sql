-- Initial loads. One row per table being copied: the key of the last chunk copied, so that a
-- restart resumes after it, and the transaction id of the last chunk, so that a caller can tell
-- when the copy has reached the target.
create table __SCHEMA__.backfills (
  table_id      integer primary key references __SCHEMA__.tables (id) on delete cascade,
  status        text not null default 'pending' check (status in ('pending', 'running', 'done')),
  last_key      jsonb,
  rows_copied   bigint not null default 0,
  rows_estimate bigint,
  chunks        bigint not null default 0,
  last_xid      xid8,
  started_at    timestamptz,
  finished_at   timestamptz,
  updated_at    timestamptz not null default now()
);
