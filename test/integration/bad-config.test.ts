import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import pg from 'pg';
import { startCluster, type Cluster } from '../helpers/cluster.js';
import { killReplicators, runCli, spawnReplicator, waitForLog } from '../helpers/child-replicator.js';
import { assertNoLeaks, LOG_DIR } from '../helpers/replication.js';

let cluster: Cluster;
let src: string;
let dst: string;
const PASSWORD = 'Sup3r-Secret-Pw-42';

before(async () => {
  cluster = await startCluster();
  [src, dst] = await Promise.all([cluster.createDatabase('src'), cluster.createDatabase('dst')]);
  const c = new pg.Client({ connectionString: src });
  await c.connect();
  await c.query(`create table t (id int primary key, v text)`);
  await c.query(`create role app_owner login password '${PASSWORD}'`);
  await c.end();
});

after(async () => {
  await killReplicators();
  await cluster?.stop();
  await assertNoLeaks();
});

async function toolSchemaExists(): Promise<boolean> {
  const c = new pg.Client({ connectionString: src });
  await c.connect();
  try {
    return (await c.query(`select 1 from pg_namespace where nspname = 'pg2crate'`)).rows.length > 0;
  } finally {
    await c.end();
  }
}

const cases: [string, Record<string, string>, RegExp][] = [
  ['a source URL that is not a URL', { DATABASE_URL: 'not a url', TARGET_DATABASE_URL: 'postgres://x@127.0.0.1/db' }, /^pg2crate: DATABASE_URL: expected a URL/],
  ['a target URL with the wrong scheme', { CRATEDB_URL: 'ftp://127.0.0.1:4200', TARGET_DATABASE_URL: '' }, /^pg2crate: CRATEDB_URL: expected a URL starting with http: or https:/],
  ['two targets at once', { CRATEDB_URL: 'http://127.0.0.1:4200' }, /^pg2crate: CRATEDB_URL: both CRATEDB_URL and TARGET_DATABASE_URL are set/],
  ['a negative page size', { PG2CRATE_PAGE_SIZE: '-5' }, /^pg2crate: PG2CRATE_PAGE_SIZE: expected a whole number from 1 to/],
  ['a bad cron expression', { PG2CRATE_RETENTION_CRON: 'every minute' }, /^pg2crate: PG2CRATE_RETENTION_CRON: expected a cron expression/],
  ['an unknown table', { PG2CRATE_TABLES: 'public.does_not_exist' }, /^pg2crate: table public\.does_not_exist does not exist in the source database/],
  ['a malformed table name', { PG2CRATE_TABLES: '"unterminated.t' }, /^pg2crate: PG2CRATE_TABLES\[0\]: unterminated quote/],
];

for (const [what, env, expected] of cases) {
  test(`${what}: migrate exits non-zero with one line naming the setting, and writes nothing`, async () => {
    const res = await runCli({ DATABASE_URL: src, TARGET_DATABASE_URL: dst, ...env }, ['migrate']);
    assert.notEqual(res.code, 0);
    const lines = res.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `expected one line, got:\n${res.stderr}`);
    assert.match(lines[0], expected);
    assert.equal(await toolSchemaExists(), false, 'something was written');
  });
}

test('a config file with an unknown key or broken JSON is refused before anything runs', async () => {
  mkdirSync('.tmp', { recursive: true });
  writeFileSync('.tmp/bad-config.json', JSON.stringify({ pageSise: 10 }));
  let res = await runCli({ DATABASE_URL: src, TARGET_DATABASE_URL: dst }, ['migrate', '--config', '.tmp/bad-config.json']);
  assert.equal(res.code, 2);
  assert.match(res.stderr, /^pg2crate: config file: pageSise: unknown setting/);
  writeFileSync('.tmp/bad-config.json', '{ "tables": [');
  res = await runCli({ DATABASE_URL: src, TARGET_DATABASE_URL: dst }, ['migrate', '--config', '.tmp/bad-config.json']);
  assert.equal(res.code, 2);
  assert.match(res.stderr, /^pg2crate: config file: \.tmp\/bad-config\.json is not a JSON object/);
});

test('passwords never appear in logs or error messages', async () => {
  // a database the password-holding role owns, so that it can migrate and capture
  const own = await cluster.createDatabase('own');
  const admin = new pg.Client({ connectionString: own });
  await admin.connect();
  await admin.query(`alter database "${new URL(own).pathname.slice(1)}" owner to app_owner`);
  await admin.query(`alter schema public owner to app_owner`);
  await admin.query(`set role app_owner; create table t (id int primary key, v text); reset role`);
  await admin.end();
  const withPw = own.replace('postgres@', `app_owner:${PASSWORD}@`);
  // a CrateDB target that does not answer: the errors name the URL, never the password
  const crate = `http://crate:${PASSWORD}@127.0.0.1:1`;
  const migrate = await runCli({ DATABASE_URL: withPw, TARGET_DATABASE_URL: dst.replace('postgres@', `postgres:${PASSWORD}@`), PG2CRATE_TABLES: 'public.t', LOG_LEVEL: 'debug' }, ['migrate']);
  assert.equal(migrate.code, 0, migrate.stderr);
  const writer = new pg.Client({ connectionString: own });
  await writer.connect();
  await writer.query(`insert into t values (1, 'a')`);
  await writer.end();
  // nothing to apply into a target that is down is no failure; the output is scanned all the same
  const bad = await runCli({ DATABASE_URL: withPw, CRATEDB_URL: crate, LOG_LEVEL: 'debug', PG2CRATE_TABLES: 'public.t' }, ['tables', 'list']);
  const r = spawnReplicator({ DATABASE_URL: withPw, CRATEDB_URL: crate, LOG_LEVEL: 'debug', PG2CRATE_HTTP_PORT: '0' }, ['start'], 'secret');
  await waitForLog(r, 'page failed');
  await r.killHard();
  const badUrl = await runCli({ DATABASE_URL: `postgres://app_owner:${PASSWORD}@127.0.0.1:1/db`, TARGET_DATABASE_URL: dst }, ['status']);
  assert.notEqual(badUrl.code, 0);
  const everything = [migrate.stdout, migrate.stderr, bad.stdout, bad.stderr, badUrl.stdout, badUrl.stderr, r.log(),
    ...readdirSync(LOG_DIR).map((f) => readFileSync(`${LOG_DIR}/${f}`, 'utf8'))].join('\n');
  assert.ok(everything.length > 200, 'nothing was logged; the scan proves nothing');
  assert.ok(!everything.includes(PASSWORD), 'a password appeared in the output');
  assert.ok(!everything.includes(encodeURIComponent(PASSWORD)), 'an encoded password appeared in the output');
});
