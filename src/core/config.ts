// Configuration: read once from the environment and an optional JSON file, checked against the
// settings' schemas (settings.ts: sources, checks, defaults, the README table) with messages that
// name the setting and the expected form, then assembled into one frozen Config.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { SETTINGS, type Setting, type SettingKey, type Settings } from './settings.js';
import { parseShapeOptions, SHAPE_KEYS, type ShapeOptions } from './table-shape.js';

/** A table to capture; the shape options (table-shape.ts) come from the config file only. */
export interface TableSpec extends ShapeOptions {
  /** source schema and table, as written in the database (case and spaces kept) */
  schema: string;
  table: string;
  /** key columns for a table without a primary key */
  keyColumns?: string[];
  /** target schema and table; default: the configured target schema (or the source schema) and the source table name */
  targetSchema?: string;
  targetTable?: string;
}

export type TargetConfig =
  | { kind: 'postgres'; connectionString: string }
  /** `urls`: the nodes, without credentials, in the order given (one for a single node) */
  | { kind: 'cratedb'; urls: readonly string[]; username: string; password?: string };

export interface CrateOptions {
  /** rows per bulk request */
  maxRequestRows: number;
  /** bytes per bulk request (JSON body) */
  maxRequestBytes: number;
  /** bulk requests in flight at once per page */
  requestsInFlight: number;
  requestTimeoutMs: number;
  shards?: number;
  replicas: string;
  /** refresh_interval of created tables, ms */
  refreshIntervalMs: number;
  /** how jsonb/json columns are stored */
  jsonColumn: Settings['crate.jsonColumn'];
  /** how text columns are stored: 'plain' is indexed (32,766-byte limit per value), 'unindexed' keeps any length */
  textColumn: Settings['crate.textColumn'];
}

export interface Config {
  /** undefined: node-postgres reads the libpq PG* variables */
  sourceUrl: string | undefined;
  target: TargetConfig;
  /** the tool's schema in the source database */
  schema: string;
  /** name of the consumer stream (one checkpoint, one active drainer) */
  stream: string;
  tables: TableSpec[];
  /** default target schema; undefined: the source table's schema */
  targetSchema: string | undefined;
  pageSize: number;
  pollIntervalMs: number;
  /** how often a standby retries to take the stream */
  standbyRetryMs: number;
  /** how often the partition watch looks for partitions created or attached since (partition-watch.ts) */
  partitionWatchMs: number;
  /** undefined: `info` for the service (`start`), `warn` for the one-shot commands, whose output is their result */
  logLevel: Settings['logLevel'];
  /** undefined: chosen by whether the log goes to a terminal (logger.ts chooseLogFormat) */
  logFormat: Settings['logFormat'];
  deadLetterPolicy: Settings['deadLetterPolicy'];
  /** attempts for a change the target rejects before it is parked (or halts) */
  rejectAttempts: number;
  /** how long a graceful stop waits for the page in flight */
  stopTimeoutMs: number;
  /** rows per initial-load chunk (one short transaction each) */
  backfillChunkRows: number;
  /** initial-load chunks that may wait unapplied in the outbox */
  backfillInflight: number;
  /**
   * how initial loads travel: `direct` from the source straight to the target, then the changes
   * made meanwhile re-sent through the outbox (trigger mode); `outbox` every row through the outbox
   */
  initialLoad: Settings['initialLoad'];
  /** port of /metrics, /healthz and /readyz; undefined: no HTTP server */
  httpPort: number | undefined;
  /** /readyz answers 503 when the lag exceeds this */
  readyMaxLagSeconds: number;
  /** rotate the outbox generation once it holds this many bytes */
  retentionRotateBytes: number;
  schedules: Schedules;
  crate: CrateOptions;
  /** how changes are captured: statement triggers into an outbox, or a logical replication slot (pgoutput) */
  capture: Settings['capture'];
  /** pgoutput: the logical replication slot of this stream */
  slotName: string;
  /** pgoutput: the publication that lists the captured tables */
  publicationName: string;
  /** pgoutput: warn when the slot retains more WAL than this (bytes) */
  slotWarnBytes: number;
}

export interface Schedules {
  /** cron expression: run catch-up on a schedule instead of draining continuously (no LISTEN connection) */
  catchUp: string | undefined;
  /** cron expression for outbox retention */
  retention: string | undefined;
  /** cron expression for a periodic verify */
  verify: string | undefined;
  /** IANA time zone of the expressions */
  timezone: string | undefined;
}

type Env = Record<string, string | undefined>;

/**
 * Splits `schema.table` into its two names. Either part may be double-quoted (quotes doubled
 * inside), which keeps case, dots and spaces; unquoted parts are taken as written. A name without
 * a schema is in `public`.
 */
export function parseQualifiedName(raw: string, setting = 'tables'): { schema: string; table: string } {
  const parts: string[] = [];
  let i = 0;
  const s = raw.trim();
  while (i <= s.length) {
    if (s[i] === '"') {
      let out = '';
      i++;
      for (;;) {
        if (i >= s.length) throw new ConfigError(setting, `unterminated quote in table name ${JSON.stringify(raw)}`);
        if (s[i] === '"') {
          if (s[i + 1] === '"') { out += '"'; i += 2; continue; }
          i++;
          break;
        }
        out += s[i++];
      }
      parts.push(out);
    } else {
      const dot = s.indexOf('.', i);
      const end = dot === -1 ? s.length : dot;
      parts.push(s.slice(i, end));
      i = end;
    }
    if (i >= s.length) break;
    if (s[i] !== '.') throw new ConfigError(setting, `expected schema.table, got ${JSON.stringify(raw)}`);
    i++;
  }
  if (parts.length === 1) parts.unshift('public');
  if (parts.length !== 2 || parts.some((p) => p.length === 0)) {
    throw new ConfigError(setting, `expected schema.table (quote names with dots: "my.schema"."my table"), got ${JSON.stringify(raw)}`);
  }
  return { schema: parts[0], table: parts[1] };
}

function tableSpec(raw: unknown, index: number): TableSpec {
  const where = `tables[${index}]`;
  if (typeof raw === 'string') return parseQualifiedName(raw, where);
  if (typeof raw !== 'object' || raw === null || typeof (raw as { name?: unknown }).name !== 'string') {
    throw new ConfigError(where, 'expected "schema.table" or { "name": "schema.table", "keyColumns": [...] }');
  }
  const o = raw as Record<string, unknown>;
  const known = new Set(['name', 'keyColumns', 'targetSchema', 'targetTable', ...SHAPE_KEYS]);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new ConfigError(`${where}.${k}`, `unknown setting; expected one of ${[...known].join(', ')}`);
  const spec: TableSpec = parseQualifiedName(o.name as string, `${where}.name`);
  if (o.keyColumns !== undefined) {
    if (!Array.isArray(o.keyColumns) || o.keyColumns.length === 0 || !o.keyColumns.every((c) => typeof c === 'string' && c.length > 0)) {
      throw new ConfigError(`${where}.keyColumns`, 'expected a non-empty list of column names');
    }
    spec.keyColumns = o.keyColumns as string[];
  }
  for (const k of ['targetSchema', 'targetTable'] as const) {
    if (o[k] !== undefined) {
      if (typeof o[k] !== 'string' || (o[k] as string).length === 0) throw new ConfigError(`${where}.${k}`, 'expected a non-empty name');
      spec[k] = o[k] as string;
    }
  }
  return { ...spec, ...parseShapeOptions(o, where) };
}

export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('config file', `cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError('config file', `${path} is not a JSON object: ${(err as Error).message}`);
  }
}

/** The file's shape: the settings' keys, `crate` and `schedules` as objects of their own keys. */
function fileSchema() {
  const top: Record<string, z.ZodType> = {};
  const nested: Record<string, Record<string, z.ZodType>> = {};
  for (const key of Object.keys(SETTINGS)) {
    const [a, b] = key.split('.');
    if (b === undefined) top[a] = z.unknown().optional();
    else (nested[a] ??= {})[b] = z.unknown().optional();
  }
  for (const [a, keys] of Object.entries(nested)) {
    top[a] = z.strictObject(keys, { error: `expected an object { ${Object.keys(keys).join(', ')} }` }).optional();
  }
  return z.strictObject(top);
}

/** Checks the file's keys: an unknown one (a typo) is named with the keys that exist. */
function checkFileKeys(file: Record<string, unknown>): void {
  const res = fileSchema().safeParse(file);
  if (res.success) return;
  const issue = res.error.issues[0];
  const where = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') {
    const expected = Object.keys(SETTINGS).filter((k) => (where ? k.startsWith(`${where}.`) : true)).map((k) => (where ? k.slice(where.length + 1) : k.split('.')[0]));
    throw new ConfigError(`config file: ${where ? `${where}.` : ''}${issue.keys[0]}`, `unknown setting; expected one of ${[...new Set(expected)].join(', ')}`);
  }
  throw new ConfigError(where || 'config file', issue.message);
}

/** Reads every setting: the environment variable when set and not empty, else the file's value, through its schema. */
function readSettings(env: Env, file: Record<string, unknown>): Settings {
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(SETTINGS) as [SettingKey, Setting][]) {
    const fromEnv = s.env !== null ? env[s.env] : undefined;
    const [a, b] = key.split('.');
    const raw = fromEnv !== undefined && fromEnv !== '' ? fromEnv : b === undefined ? file[a] : (file[a] as Record<string, unknown> | undefined)?.[b];
    const res = s.schema.safeParse(raw);
    if (!res.success) throw new ConfigError(s.env ?? key, res.error.issues[0].message);
    out[key] = res.data;
  }
  return out as Settings;
}

/**
 * Builds the configuration. Environment variables win over the file. `env` is passed in (the CLI
 * hands over process.env) so that nothing below the CLI reads the environment.
 */
export function loadConfig(env: Env, file: Record<string, unknown> = {}): Readonly<Config> {
  checkFileKeys(file);
  const s = readSettings(env, file);

  if (s.databaseUrl === undefined && !env.PGHOST && !env.PGDATABASE && !env.PGSERVICE) {
    throw new ConfigError('DATABASE_URL', 'the source database is not set; set DATABASE_URL=postgres://user:pass@host:5432/db (or the libpq PGHOST/PGDATABASE/… variables)');
  }

  let target: TargetConfig;
  if (s.targetDatabaseUrl !== undefined && s.cratedbUrl !== undefined) {
    throw new ConfigError('CRATEDB_URL', 'both CRATEDB_URL and TARGET_DATABASE_URL are set; set exactly one target');
  } else if (s.cratedbUrl !== undefined) {
    target = crateTarget(s.cratedbUrl, s.cratedbUser, s.cratedbPassword);
  } else if (s.targetDatabaseUrl !== undefined) {
    target = { kind: 'postgres', connectionString: s.targetDatabaseUrl };
  } else {
    throw new ConfigError('CRATEDB_URL', 'no target is set; set CRATEDB_URL=http://host:4200 (CrateDB) or TARGET_DATABASE_URL=postgres://… (PostgreSQL)');
  }

  let fileTables: TableSpec[] = [];
  if (file.tables !== undefined) {
    if (!Array.isArray(file.tables)) throw new ConfigError('tables', 'expected a list of "schema.table" or objects');
    fileTables = file.tables.map(tableSpec);
  }
  const envTables = env.PG2CRATE_TABLES;
  const tables: TableSpec[] = envTables !== undefined && envTables.trim() !== ''
    // The environment names the tables; a table's options (key, target, shape) live in the file
    // only, and must not be lost when both are set: a column filter dropped silently would leak.
    ? splitList(envTables).map((t, i) => {
      const named = parseQualifiedName(t, `PG2CRATE_TABLES[${i}]`);
      return fileTables.find((f) => f.schema === named.schema && f.table === named.table) ?? named;
    })
    : fileTables;
  // One salt for every table that hashes columns and names none of its own. Never in a message.
  tables.forEach((t, i) => {
    if (!t.hashColumns) return;
    if (t.hashSalt === undefined && s.hashSalt !== undefined) t.hashSalt = s.hashSalt;
    if (t.hashSalt === undefined) throw new ConfigError(`tables[${i}].hashColumns`, 'hashed columns need a salt: set PG2CRATE_HASH_SALT (or hashSalt in the file, or per table)');
  });

  const config: Config = {
    sourceUrl: s.databaseUrl,
    target,
    schema: s.schema,
    stream: s.stream,
    tables,
    targetSchema: s.targetSchema,
    pageSize: s.pageSize,
    pollIntervalMs: s.pollIntervalMs,
    standbyRetryMs: s.standbyRetryMs,
    partitionWatchMs: s.partitionWatchMs,
    logLevel: s.logLevel,
    logFormat: s.logFormat,
    deadLetterPolicy: s.deadLetterPolicy,
    rejectAttempts: s.rejectAttempts,
    stopTimeoutMs: s.stopTimeoutMs,
    backfillChunkRows: s.backfillChunkRows,
    backfillInflight: s.backfillInflight,
    initialLoad: s.initialLoad,
    httpPort: s.httpPort,
    readyMaxLagSeconds: s.readyMaxLagSeconds,
    retentionRotateBytes: s.retentionRotateKb * 1024,
    schedules: {
      catchUp: s['schedules.catchUp'],
      retention: s['schedules.retention'],
      verify: s['schedules.verify'],
      timezone: s['schedules.timezone'],
    },
    crate: {
      maxRequestRows: s['crate.maxRequestRows'],
      maxRequestBytes: s['crate.maxRequestBytes'],
      requestsInFlight: s['crate.requestsInFlight'],
      requestTimeoutMs: s['crate.requestTimeoutMs'],
      shards: s['crate.shards'],
      replicas: s['crate.replicas'],
      refreshIntervalMs: s['crate.refreshIntervalMs'],
      jsonColumn: s['crate.jsonColumn'],
      textColumn: s['crate.textColumn'],
    },
    capture: s.capture,
    slotName: s.slotName,
    publicationName: s.publicationName,
    slotWarnBytes: s.slotWarnMb * 1024 * 1024,
  };
  return deepFreeze(config);
}

/**
 * The CrateDB nodes without their credentials, and the one user they share: CRATEDB_USER and
 * CRATEDB_PASSWORD, else the URLs' (those that carry any must agree), else `crate`.
 */
function crateTarget(list: readonly string[], user: string | undefined, password: string | undefined): TargetConfig {
  const urls = list.map((raw) => new URL(raw));
  const carried = urls.filter((u) => u.username || u.password);
  const same = (a: URL, b: URL) => a.username === b.username && a.password === b.password;
  if (carried.some((u) => !same(u, carried[0]))) {
    throw new ConfigError('CRATEDB_URL', 'the node URLs carry different credentials; all nodes share one user: give it in one URL, in all alike, or in CRATEDB_USER and CRATEDB_PASSWORD');
  }
  const username = user ?? (carried[0]?.username ? decodeURIComponent(carried[0].username) : 'crate');
  const secret = password ?? (carried[0]?.password ? decodeURIComponent(carried[0].password) : undefined);
  for (const u of urls) {
    u.username = '';
    u.password = '';
  }
  return { kind: 'cratedb', urls: urls.map((u) => u.toString().replace(/\/+$/, '')), username, password: secret };
}

/** Comma-separated names; commas inside double quotes belong to the name. */
function splitList(raw: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of raw) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) { out.push(cur); cur = ''; continue; }
    cur += ch;
  }
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s.length > 0);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
