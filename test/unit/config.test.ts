import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfig, parseQualifiedName } from '../../src/core/config.js';
import { ConfigError } from '../../src/core/errors.js';

const SRC = 'postgres://app:s3cret-pw@db.example:5432/shop';
const DST = 'postgres://copy@target.example/shop_copy';
const BASE = { DATABASE_URL: SRC, TARGET_DATABASE_URL: DST };

/** Asserts that loading fails with a ConfigError that names `setting` (and, optionally, matches `more`). */
function rejects(env: Record<string, string | undefined>, setting: string, file: Record<string, unknown> = {}, more?: RegExp): void {
  assert.throws(() => loadConfig(env, file), (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.ok(err.message.includes(setting), `the message must name ${setting}: ${err.message}`);
    if (more) assert.match(err.message, more);
    assert.ok(!err.message.includes('s3cret-pw'), `the message must not show the password: ${err.message}`);
    return true;
  });
}

test('defaults: a source and a target are all it takes, and the result is frozen', () => {
  const c = loadConfig(BASE);
  assert.equal(c.sourceUrl, SRC);
  assert.deepEqual(c.target, { kind: 'postgres', connectionString: DST });
  assert.equal(c.schema, 'pg2crate');
  assert.equal(c.stream, 'main');
  assert.deepEqual(c.tables, []);
  assert.equal(c.targetSchema, undefined);
  assert.equal(c.pageSize, 5000);
  assert.equal(c.pollIntervalMs, 1000);
  assert.equal(c.standbyRetryMs, 2000);
  assert.equal(c.logLevel, undefined, 'unset: the CLI picks info for start, warn for the one-shot commands');
  assert.equal(c.deadLetterPolicy, 'park');
  assert.equal(c.rejectAttempts, 3);
  assert.equal(c.stopTimeoutMs, 30_000);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.target) && Object.isFrozen(c.tables) && Object.isFrozen(c.crate));
  assert.throws(() => { (c as { pageSize: number }).pageSize = 1; }, TypeError);
});

test('the environment wins over the file, and the file fills what the environment leaves out', () => {
  const c = loadConfig({ ...BASE, PG2CRATE_PAGE_SIZE: '250', PG2CRATE_STREAM: '' }, { pageSize: 10, pollIntervalMs: 50, stream: 'from-file' });
  assert.equal(c.pageSize, 250);
  assert.equal(c.pollIntervalMs, 50);
  assert.equal(c.stream, 'from-file', 'an empty variable counts as unset');
});

test('the libpq PG* variables may stand in for DATABASE_URL', () => {
  const c = loadConfig({ PGHOST: 'db.example', PGDATABASE: 'shop', TARGET_DATABASE_URL: DST });
  assert.equal(c.sourceUrl, undefined);
});

test('a CrateDB target takes its credentials out of the URL', () => {
  const c = loadConfig({ DATABASE_URL: SRC, CRATEDB_URL: 'https://writer:p%40ss@crate.example:4200/' });
  assert.deepEqual(c.target, { kind: 'cratedb', urls: ['https://crate.example:4200'], username: 'writer', password: 'p@ss' });
  const d = loadConfig({ DATABASE_URL: SRC, CRATEDB_URL: 'http://crate.example:4200' });
  assert.deepEqual(d.target, { kind: 'cratedb', urls: ['http://crate.example:4200'], username: 'crate', password: undefined });
});

test('CRATEDB_URL takes the nodes of a cluster as a comma-separated list (a list in the file), sharing one user', () => {
  const c = loadConfig({ DATABASE_URL: SRC, CRATEDB_URL: 'http://writer:s3cret-pw@a.example:4200/, http://b.example:4200 ,http://writer:s3cret-pw@c.example:4201' });
  assert.deepEqual(c.target, { kind: 'cratedb', urls: ['http://a.example:4200', 'http://b.example:4200', 'http://c.example:4201'], username: 'writer', password: 's3cret-pw' });
  assert.ok(Object.isFrozen(c.target.kind === 'cratedb' && c.target.urls));
  assert.equal(c.crate.replicas, '0-2', 'created tables keep a copy on every node of three');
  const f = loadConfig({ DATABASE_URL: SRC }, { cratedbUrl: ['http://a.example:4200', 'https://b.example:4200'] });
  assert.deepEqual(f.target.kind === 'cratedb' && f.target.urls, ['http://a.example:4200', 'https://b.example:4200']);
  const e = loadConfig({ DATABASE_URL: SRC, CRATEDB_URL: 'http://a:4200,http://b:4200', CRATEDB_USER: 'u', CRATEDB_PASSWORD: 's3cret-pw' });
  assert.deepEqual(e.target, { kind: 'cratedb', urls: ['http://a:4200', 'http://b:4200'], username: 'u', password: 's3cret-pw' });
});

test('a bad node in the list is named by its position, never shown, and the message stays one line', () => {
  const bad = (value: string, more: RegExp) => {
    rejects({ DATABASE_URL: SRC, CRATEDB_URL: value }, 'CRATEDB_URL', {}, more);
    assert.throws(() => loadConfig({ DATABASE_URL: SRC, CRATEDB_URL: value }), (err: Error) => !err.message.includes('\n'));
  };
  bad('http://writer:s3cret-pw@a.example:4200,postgres://writer:s3cret-pw@b.example:5432', /URL 2 of 2: .*http:/);
  bad('http://a.example:4200,,http://b.example:4200', /URL 2 of 3: empty/);
  bad('http://a.example:4200,', /URL 2 of 2: empty/);
  bad('http://writer:s3cret-pw@a.example:4200,not a url', /URL 2 of 2: .*not a URL/);
  bad('http://a.example:4200,http://b.example:4200,http://a.example:4200/', /URL 1 and URL 3 name the same node/);
  bad('http://writer:s3cret-pw@a.example:4200,http://other:s3cret-pw@b.example:4200', /different credentials/);
  bad('http://writer:s3cret-pw@a.example:4200,http://writer:wrong@b.example:4200', /different credentials/);
  rejects({ DATABASE_URL: SRC }, 'CRATEDB_URL', { cratedbUrl: ['http://a.example:4200', 42] });
});

test('bad source URLs name DATABASE_URL and never echo the password', () => {
  rejects({ ...BASE, DATABASE_URL: 'the shop database' }, 'DATABASE_URL', {}, /not a URL/);
  rejects({ ...BASE, DATABASE_URL: 'app:s3cret-pw@db.example/shop' }, 'DATABASE_URL', {}, /postgres:/);
  rejects({ ...BASE, DATABASE_URL: 'mysql://app:s3cret-pw@db.example/shop' }, 'DATABASE_URL', {}, /postgres:/);
  rejects({ ...BASE, DATABASE_URL: 'postgres://app:s3cret-pw@/shop' }, 'DATABASE_URL');
  rejects({ TARGET_DATABASE_URL: DST }, 'DATABASE_URL', {}, /not set/);
  rejects({ TARGET_DATABASE_URL: DST }, 'DATABASE_URL', { databaseUrl: 42 });
});

test('bad target URLs name their setting', () => {
  rejects({ DATABASE_URL: SRC, TARGET_DATABASE_URL: 'http://target.example' }, 'TARGET_DATABASE_URL', {}, /postgres:/);
  rejects({ DATABASE_URL: SRC, TARGET_DATABASE_URL: 'nonsense' }, 'TARGET_DATABASE_URL');
  rejects({ DATABASE_URL: SRC, CRATEDB_URL: 'postgres://crate.example:5432' }, 'CRATEDB_URL', {}, /http:/);
  rejects({ DATABASE_URL: SRC, CRATEDB_URL: 'crate.example:4200' }, 'CRATEDB_URL');
});

test('both targets, or none, is refused with a message that names both settings', () => {
  rejects({ ...BASE, CRATEDB_URL: 'http://crate.example:4200' }, 'CRATEDB_URL', {}, /TARGET_DATABASE_URL/);
  rejects(BASE, 'CRATEDB_URL', { cratedbUrl: 'http://crate.example:4200' }, /both/);
  rejects({ DATABASE_URL: SRC }, 'CRATEDB_URL', {}, /TARGET_DATABASE_URL/);
});

test('numbers out of range or not whole name their setting and the expected range', () => {
  for (const bad of ['-1', '0', 'abc', '1.5', '1e3', '2000000']) {
    rejects({ ...BASE, PG2CRATE_PAGE_SIZE: bad }, 'PG2CRATE_PAGE_SIZE', {}, /whole number from 1 to/);
  }
  rejects(BASE, 'PG2CRATE_PAGE_SIZE', { pageSize: -5 });
  rejects(BASE, 'PG2CRATE_PAGE_SIZE', { pageSize: 2.5 });
  rejects({ ...BASE, PG2CRATE_POLL_INTERVAL_MS: '5' }, 'PG2CRATE_POLL_INTERVAL_MS');
  rejects({ ...BASE, PG2CRATE_STANDBY_RETRY_MS: '-200' }, 'PG2CRATE_STANDBY_RETRY_MS');
  rejects({ ...BASE, PG2CRATE_REJECT_ATTEMPTS: '0' }, 'PG2CRATE_REJECT_ATTEMPTS');
  rejects({ ...BASE, PG2CRATE_STOP_TIMEOUT_MS: 'soon' }, 'PG2CRATE_STOP_TIMEOUT_MS');
});

test('words outside their set name the setting and the choices', () => {
  rejects({ ...BASE, LOG_LEVEL: 'loud' }, 'LOG_LEVEL', {}, /debug/);
  rejects({ ...BASE, PG2CRATE_DEAD_LETTERS: 'drop' }, 'PG2CRATE_DEAD_LETTERS', {}, /park, halt/);
  rejects({ ...BASE, PG2CRATE_STREAM: 'two words' }, 'PG2CRATE_STREAM');
  rejects({ ...BASE, PG2CRATE_SCHEMA: 'x'.repeat(64) }, 'PG2CRATE_SCHEMA', {}, /63 bytes/);
});

test('an unknown key in the config file is named, with the keys that exist', () => {
  rejects(BASE, 'pagesize', { pagesize: 10 }, /unknown setting.*pageSize/);
  rejects(BASE, 'tables[0].keycolumns', { tables: [{ name: 'public.t', keycolumns: ['id'] }] }, /keyColumns/);
});

test('bad table names name the entry and show the expected form', () => {
  rejects({ ...BASE, PG2CRATE_TABLES: 'public.orders, a.b.c' }, 'PG2CRATE_TABLES[1]', {}, /schema\.table/);
  rejects({ ...BASE, PG2CRATE_TABLES: '"unterminated.orders' }, 'PG2CRATE_TABLES[0]', {}, /unterminated quote/);
  rejects({ ...BASE, PG2CRATE_TABLES: '.orders' }, 'PG2CRATE_TABLES[0]');
  rejects({ ...BASE, PG2CRATE_TABLES: 'public.' }, 'PG2CRATE_TABLES[0]');
  rejects({ ...BASE, PG2CRATE_TABLES: '"a"b.c' }, 'PG2CRATE_TABLES[0]');
  rejects(BASE, 'tables', { tables: 'public.orders' }, /list/);
  rejects(BASE, 'tables[0]', { tables: [42] });
  rejects(BASE, 'tables[1].name', { tables: ['public.a', { name: 'x.y.z' }] });
  rejects(BASE, 'tables[0].keyColumns', { tables: [{ name: 'public.t', keyColumns: [] }] }, /non-empty/);
  rejects(BASE, 'tables[0].keyColumns', { tables: [{ name: 'public.t', keyColumns: ['a', ''] }] });
  rejects(BASE, 'tables[0].targetTable', { tables: [{ name: 'public.t', targetTable: '' }] });
});

test('quoted names keep dots, commas, quotes, spaces and case; unquoted ones are taken as written', () => {
  assert.deepEqual(parseQualifiedName('"my.schema"."my.table"'), { schema: 'my.schema', table: 'my.table' });
  assert.deepEqual(parseQualifiedName('public."a.b"'), { schema: 'public', table: 'a.b' });
  assert.deepEqual(parseQualifiedName('"we""ird"."Order Items"'), { schema: 'we"ird', table: 'Order Items' });
  assert.deepEqual(parseQualifiedName('Sales.Orders'), { schema: 'Sales', table: 'Orders' });
  assert.deepEqual(parseQualifiedName('orders'), { schema: 'public', table: 'orders' });
  assert.deepEqual(parseQualifiedName('  "x"  '), { schema: 'public', table: 'x' });
  const c = loadConfig({ ...BASE, PG2CRATE_TABLES: '"a,b"."c.d", public.plain ,"Ünï cødé".t' });
  assert.deepEqual(c.tables, [
    { schema: 'a,b', table: 'c.d' },
    { schema: 'public', table: 'plain' },
    { schema: 'Ünï cødé', table: 't' },
  ]);
  const f = loadConfig(BASE, { tables: [{ name: '"my.schema".t', keyColumns: ['a', 'b'], targetSchema: 'copy', targetTable: 'T2' }, 'public.u'] });
  assert.deepEqual(f.tables, [
    { schema: 'my.schema', table: 't', keyColumns: ['a', 'b'], targetSchema: 'copy', targetTable: 'T2' },
    { schema: 'public', table: 'u' },
  ]);
});
