-- The columns of each captured table as the replicator last saw them (attnum:name). A column added
-- with a default (or a stored generated one) gives every existing row a value without any trigger
-- firing, so the table is copied again (src/source/column-watch.ts). Kept here rather than in the
-- replicator's memory so that a restart between the ALTER TABLE and the first row that carries the
-- column cannot miss it.
alter table __SCHEMA__.tables add column columns_seen text[];
update __SCHEMA__.tables t
   set columns_seen = (select coalesce(array_agg(a.attnum || ':' || a.attname order by a.attnum), '{}')
                         from pg_attribute a where a.attrelid = t.relid and a.attnum > 0 and not a.attisdropped);
