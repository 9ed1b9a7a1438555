-- Direct initial loads (src/source/direct-load.ts): rows go from the source straight to the target,
-- not through the outbox. `snapshot` is taken when the copy starts; every change committed outside
-- it is re-sent through the outbox once the copy is done, so the job needs it after a crash too.
-- Retention keeps those changes until then. `copy_done`: the rows are all in the target, only that
-- re-send is left.
alter table __SCHEMA__.backfills add column snapshot pg_snapshot;
alter table __SCHEMA__.backfills add column copy_done boolean not null default false;
