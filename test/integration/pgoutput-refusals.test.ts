// pgoutput mode refuses up front, with one line that says what to change or to use trigger mode:
// wal_level is not logical, the role lacks REPLICATION, a table has REPLICA IDENTITY NOTHING (or no
// key in the WAL), a replicator configured for the other mode. Nothing is created when it refuses.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { clusterForFile } from '../helpers/file-cluster.js';
import { runCli } from '../helpers/child-replicator.js';
import { makeConfig, settle } from '../helpers/replication.js';
import { ConfigError } from '../../src/core/errors.js';
import { checkServer } from '../../src/source/pgoutput/preflight.js';
import { needsServer, onlyBefore } from '../helpers/server-version.js';

const bed = clusterForFile();
let slots = 0;

async function database(ddl: string, tables: string): Promise<{ src: pg.Pool; env: Record<string, string> }> {
  const { src, env } = await bed.settled(ddl, { PG2CRATE_TABLES: tables, PG2CRATE_SLOT: `refusal_${++slots}` });
  return { src, env };
}

function oneLine(stderr: string): string {
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  return lines[0];
}

async function noSlot(src: pg.Pool, slot: string): Promise<void> {
  const res = await src.query(`select 1 from pg_replication_slots where slot_name = $1`, [slot]);
  assert.equal(res.rows.length, 0, 'a refused switch must not leave a slot behind');
}

test('before PostgreSQL 14 the switch to pgoutput is refused, naming the version and trigger mode, and creates nothing', { skip: onlyBefore(14, 'the refusal of pgoutput mode') }, async () => {
  const { src, env } = await database(`create table public.t (id int primary key, v text)`, 'public.t');
  const res = await runCli(env, ['switch-capture', 'pgoutput']);
  assert.equal(res.code, 2);
  assert.match(oneLine(res.stderr), /PG2CRATE_CAPTURE: pgoutput mode needs PostgreSQL 14 or later \(the source runs 13\.\d+\); or use trigger mode: PG2CRATE_CAPTURE=trigger$/);
  await noSlot(src, env.PG2CRATE_SLOT);
  assert.equal((await src.query(`select 1 from pg_publication`)).rows.length, 0, 'no publication is left');
  assert.equal((await src.query(`select mode from pg2crate.capture`)).rows.length, 0, 'the stream stays in trigger mode');
});

test('a table with REPLICA IDENTITY NOTHING: the switch says how to fix it or to use trigger mode, and creates nothing', { skip: needsServer(14, 'pgoutput mode') }, async () => {
  const { src, env } = await database(`create table public.t (id int primary key, v text); alter table public.t replica identity nothing`, 'public.t');
  const res = await runCli(env, ['switch-capture', 'pgoutput']);
  assert.equal(res.code, 2);
  const line = oneLine(res.stderr);
  assert.match(line, /REPLICA IDENTITY NOTHING/);
  assert.match(line, /ALTER TABLE "public"\."t" REPLICA IDENTITY DEFAULT/);
  assert.match(line, /PG2CRATE_CAPTURE=trigger/);
  await noSlot(src, env.PG2CRATE_SLOT);
  assert.equal((await src.query(`select mode from pg2crate.capture`)).rows.length, 0, 'the stream stays in trigger mode');
});

test('a table keyed by configured columns without REPLICA IDENTITY FULL is refused before it is published (its updates would fail)', { skip: needsServer(14, 'pgoutput mode') }, async () => {
  const { srcUrl, dstUrl, src } = await bed.databases();
  await src.query(`create table public.nokey (a int not null, b text)`);
  const path = join(mkdtempSync(join(tmpdir(), 'pg2crate-refusal-')), 'config.json');
  writeFileSync(path, JSON.stringify({ tables: [{ name: 'public.nokey', keyColumns: ['a'] }] }));
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_SLOT: 'refusal_nokey' };
  assert.equal((await runCli(env, ['--config', path, 'migrate'])).code, 0);
  const res = await runCli(env, ['--config', path, 'switch-capture', 'pgoutput']);
  assert.equal(res.code, 2);
  assert.match(oneLine(res.stderr), /no primary key.*REPLICA IDENTITY FULL.*PG2CRATE_CAPTURE=trigger/);
  await noSlot(src, 'refusal_nokey');
  const published = await src.query(`select 1 from pg_publication_tables where tablename = 'nokey'`);
  assert.equal(published.rows.length, 0);
  await src.query(`update nokey set b = 'still writable'`);
});

test('a role without REPLICATION is told to get it or to use trigger mode', { skip: needsServer(14, 'pgoutput mode') }, async () => {
  const admin = bed.pool(bed.cluster.url());
  await admin.query(`create role plain login`);
  const name = `plain_${process.pid}`;
  await admin.query(`create database "${name}" owner plain`);
  const dstUrl = await bed.cluster.createDatabase('dst');
  const u = new URL(bed.cluster.url(name));
  u.username = 'plain';
  const srcUrl = u.toString();
  const src = bed.pool(srcUrl);
  await src.query(`create table public.t (id int primary key, v text)`);
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.t', PG2CRATE_SLOT: 'refusal_plain' };
  await settle(makeConfig(env), src);
  const res = await runCli(env, ['switch-capture', 'pgoutput']);
  assert.equal(res.code, 2);
  const line = oneLine(res.stderr);
  assert.match(line, /role plain lacks the REPLICATION attribute/);
  assert.match(line, /ALTER ROLE "plain" WITH REPLICATION/);
  assert.match(line, /PG2CRATE_CAPTURE=trigger/);
  await noSlot(src, 'refusal_plain');
});

test('wal_level other than logical is refused with what to change (the test cluster always runs logical, so its answer is stood in for)', async () => {
  const fake = {
    query: async () => ({ rows: [{ version: '150004', wal_level: 'replica', role: 'app', can: true, rds: false }] }),
  } as unknown as pg.Pool;
  await assert.rejects(checkServer(fake), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /^PG2CRATE_CAPTURE: the source runs with wal_level=replica, pgoutput needs wal_level=logical \(ALTER SYSTEM SET wal_level = logical and restart; on RDS set rds\.logical_replication = 1\), or use trigger mode: PG2CRATE_CAPTURE=trigger$/);
    return true;
  });
});

test('a replicator configured for pgoutput on a stream in trigger mode says how to switch, and exits', async () => {
  const { env } = await database(`create table public.t (id int primary key)`, 'public.t');
  const res = await runCli({ ...env, PG2CRATE_CAPTURE: 'pgoutput' }, ['catch-up']);
  assert.equal(res.code, 2);
  assert.match(oneLine(res.stderr), /stream main is in trigger mode but this replicator is configured for pgoutput; set PG2CRATE_CAPTURE=trigger, or switch with `pg2crate switch-capture pgoutput`/);
});
