-- Where the stream's slot starts: the consistent point the switch advanced it to
-- (src/source/pgoutput/slot.ts). pg_replication_slot_advance writes the slot to disk at once only
-- when its restart point moves too; otherwise a crash before the next checkpoint puts the slot
-- back at its creation-time consistent point, from where PostgreSQL may fail to decode it (the
-- snapshot-builder bug slot.ts works around). The replicator starts streaming no earlier than this.
alter table __SCHEMA__.capture add column slot_start_lsn pg_lsn;
