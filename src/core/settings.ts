// The settings, one schema each (zod): where a setting comes from (an environment variable and a
// key of the JSON file), how its raw value is checked and converted, its default, and the line the
// README's configuration table gives it. config.ts reads them; `settingsTable()` renders the README
// table, and test/unit/settings-readme.test.ts fails when the README and this list disagree.
//
// Messages follow the house rule: name the expected form, show the value given, never show a value
// that may hold a secret (URLs, passwords, salts).
import { validate as validateCron } from 'node-cron';
import { z } from 'zod';

/** A setting's check failed with `iss.input` the value given; the message shows it. */
type Message = (iss: { input?: unknown }) => string;

const got = (input: unknown): string => JSON.stringify(input);

function wholeNumber(min: number, max: number) {
  const error: Message = (iss) => `expected a whole number from ${min} to ${max}, got ${got(iss.input)}`;
  return z
    .union([z.number(), z.string().trim().regex(/^-?\d+$/).transform(Number)], { error })
    .pipe(z.number().int({ error }).min(min, { error }).max(max, { error }));
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: (iss) => `expected one of ${values.join(', ')}, got ${got(iss.input)}` });
}

/** A URL of one of `protocols`; the message never repeats the value (it may carry a password). */
function url(protocols: readonly string[]) {
  return z.string({ error: `expected a URL starting with ${protocols.join(' or ')}` }).superRefine((raw, ctx) => {
    let u: URL;
    try {
      u = new URL(raw);
    } catch {
      ctx.addIssue({ code: 'custom', message: `expected a URL like ${protocols[0]}//host:port/…, got something that is not a URL` });
      return;
    }
    if (!protocols.includes(u.protocol)) {
      ctx.addIssue({ code: 'custom', message: `expected a URL starting with ${protocols.join(' or ')}, got ${u.protocol}` });
    } else if (!u.hostname && !(u.protocol.startsWith('postgres') && u.searchParams.get('host')?.startsWith('/'))) {
      // libpq takes a Unix socket directory as ?host=/path with an empty host part
      ctx.addIssue({ code: 'custom', message: 'the URL has no host' });
    }
  });
}

/**
 * One URL, or the nodes of a cluster: a comma-separated list (in the file also a JSON list). Each
 * is checked as url() does, and a message for a list names the position, never the value.
 */
function urlList(protocols: readonly string[]) {
  const one = url(protocols);
  const expected = `expected a URL starting with ${protocols.join(' or ')}, or several separated by commas`;
  return z
    .union([z.string(), z.array(z.string())], { error: expected })
    .transform((raw) => (typeof raw === 'string' ? raw.split(',') : raw).map((s) => s.trim()))
    .superRefine((list, ctx) => {
      const seen = new Map<string, number>();
      list.forEach((item, i) => {
        const where = list.length === 1 ? '' : `URL ${i + 1} of ${list.length}: `;
        if (item === '') {
          ctx.addIssue({ code: 'custom', message: `${where}${list.length === 1 ? expected : 'empty (a comma too many?)'}` });
          return;
        }
        const res = one.safeParse(item);
        if (!res.success) {
          ctx.addIssue({ code: 'custom', message: `${where}${res.error.issues[0].message}` });
          return;
        }
        const u = new URL(item);
        const node = `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
        const first = seen.get(node);
        if (first !== undefined) ctx.addIssue({ code: 'custom', message: `URL ${first + 1} and URL ${i + 1} name the same node` });
        else seen.set(node, i);
      });
    });
}

function cron() {
  const error: Message = (iss) => `expected a cron expression like "*/5 * * * *" (minute hour day month weekday, optional seconds first) or "off", got ${got(iss.input)}`;
  // '' and 'off' switch a schedule off
  return z.union([z.literal(['', 'off']).transform(() => undefined), z.string().refine((s) => validateCron(s), { error })], { error });
}

/** Slot and publication names: what Postgres accepts for a slot, so one rule serves both. */
function replicationName() {
  return z.string().regex(/^[a-z0-9_]{1,63}$/, {
    error: (iss) => `expected 1 to 63 lowercase letters, digits or underscores (what Postgres allows in a slot name), got ${got(iss.input)}`,
  });
}

const nonEmpty = (what: string) => z.string({ error: `expected ${what}` }).refine((s) => s.length > 0 && !s.includes('\u0000'), { error: `expected ${what}` });

/** A setting: its variable (null: file only), its schema, and its README line. */
export interface Setting<S extends z.ZodType = z.ZodType> {
  env: string | null;
  schema: S;
  /** the README's default column; none given: the schema's default as code */
  shownDefault?: string;
  meaning: string;
}

function setting<S extends z.ZodType>(s: Setting<S>): Setting<S> {
  return s;
}

/**
 * Every setting, keyed by its JSON file key (`crate.x` and `schedules.x` are keys of those
 * objects), in the README's order. An environment variable wins over the file; an empty one counts
 * as unset.
 */
export const SETTINGS = {
  databaseUrl: setting({
    env: 'DATABASE_URL', schema: url(['postgres:', 'postgresql:']).optional(), shownDefault: '—',
    meaning: 'the source database, `postgres://user:password@host:5432/db`; unset: the libpq `PGHOST`, `PGDATABASE`, … variables',
  }),
  cratedbUrl: setting({
    env: 'CRATEDB_URL', schema: urlList(['http:', 'https:']).optional(), shownDefault: '—',
    meaning: 'CrateDB HTTP endpoint, `http(s)://[user:password@]host:4200`; a cluster: several nodes separated by commas, requests spread over those that answer (see Running against a CrateDB cluster); exactly one target',
  }),
  cratedbUser: setting({ env: 'CRATEDB_USER', schema: z.string().optional(), shownDefault: 'the URL\'s, else `crate`', meaning: 'CrateDB user (instead of the URL\'s)' }),
  cratedbPassword: setting({ env: 'CRATEDB_PASSWORD', schema: z.string().optional(), shownDefault: 'the URL\'s, else none', meaning: 'CrateDB password (instead of the URL\'s); never logged' }),
  targetDatabaseUrl: setting({
    env: 'TARGET_DATABASE_URL', schema: url(['postgres:', 'postgresql:']).optional(), shownDefault: '—',
    meaning: 'a PostgreSQL target instead of CrateDB',
  }),
  tables: setting({
    env: 'PG2CRATE_TABLES', schema: z.unknown(), shownDefault: 'none',
    meaning: 'tables to capture, comma-separated `schema.table`; in the file also `{"name": "s.t", "keyColumns": ["a"], "targetSchema": "…", "targetTable": "…"}` and the shape options (Shaping the target)',
  }),
  schema: setting({
    env: 'PG2CRATE_SCHEMA', meaning: 'the tool\'s own schema in the source database',
    schema: z.string().refine((s) => s.length > 0 && Buffer.byteLength(s) <= 63 && !s.includes('\u0000'), { error: 'expected a schema name of 1 to 63 bytes' }).default('pg2crate'),
  }),
  stream: setting({
    env: 'PG2CRATE_STREAM', meaning: 'name of the consumer (one checkpoint, one active drainer)',
    schema: z.string().regex(/^[A-Za-z0-9_.-]{1,63}$/, { error: 'expected 1 to 63 letters, digits, _ . or -' }).default('main'),
  }),
  targetSchema: setting({ env: 'PG2CRATE_TARGET_SCHEMA', schema: nonEmpty('a schema name').optional(), shownDefault: 'the source table\'s schema', meaning: 'schema of the target tables' }),
  pageSize: setting({ env: 'PG2CRATE_PAGE_SIZE', schema: wholeNumber(1, 1_000_000).default(5000), meaning: 'events per page; bounds memory' }),
  pollIntervalMs: setting({ env: 'PG2CRATE_POLL_INTERVAL_MS', schema: wholeNumber(10, 3_600_000).default(1000), meaning: 'polling backstop when no NOTIFY arrives' }),
  standbyRetryMs: setting({ env: 'PG2CRATE_STANDBY_RETRY_MS', schema: wholeNumber(10, 600_000).default(2000), meaning: 'how often a standby tries to take the stream' }),
  partitionWatchMs: setting({
    env: 'PG2CRATE_PARTITION_WATCH_MS', schema: wholeNumber(10, 3_600_000).default(1000),
    meaning: 'how often the replicator looks for partitions created or attached since a partitioned table was captured, and captures them',
  }),
  deadLetterPolicy: setting({
    env: 'PG2CRATE_DEAD_LETTERS', schema: oneOf(['park', 'halt']).default('park'),
    meaning: 'a change the target rejects after retries: `park` it in `pg2crate.dead_letters` and go on, or `halt`',
  }),
  rejectAttempts: setting({ env: 'PG2CRATE_REJECT_ATTEMPTS', schema: wholeNumber(1, 100).default(3), meaning: 'attempts for a rejected change before the policy applies' }),
  stopTimeoutMs: setting({ env: 'PG2CRATE_STOP_TIMEOUT_MS', schema: wholeNumber(100, 3_600_000).default(30_000), meaning: 'how long a graceful stop waits for the page in flight' }),
  backfillChunkRows: setting({ env: 'PG2CRATE_BACKFILL_CHUNK_ROWS', schema: wholeNumber(1, 1_000_000).default(10_000), meaning: 'rows per initial-load chunk' }),
  backfillInflight: setting({
    env: 'PG2CRATE_BACKFILL_INFLIGHT', schema: wholeNumber(1, 1000).default(4),
    meaning: 'initial-load chunks that may wait unapplied in the outbox (`outbox` loads)',
  }),
  initialLoad: setting({
    env: 'PG2CRATE_INITIAL_LOAD', schema: oneOf(['direct', 'outbox']).default('direct'),
    meaning: '`direct`: copy existing rows straight into the target, then re-send rows changed meanwhile; `outbox`: every row through the outbox and the drainer',
  }),
  // 5,000: what CrateDB's own bulk rates are quoted at, and measured best here. Against 2,000, same
  // runs on a quiet machine (README Performance, rows 4 and 5): an all-insert drain 0.71 → 0.79 of
  // the raw replay, in every round, CrateDB's JVM 18.4 → 15.9 ms per 1,000 rows; an initial load
  // 0.77 → 0.83 of the raw insert loop; a mixed drain unchanged (0.80 / 0.79). The byte bound
  // below still cuts requests of wide rows.
  'crate.maxRequestRows': setting({ env: 'PG2CRATE_CRATE_MAX_ROWS', schema: wholeNumber(1, 100_000).default(5000), meaning: 'rows per CrateDB bulk request' }),
  'crate.maxRequestBytes': setting({ env: 'PG2CRATE_CRATE_MAX_BYTES', schema: wholeNumber(1024, 90 * 1024 * 1024).default(4 * 1024 * 1024), meaning: 'bytes per CrateDB bulk request' }),
  'crate.requestsInFlight': setting({
    env: 'PG2CRATE_CRATE_IN_FLIGHT', schema: wholeNumber(1, 64).default(2),
    meaning: 'bulk requests a page has in flight at once, over all its tables (a cluster takes more)',
  }),
  'crate.requestTimeoutMs': setting({ env: 'PG2CRATE_CRATE_TIMEOUT_MS', schema: wholeNumber(100, 3_600_000).default(60_000), meaning: 'timeout of one CrateDB request' }),
  // 0-2: one copy of each shard per node up to three copies (one node: none, two: one, three or
  // more: two), so writes go on while any one node is away, and also while a second one restarts
  // before the first has its copies back. With 0-1, CrateDB's own default, a 3-node cluster
  // killed that way (6.4.3, tested) had 2 of 6 shards without a copy for 36 s: writes to them
  // waited. Writes need only the primary (write.wait_for_active_shards = 1, CrateDB's default, left
  // as it is), so missing replicas never stop them. Cost: each row indexed three times, not twice.
  'crate.replicas': setting({
    env: 'PG2CRATE_CRATE_REPLICAS', meaning: '`number_of_replicas` of created tables: a copy of each shard on every node up to three copies (see Running against a CrateDB cluster)',
    schema: z.union([z.number().int().min(0).transform(String), z.string()]).pipe(
      z.string().regex(/^(\d+|\d+-(\d+|all))$/, { error: (iss) => `expected a number or a range like 0-2, got ${got(iss.input)}` }),
    ).default('0-2'),
  }),
  // 500 ms rather than CrateDB's default of 1 s: commit → visible is mostly the wait for the next
  // refresh (applying took a p50 of 20 ms). At 1,000 tx/s on a busy 2-core machine (bench/latency.ts
  // --refresh-ms=1000,500) the p99 was 0.79-0.88 s with 500 ms, and 1.28-1.35 s with 1 s (1.18-1.82
  // s in another run: over the 1.5 s goal). A refresh writes new segments, so a larger value costs
  // CrateDB less under heavy writes.
  'crate.refreshIntervalMs': setting({
    env: 'PG2CRATE_CRATE_REFRESH_MS', schema: wholeNumber(100, 3_600_000).default(500),
    meaning: '`refresh_interval` of created tables, ms: how soon after it is applied a change is readable by searches (a lookup by primary key sees it at once)',
  }),
  'crate.shards': setting({ env: null, schema: wholeNumber(1, 1000).optional(), shownDefault: 'CrateDB\'s default', meaning: 'shards of created tables' }),
  'crate.jsonColumn': setting({
    env: 'PG2CRATE_CRATE_JSON', schema: oneOf(['object-ignored', 'object-dynamic', 'text']).default('object-ignored'),
    meaning: 'jsonb columns as `OBJECT(IGNORED)`, `OBJECT(DYNAMIC)` or `text`',
  }),
  'crate.textColumn': setting({
    env: 'PG2CRATE_CRATE_TEXT', schema: oneOf(['plain', 'unindexed', 'fulltext']).default('plain'),
    meaning: 'text columns: `plain` (indexed), `unindexed` or `fulltext` (see Limits)',
  }),
  httpPort: setting({
    env: 'PG2CRATE_HTTP_PORT', schema: z.union([z.literal('off').transform(() => undefined), wholeNumber(0, 65535)]).optional(), shownDefault: 'off',
    meaning: 'serve `/metrics`, `/healthz`, `/readyz` on this port (`0`: any free port)',
  }),
  readyMaxLagSeconds: setting({ env: 'PG2CRATE_READY_MAX_LAG_S', schema: wholeNumber(1, 31_536_000).default(300), meaning: '`/readyz` answers 503 above this lag' }),
  'schedules.catchUp': setting({
    env: 'PG2CRATE_CATCHUP_CRON', schema: cron().optional(), shownDefault: 'off',
    meaning: 'scheduled mode: `start` keeps no LISTEN connection and runs a catch-up on this cron expression instead of draining continuously',
  }),
  'schedules.retention': setting({
    env: 'PG2CRATE_RETENTION_CRON', schema: cron().default('* * * * *'),
    meaning: 'when to truncate applied outbox generations (`off` to disable)',
  }),
  'schedules.verify': setting({ env: 'PG2CRATE_VERIFY_CRON', schema: cron().optional(), shownDefault: 'off', meaning: 'periodic `verify` (report only)' }),
  'schedules.timezone': setting({
    env: 'PG2CRATE_CRON_TZ', shownDefault: 'local', meaning: 'IANA time zone of the cron expressions',
    schema: z.string().refine(isTimeZone, { error: (iss) => `expected an IANA time zone like Europe/Berlin, got ${got(iss.input)}` }).optional(),
  }),
  retentionRotateKb: setting({
    env: 'PG2CRATE_RETENTION_ROTATE_KB', schema: wholeNumber(8, 1_000_000_000).default(65_536),
    meaning: 'move writers to the next outbox generation once the current one holds this much',
  }),
  capture: setting({
    env: 'PG2CRATE_CAPTURE', schema: oneOf(['trigger', 'pgoutput']).default('trigger'),
    meaning: '`trigger`, or `pgoutput` where logical replication is allowed (after `switch-capture pgoutput`)',
  }),
  slotName: setting({ env: 'PG2CRATE_SLOT', schema: replicationName().default('pg2crate'), meaning: 'pgoutput: the logical replication slot' }),
  publicationName: setting({ env: 'PG2CRATE_PUBLICATION', schema: replicationName().default('pg2crate'), meaning: 'pgoutput: the publication of the captured tables' }),
  slotWarnMb: setting({ env: 'PG2CRATE_SLOT_WARN_MB', schema: wholeNumber(1, 100_000_000).default(1024), meaning: 'pgoutput: warn when the slot retains more WAL than this' }),
  hashSalt: setting({
    env: 'PG2CRATE_HASH_SALT', shownDefault: 'none', meaning: 'salt of hashed columns (see Shaping the target); never logged',
    schema: z.string({ error: 'expected a non-empty string' }).refine((s) => s.length > 0 && !s.includes('\u0000'), { error: 'expected a non-empty string' }).optional(),
  }),
  logLevel: setting({
    env: 'LOG_LEVEL', schema: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(), shownDefault: '`info` for `start`, else `warn`',
    meaning: 'pino level; the one-shot commands log only warnings and errors unless it is set (`info` shows their progress)',
  }),
  logFormat: setting({
    env: 'LOG_FORMAT', schema: oneOf(['json', 'pretty']).optional(), shownDefault: '`pretty` on a terminal, else `json`',
    meaning: 'log lines as pino JSON (one object a line) or readable text; `start` logs to stdout, the other commands to stderr, and the default follows whether that stream is a terminal',
  }),
} satisfies Record<string, Setting>;

export type SettingKey = keyof typeof SETTINGS;
/** The settings as checked and converted: the types config.ts builds the Config from. */
export type Settings = { [K in SettingKey]: z.output<(typeof SETTINGS)[K]['schema']> };

function isTimeZone(tz: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
}

/** The README's configuration table, rendered from SETTINGS. */
export function settingsTable(): string {
  const rows = Object.entries(SETTINGS).map(([key, s]: [string, Setting]) => {
    const def = s.shownDefault ?? `\`${String((s.schema as z.ZodType).parse(undefined))}\``;
    return `| ${s.env ? `\`${s.env}\`` : '—'} | \`${key}\` | ${def} | ${s.meaning} |`;
  });
  return [TABLE_HEAD, '| --- | --- | --- | --- |', ...rows].join('\n');
}

const TABLE_HEAD = '| environment | file key | default | meaning |';

/** `readme` with its configuration table (the one under TABLE_HEAD) replaced by settingsTable(). */
export function replaceSettingsTable(readme: string): string {
  const start = readme.indexOf(TABLE_HEAD);
  if (start < 0) throw new Error(`README.md has no configuration table (a line "${TABLE_HEAD}")`);
  const end = readme.indexOf('\n\n', start);
  return readme.slice(0, start) + settingsTable() + (end < 0 ? '\n' : readme.slice(end));
}
