-- Partitioned source tables (src/source/partition-watch.ts). A partition created or attached after
-- its table was captured has none of the capture's statement triggers until the partition watch
-- installs them; until then the guard row trigger that Postgres cloned onto it records here every
-- key written into it, and the watch sends those keys' current state through the outbox. Rows live
-- here for about one watch interval.
create table __SCHEMA__.partition_writes (
  table_id integer not null,
  relid    oid not null,
  key      jsonb not null
);

-- Relations a TRUNCATE statement has already covered, in the truncating transaction only (the
-- capture function of a partitioned table, src/source/triggers.ts): a partition whose ancestor is
-- listed here writes nothing of its own. A table, not a session setting, so that the application's
-- roles (which cannot write it) cannot make a partition's truncate go unseen.
create table __SCHEMA__.truncating (
  xid   xid8 not null,
  relid oid not null
);
