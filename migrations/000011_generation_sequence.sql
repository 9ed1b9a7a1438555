-- What the capture triggers read on every statement, without reading a table (issue 21): the
-- generation to write into from this sequence (pg_sequence_last_value, under the sequence page's
-- lock, no executor scan), and whether to NOTIFY from an advisory lock the drainer holds while it
-- is idle (src/capture/triggers.ts). `state` keeps both as before for everything else; retention
-- sets the sequence in the statement that moves state.gen (src/ops/retention.ts). A trigger that
-- reads a generation a moment old writes into a partition retention may empty only once every
-- event in it is applied, as with the state row.
create sequence __SCHEMA__.generation as smallint minvalue 0 maxvalue 2 start 0 no cycle;
select setval(pg_catalog.quote_ident(__SCHEMA_LITERAL__) || '.generation', (select gen from __SCHEMA__.state), true);
