-- How each stream captures changes, and what a switch between the modes needs to resume after a
-- crash. No row means trigger mode. Forward-only: never edit once released.
--   trigger      statement triggers write the outbox (the default)
--   to-pgoutput  a slot exists; the outbox is being drained up to exactly final_snapshot, the
--                snapshot exported with the slot; then the triggers are dropped
--   pgoutput     the slot is the stream
--   to-trigger   triggers are installed again; the slot is being drained up to the logical
--                message `stop_marker`; the outbox then continues after resume_snapshot
create table __SCHEMA__.capture (
  stream           text primary key,
  mode             text not null check (mode in ('trigger', 'to-pgoutput', 'pgoutput', 'to-trigger')),
  slot_name        text,
  publication_name text,
  final_snapshot   pg_snapshot,
  resume_snapshot  pg_snapshot,
  resume_low_id    bigint,
  stop_marker      text,
  switched_at      timestamptz,
  updated_at       timestamptz not null default now()
);
