-- Demo schema for `docker compose up`, run once by the postgres image when its volume is new.
-- pg2crate connects as `app`, an ordinary role that owns the database and the table: no superuser,
-- no REPLICATION, no extension (the point of trigger capture).
create role app login password 'app';
alter database app owner to app;

set role app;

create table public.orders (
  id          bigint generated always as identity primary key,
  customer    text not null,
  amount      numeric(12, 2) not null,
  -- beyond 2^53: a value that JSON.parse would round
  external_id bigint,
  attributes  jsonb,
  tags        text[],
  created_at  timestamptz not null default now()
);

insert into public.orders (customer, amount, external_id, attributes, tags) values
  ('Ada',      19.99, 9007199254740993,    '{"channel": "web", "items": 2}',                   '{new,web}'),
  ('Grace',   120.00, 1234567890123456789, '{"channel": "store", "coupon": null}',             '{store}'),
  ('Edsger',    0.01, null,                '{"note": "quote '' and \"double\" and ünïcødé"}', '{}'),
  ('Barbara', 4250.50, -42,                null,                                              null),
  ('Ken',       7.00, 9223372036854775807, '{"nested": {"a": [1, 2, 3]}}',                   '{"with space","with,comma"}');

reset role;
