-- Analytics-shaped targets (issue 12). Forward-only: never edit once released.
--
-- `shape`: what a registered table's target looks like and what of the table leaves the source
-- (column filters, hashed columns, a row predicate, soft deletes, metadata, history); NULL for a
-- table replicated as it is. The triggers, the initial load, repair and verify read it.
-- `hash_salt`: the salt of the hashed columns. Only SQL in this database reads it (the capture
-- function is SECURITY DEFINER); the tool's schema grants nothing to other roles.
alter table __SCHEMA__.tables add column shape jsonb, add column hash_salt text;

-- The writing transaction's start time, written only for tables whose target wants it (metadata,
-- history, soft deletes). NULL for every other event: a column without a default is added without
-- rewriting the outbox, and a NULL costs a bit in the row's null bitmap, not 8 bytes.
alter table __SCHEMA__.outbox add column source_time timestamptz;
