// Configuration: read once from the environment and an optional JSON file, validated with messages
// that name the setting and the expected form, then frozen. All defaults and units live here.
import { readFileSync } from 'node:fs';
import { validate as validateCron } from 'node-cron';
import { ConfigError } from './errors.js';
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
  | { kind: 'cratedb'; url: string; username: string; password?: string };

export interface CrateOptions {
  /** rows per bulk request */
  maxRequestRows: number;
  /** bytes per bulk request (JSON body) */
  maxRequestBytes: number;
  requestTimeoutMs: number;
  shards?: number;
  replicas: string;
  /** how jsonb/json columns are stored */
  jsonColumn: 'object-ignored' | 'object-dynamic' | 'text';
  /** how text columns are stored: 'plain' is indexed (32,766-byte limit per value), 'unindexed' keeps any length */
  textColumn: 'plain' | 'unindexed' | 'fulltext';
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
  logLevel: string;
  deadLetterPolicy: 'park' | 'halt';
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
  initialLoad: 'direct' | 'outbox';
  /** port of /metrics, /healthz and /readyz; undefined: no HTTP server */
  httpPort: number | undefined;
  /** /readyz answers 503 when the lag exceeds this */
  readyMaxLagSeconds: number;
  /** rotate the outbox generation once it holds this many bytes */
  retentionRotateBytes: number;
  schedules: Schedules;
  crate: CrateOptions;
  /** how changes are captured: statement triggers into an outbox, or a logical replication slot (pgoutput) */
  capture: 'trigger' | 'pgoutput';
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

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function int(setting: string, raw: unknown, min: number, max: number): number {
  const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(setting, `expected a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return n;
}

function oneOf<T extends string>(setting: string, raw: unknown, allowed: readonly T[]): T {
  if (typeof raw !== 'string' || !allowed.includes(raw as T)) {
    throw new ConfigError(setting, `expected one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return raw as T;
}

function url(setting: string, raw: string, protocols: string[]): URL {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(setting, `expected a URL like ${protocols[0]}//host:port/…, got something that is not a URL`);
  }
  if (!protocols.includes(u.protocol)) {
    throw new ConfigError(setting, `expected a URL starting with ${protocols.join(' or ')}, got ${u.protocol}`);
  }
  // libpq takes a Unix socket directory as ?host=/path with an empty host part
  if (!u.hostname && !(u.protocol.startsWith('postgres') && u.searchParams.get('host')?.startsWith('/'))) {
    throw new ConfigError(setting, 'the URL has no host');
  }
  return u;
}

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

const FILE_KEYS = new Set([
  'databaseUrl', 'targetDatabaseUrl', 'cratedbUrl', 'cratedbUser', 'cratedbPassword', 'schema', 'stream', 'tables',
  'targetSchema', 'pageSize', 'pollIntervalMs', 'standbyRetryMs', 'partitionWatchMs', 'logLevel', 'deadLetterPolicy', 'rejectAttempts',
  'stopTimeoutMs', 'backfillChunkRows', 'backfillInflight', 'initialLoad', 'httpPort', 'readyMaxLagSeconds', 'retentionRotateKb', 'schedules', 'crate',
  'capture', 'slotName', 'publicationName', 'slotWarnMb', 'hashSalt',
]);

/** Slot and publication names: what Postgres accepts for a slot, so one rule serves both. */
function replicationName(setting: string, raw: unknown): string {
  if (typeof raw !== 'string' || !/^[a-z0-9_]{1,63}$/.test(raw)) {
    throw new ConfigError(setting, `expected 1 to 63 lowercase letters, digits or underscores (what Postgres allows in a slot name), got ${JSON.stringify(raw)}`);
  }
  return raw;
}

/**
 * Builds the configuration. Environment variables win over the file. `env` is passed in (the CLI
 * hands over process.env) so that nothing below the CLI reads the environment.
 */
export function loadConfig(env: Env, file: Record<string, unknown> = {}): Readonly<Config> {
  for (const k of Object.keys(file)) {
    if (!FILE_KEYS.has(k)) throw new ConfigError(`config file: ${k}`, `unknown setting; expected one of ${[...FILE_KEYS].join(', ')}`);
  }
  const pick = (envName: string, fileKey: string): unknown => {
    const v = env[envName];
    return v !== undefined && v !== '' ? v : file[fileKey];
  };

  const sourceRaw = pick('DATABASE_URL', 'databaseUrl');
  let sourceUrl: string | undefined;
  if (sourceRaw !== undefined) {
    if (typeof sourceRaw !== 'string') throw new ConfigError('DATABASE_URL', 'expected a postgres:// URL');
    url('DATABASE_URL', sourceRaw, ['postgres:', 'postgresql:']);
    sourceUrl = sourceRaw;
  } else if (!env.PGHOST && !env.PGDATABASE && !env.PGSERVICE) {
    throw new ConfigError('DATABASE_URL', 'the source database is not set; set DATABASE_URL=postgres://user:pass@host:5432/db (or the libpq PGHOST/PGDATABASE/… variables)');
  }

  const pgTarget = pick('TARGET_DATABASE_URL', 'targetDatabaseUrl');
  const crateTarget = pick('CRATEDB_URL', 'cratedbUrl');
  let target: TargetConfig;
  if (pgTarget !== undefined && crateTarget !== undefined) {
    throw new ConfigError('CRATEDB_URL', 'both CRATEDB_URL and TARGET_DATABASE_URL are set; set exactly one target');
  } else if (typeof crateTarget === 'string') {
    const u = url('CRATEDB_URL', crateTarget, ['http:', 'https:']);
    const userRaw = pick('CRATEDB_USER', 'cratedbUser');
    const passRaw = pick('CRATEDB_PASSWORD', 'cratedbPassword');
    const username = typeof userRaw === 'string' ? userRaw : decodeURIComponent(u.username) || 'crate';
    const password = typeof passRaw === 'string' ? passRaw : u.password ? decodeURIComponent(u.password) : undefined;
    u.username = '';
    u.password = '';
    target = { kind: 'cratedb', url: u.toString().replace(/\/+$/, ''), username, password };
  } else if (typeof pgTarget === 'string') {
    url('TARGET_DATABASE_URL', pgTarget, ['postgres:', 'postgresql:']);
    target = { kind: 'postgres', connectionString: pgTarget };
  } else {
    throw new ConfigError('CRATEDB_URL', 'no target is set; set CRATEDB_URL=http://host:4200 (CrateDB) or TARGET_DATABASE_URL=postgres://… (PostgreSQL)');
  }

  const schema = String(pick('PG2CRATE_SCHEMA', 'schema') ?? 'pg2crate');
  if (schema.length === 0 || Buffer.byteLength(schema) > 63) throw new ConfigError('PG2CRATE_SCHEMA', 'expected a schema name of 1 to 63 bytes');
  const stream = String(pick('PG2CRATE_STREAM', 'stream') ?? 'main');
  if (!/^[A-Za-z0-9_.-]{1,63}$/.test(stream)) throw new ConfigError('PG2CRATE_STREAM', 'expected 1 to 63 letters, digits, _ . or -');

  let tables: TableSpec[] = [];
  const envTables = env.PG2CRATE_TABLES;
  let fileTables: TableSpec[] = [];
  if (file.tables !== undefined) {
    if (!Array.isArray(file.tables)) throw new ConfigError('tables', 'expected a list of "schema.table" or objects');
    fileTables = file.tables.map(tableSpec);
  }
  if (envTables !== undefined && envTables.trim() !== '') {
    // The environment names the tables; a table's options (key, target, shape) live in the file
    // only, and must not be lost when both are set: a column filter dropped silently would leak.
    tables = splitList(envTables).map((t, i) => {
      const named = parseQualifiedName(t, `PG2CRATE_TABLES[${i}]`);
      return fileTables.find((f) => f.schema === named.schema && f.table === named.table) ?? named;
    });
  } else {
    tables = fileTables;
  }
  // One salt for every table that hashes columns and names none of its own. Never in a message.
  const salt = pick('PG2CRATE_HASH_SALT', 'hashSalt');
  if (salt !== undefined && (typeof salt !== 'string' || salt.length === 0 || salt.includes('\u0000'))) throw new ConfigError('PG2CRATE_HASH_SALT', 'expected a non-empty string');
  tables.forEach((t, i) => {
    if (!t.hashColumns) return;
    if (t.hashSalt === undefined && typeof salt === 'string') t.hashSalt = salt;
    if (t.hashSalt === undefined) throw new ConfigError(`tables[${i}].hashColumns`, 'hashed columns need a salt: set PG2CRATE_HASH_SALT (or hashSalt in the file, or per table)');
  });

  const targetSchemaRaw = pick('PG2CRATE_TARGET_SCHEMA', 'targetSchema');
  if (targetSchemaRaw !== undefined && (typeof targetSchemaRaw !== 'string' || targetSchemaRaw === '')) {
    throw new ConfigError('PG2CRATE_TARGET_SCHEMA', 'expected a schema name');
  }

  const logLevel = String(pick('LOG_LEVEL', 'logLevel') ?? 'info');
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', `expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(logLevel)}`);

  const crateFile = (file.crate ?? {}) as Record<string, unknown>;
  if (typeof crateFile !== 'object' || Array.isArray(crateFile)) throw new ConfigError('crate', 'expected an object');
  const crate: CrateOptions = {
    maxRequestRows: int('PG2CRATE_CRATE_MAX_ROWS', env.PG2CRATE_CRATE_MAX_ROWS ?? crateFile.maxRequestRows ?? 2000, 1, 100_000),
    maxRequestBytes: int('PG2CRATE_CRATE_MAX_BYTES', env.PG2CRATE_CRATE_MAX_BYTES ?? crateFile.maxRequestBytes ?? 4 * 1024 * 1024, 1024, 90 * 1024 * 1024),
    requestTimeoutMs: int('PG2CRATE_CRATE_TIMEOUT_MS', env.PG2CRATE_CRATE_TIMEOUT_MS ?? crateFile.requestTimeoutMs ?? 60_000, 100, 3_600_000),
    shards: crateFile.shards === undefined ? undefined : int('crate.shards', crateFile.shards, 1, 1000),
    replicas: String(crateFile.replicas ?? env.PG2CRATE_CRATE_REPLICAS ?? '0-1'),
    jsonColumn: oneOf('crate.jsonColumn', env.PG2CRATE_CRATE_JSON ?? crateFile.jsonColumn ?? 'object-ignored', ['object-ignored', 'object-dynamic', 'text'] as const),
    textColumn: oneOf('crate.textColumn', env.PG2CRATE_CRATE_TEXT ?? crateFile.textColumn ?? 'plain', ['plain', 'unindexed', 'fulltext'] as const),
  };
  if (!/^(\d+|\d+-(\d+|all))$/.test(crate.replicas)) throw new ConfigError('crate.replicas', `expected a number or a range like 0-1, got ${JSON.stringify(crate.replicas)}`);

  const schedFile = (file.schedules ?? {}) as Record<string, unknown>;
  if (typeof schedFile !== 'object' || Array.isArray(schedFile)) throw new ConfigError('schedules', 'expected an object { catchUp, retention, verify, timezone }');
  const cronSetting = (envName: string, key: string, fallback: string | undefined): string | undefined => {
    const raw = env[envName] !== undefined ? env[envName] : schedFile[key] !== undefined ? schedFile[key] : fallback;
    if (raw === undefined || raw === '' || raw === 'off') return undefined;
    if (typeof raw !== 'string' || !validateCron(raw)) {
      throw new ConfigError(envName, `expected a cron expression like "*/5 * * * *" (minute hour day month weekday, optional seconds first) or "off", got ${JSON.stringify(raw)}`);
    }
    return raw;
  };
  const timezone = (env.PG2CRATE_CRON_TZ ?? schedFile.timezone) as string | undefined;
  if (timezone !== undefined) {
    try {
      new Intl.DateTimeFormat('en', { timeZone: timezone });
    } catch {
      throw new ConfigError('PG2CRATE_CRON_TZ', `expected an IANA time zone like Europe/Berlin, got ${JSON.stringify(timezone)}`);
    }
  }
  const httpRaw = pick('PG2CRATE_HTTP_PORT', 'httpPort');

  const config: Config = {
    sourceUrl,
    target,
    schema,
    stream,
    tables,
    targetSchema: targetSchemaRaw as string | undefined,
    pageSize: int('PG2CRATE_PAGE_SIZE', pick('PG2CRATE_PAGE_SIZE', 'pageSize') ?? 5000, 1, 1_000_000),
    pollIntervalMs: int('PG2CRATE_POLL_INTERVAL_MS', pick('PG2CRATE_POLL_INTERVAL_MS', 'pollIntervalMs') ?? 1000, 10, 3_600_000),
    standbyRetryMs: int('PG2CRATE_STANDBY_RETRY_MS', pick('PG2CRATE_STANDBY_RETRY_MS', 'standbyRetryMs') ?? 2000, 10, 600_000),
    partitionWatchMs: int('PG2CRATE_PARTITION_WATCH_MS', pick('PG2CRATE_PARTITION_WATCH_MS', 'partitionWatchMs') ?? 1000, 10, 3_600_000),
    logLevel,
    deadLetterPolicy: oneOf('PG2CRATE_DEAD_LETTERS', pick('PG2CRATE_DEAD_LETTERS', 'deadLetterPolicy') ?? 'park', ['park', 'halt'] as const),
    rejectAttempts: int('PG2CRATE_REJECT_ATTEMPTS', pick('PG2CRATE_REJECT_ATTEMPTS', 'rejectAttempts') ?? 3, 1, 100),
    stopTimeoutMs: int('PG2CRATE_STOP_TIMEOUT_MS', pick('PG2CRATE_STOP_TIMEOUT_MS', 'stopTimeoutMs') ?? 30_000, 100, 3_600_000),
    backfillChunkRows: int('PG2CRATE_BACKFILL_CHUNK_ROWS', pick('PG2CRATE_BACKFILL_CHUNK_ROWS', 'backfillChunkRows') ?? 10_000, 1, 1_000_000),
    backfillInflight: int('PG2CRATE_BACKFILL_INFLIGHT', pick('PG2CRATE_BACKFILL_INFLIGHT', 'backfillInflight') ?? 4, 1, 1000),
    initialLoad: oneOf('PG2CRATE_INITIAL_LOAD', pick('PG2CRATE_INITIAL_LOAD', 'initialLoad') ?? 'direct', ['direct', 'outbox'] as const),
    httpPort: httpRaw === undefined || httpRaw === 'off' ? undefined : int('PG2CRATE_HTTP_PORT', httpRaw, 0, 65535),
    readyMaxLagSeconds: int('PG2CRATE_READY_MAX_LAG_S', pick('PG2CRATE_READY_MAX_LAG_S', 'readyMaxLagSeconds') ?? 300, 1, 31_536_000),
    retentionRotateBytes: int('PG2CRATE_RETENTION_ROTATE_KB', pick('PG2CRATE_RETENTION_ROTATE_KB', 'retentionRotateKb') ?? 65_536, 8, 1_000_000_000) * 1024,
    schedules: {
      catchUp: cronSetting('PG2CRATE_CATCHUP_CRON', 'catchUp', undefined),
      retention: cronSetting('PG2CRATE_RETENTION_CRON', 'retention', '* * * * *'),
      verify: cronSetting('PG2CRATE_VERIFY_CRON', 'verify', undefined),
      timezone,
    },
    crate,
    capture: oneOf('PG2CRATE_CAPTURE', pick('PG2CRATE_CAPTURE', 'capture') ?? 'trigger', ['trigger', 'pgoutput'] as const),
    slotName: replicationName('PG2CRATE_SLOT', pick('PG2CRATE_SLOT', 'slotName') ?? 'pg2crate'),
    publicationName: replicationName('PG2CRATE_PUBLICATION', pick('PG2CRATE_PUBLICATION', 'publicationName') ?? 'pg2crate'),
    slotWarnBytes: int('PG2CRATE_SLOT_WARN_MB', pick('PG2CRATE_SLOT_WARN_MB', 'slotWarnMb') ?? 1024, 1, 100_000_000) * 1024 * 1024,
  };
  return deepFreeze(config);
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
