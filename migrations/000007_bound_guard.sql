-- The window bound guard (src/source/outbox.ts): each time a window closes, the drainer checks that
-- no event between the old and the new lower id bound belongs to a transaction the closing window
-- did not see. Such an event would never be read again; when one is found the bound stays where it
-- was, the event ids are logged, and this counter goes up (`pg2crate status`, /metrics).
alter table __SCHEMA__.checkpoint add column bound_violations bigint not null default 0;
