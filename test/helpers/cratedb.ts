// Helpers for the suite against a real CrateDB (CRATEDB_URL): a client, a schema per test file
// that is dropped afterwards, and a row-by-row comparison of a source table with its CrateDB copy
// that normalises only what CrateDB cannot hold exactly (milliseconds, doubles, wrapped json …).
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { LosslessNumber } from 'lossless-json';
import type pg from 'pg';
import type { JsonValue } from '../../src/core/change.js';
import { CrateClient, parseAnswer } from '../../src/sink/cratedb/crate-client.js';
import { decodeJsonColumn } from '../../src/sink/cratedb/cratedb-sink.js';
import { qualify } from '../../src/core/identifiers.js';
import { startCluster, type Cluster } from './cluster.js';
import { assertNoLeaks, pool, type Running } from './replication.js';

export const CRATEDB_URL = process.env.CRATEDB_URL;

/** What a suite of one source database and the CrateDB under test holds; filled in by its `before`. */
export interface SourceAndCrate {
  /** the suite's CrateDB schema, dropped when it ends */
  readonly schema: string;
  cluster: Cluster;
  srcUrl: string;
  src: pg.Pool;
  crate: CrateClient;
}

/**
 * Registers, in the calling describe block, a `before` that starts a throwaway source cluster with
 * one database, a pool on it and a CrateDB client, and an `after` that stops `replicators()` and
 * ends it all (endCrateSuite).
 */
export function sourceAndCrate(prefix: string, replicators: () => (Running | undefined)[] = () => []): SourceAndCrate {
  const suite = { schema: testSchema(prefix) } as SourceAndCrate;
  before(async () => {
    suite.cluster = await startCluster();
    suite.srcUrl = await suite.cluster.createDatabase('src');
    suite.src = pool(suite.srcUrl, 4);
    suite.crate = crateClient();
  });
  after(async () => {
    await endCrateSuite({ replicators: replicators(), pools: [suite.src], cluster: suite.cluster, crate: suite.crate, schemas: [suite.schema] });
  });
  return suite;
}

/** For `test(…, { skip })`: false when a CrateDB is configured, otherwise the reason, shown by the runner. */
export const skipWithoutCrate: string | false = CRATEDB_URL
  ? false
  : 'CRATEDB_URL is not set: the CrateDB suite needs a real CrateDB, e.g. CRATEDB_URL=http://127.0.0.1:4200 npm run test:cratedb';

export function crateClient(): CrateClient {
  const u = new URL(CRATEDB_URL!);
  const username = process.env.CRATEDB_USER ?? (decodeURIComponent(u.username) || 'crate');
  const password = process.env.CRATEDB_PASSWORD ?? (u.password ? decodeURIComponent(u.password) : undefined);
  u.username = '';
  u.password = '';
  return new CrateClient({ url: u.toString(), username, password, timeoutMs: 60_000 });
}

/** A schema name no other test file or run uses. */
export function testSchema(prefix: string): string {
  return `t_${prefix}_${process.pid}_${Date.now().toString(36)}`;
}

export async function dropSchema(c: CrateClient, schema: string): Promise<void> {
  const res = await c.sql('SELECT table_name FROM information_schema.tables WHERE table_schema = ?', [schema]);
  for (const [t] of res.rows) await c.sql(`DROP TABLE IF EXISTS ${qualify(schema, String(t))}`);
}

/**
 * The end of a suite: its replicators stopped and pools closed (in the order given), the cluster
 * stopped, the suite's CrateDB schemas dropped, and nothing left open.
 */
export async function endCrateSuite(parts: {
  replicators?: (Running | undefined)[];
  pools?: (pg.Pool | undefined)[];
  cluster?: Cluster;
  crate: CrateClient | undefined;
  schemas: string[];
}): Promise<void> {
  for (const r of parts.replicators ?? []) await r?.stop();
  for (const p of parts.pools ?? []) await p?.end();
  await parts.cluster?.stop();
  if (parts.crate) {
    for (const schema of parts.schemas) await dropSchema(parts.crate, schema);
    parts.crate.close();
  }
  await assertNoLeaks();
}

export async function refresh(c: CrateClient, schema: string, table: string): Promise<void> {
  await c.sql(`REFRESH TABLE ${qualify(schema, table)}`);
}

export async function crateCount(c: CrateClient, schema: string, table: string): Promise<number> {
  await refresh(c, schema, table);
  return Number((await c.sql(`SELECT count(*) FROM ${qualify(schema, table)}`)).rows[0][0]);
}

/** `d…de±p`: one text per decimal value, whatever its notation or trailing zeros. */
export function canonicalNumber(v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const s = String(v);
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(s);
  if (!m) return s;
  let digits = m[2] + (m[3] ?? '');
  let point = m[2].length + Number(m[4] ?? 0);
  const lead = /^0*/.exec(digits)![0].length;
  digits = digits.slice(lead).replace(/0+$/, '');
  point -= lead;
  return digits === '' ? '0' : `${m[1]}${digits}e${point}`;
}

/** JSON text with sorted keys and canonical numbers: equal for equal json values. */
export function canonicalJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (v instanceof LosslessNumber || typeof v === 'number') return canonicalNumber(v)!;
  if (typeof v === 'string' || typeof v === 'boolean') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

/** How a column's values are compared; each side's value is normalised, then compared as text. */
export const as = {
  text: (v: unknown) => (v === null || v === undefined ? null : String(v)),
  number: canonicalNumber,
  /** a float: CrateDB answers a double; NaN and the infinities come back as text */
  /** a real: compared at single precision */
  real: (v: unknown) => (v === null || v === undefined ? null : /^-?(NaN|Infinity)$/.test(String(v)) ? String(v) : canonicalNumber(Math.fround(Number(String(v))))),
  float: (v: unknown) => (v === null || v === undefined ? null : /^-?(NaN|Infinity)$/.test(String(v)) ? String(v) : canonicalNumber(Number(String(v)))),
  json: canonicalJson,
  /** a json column stored as OBJECT: unwrap {"_value": …} first */
  jsonObject: (v: unknown) => canonicalJson(decodeJsonColumn(v as JsonValue)),
  jsonText: (v: unknown) => (v === null || v === undefined ? 'null' : canonicalJson(parseAnswer(String(v)))),
  /** a GEO_POINT is stored to about a centimetre */
  point: (v: unknown) => (v === null || v === undefined ? null : JSON.stringify((v as number[]).map((x) => Math.round(Number(x) * 1e5) / 1e5))),
  /** CrateDB writes BIT(n) as B'0101' */
  bits: (v: unknown) => (v === null || v === undefined ? null : String(v).replace(/^B'(.*)'$/, '$1')),
} satisfies Record<string, (v: unknown) => unknown>;

export interface ColumnCheck {
  name: string;
  /** SQL on the source table (alias t) */
  pg: string;
  /** SQL on the CrateDB table */
  crate: string;
  norm: (v: unknown) => unknown;
  /** the CrateDB side's normaliser, when it differs (a json column stored as OBJECT) */
  crateNorm?: (v: unknown) => unknown;
}

/** Fetches both sides by key; the key expressions must give the same text on both sides. */
async function bothSides(src: pg.Pool, srcTable: string, c: CrateClient, schema: string, table: string, key: { pg: string; crate: string }, checks: ColumnCheck[]) {
  const pgRes = await src.query<{ k: string; v: string }>(
    `select (${key.pg})::text as k, json_build_array(${checks.map((x) => x.pg).join(', ')})::text as v from ${srcTable} t`,
  );
  const source = new Map(pgRes.rows.map((r) => [r.k, parseAnswer(r.v) as unknown[]]));
  await refresh(c, schema, table);
  const crateRes = await c.sql(`SELECT (${key.crate})::TEXT, ${checks.map((x) => x.crate).join(', ')} FROM ${qualify(schema, table)}`);
  const target = new Map(crateRes.rows.map((r) => [String(r[0]), r.slice(1)]));
  return { source, target };
}

/**
 * Asserts that every source row is in CrateDB with the same values (after normalising), and no
 * other row is. Returns the number of rows compared.
 */
export async function assertSameAsSource(
  src: pg.Pool, srcTable: string, c: CrateClient, schema: string, table: string, key: { pg: string; crate: string }, checks: ColumnCheck[],
): Promise<number> {
  const { source, target } = await bothSides(src, srcTable, c, schema, table, key, checks);
  const missing = [...source.keys()].filter((k) => !target.has(k));
  const extra = [...target.keys()].filter((k) => !source.has(k));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, `${srcTable} vs CrateDB ${schema}.${table}: rows differ by key`);
  for (const [k, row] of source) {
    const other = target.get(k)!;
    checks.forEach((check, i) => {
      const a = check.norm(row[i]);
      const b = (check.crateNorm ?? check.norm)(other[i]);
      assert.deepEqual(b, a, `row ${k}, column ${check.name}: source ${canonicalJson(row[i])} vs CrateDB ${canonicalJson(other[i])}`);
    });
  }
  return source.size;
}
