-- Initial loads copy up to the largest key the table had when the copy started. Rows inserted
-- later are captured by the triggers anyway; without the bound, a copy of a table that grows at
-- its end (ids from a sequence) chases the writers and may never finish.
alter table __SCHEMA__.backfills add column upper_key jsonb;
