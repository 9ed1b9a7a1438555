-- Where the switch to trigger mode emitted its stop mark (src/source/pgoutput/switch.ts). A
-- restarted switch drains to that same mark while the slot's confirmed position is still before
-- it, instead of handing over afresh with a new mark at the current end of the WAL: under writers
-- and repeated failures a mark that moves on at each restart can stay out of reach for good.
alter table __SCHEMA__.capture add column stop_mark_lsn pg_lsn;
