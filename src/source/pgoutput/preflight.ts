// Checks that pgoutput capture can work here, before anything is created, each failing with one
// line that says what to change (or to use trigger mode); and the publication that lists the
// captured tables.
import type pg from 'pg';
import { ConfigError, TableError } from '../../core/errors.js';
import { displayName, qualify, quoteIdent } from '../../core/identifiers.js';
import { checkShapesForPgoutput, publishedTables, type PublishedTable } from './publication-shape.js';

type Queryable = pg.ClientBase | pg.Pool;

const USE_TRIGGERS = 'or use trigger mode: PG2CRATE_CAPTURE=trigger';

export async function checkServer(db: Queryable): Promise<number> {
  const res = await db.query<{ version: string; wal_level: string; role: string; can: boolean; rds: boolean }>(
    `select current_setting('server_version_num') as version, current_setting('wal_level') as wal_level, current_user as role,
            (select rolsuper or rolreplication from pg_roles where rolname = current_user) as can,
            exists (select 1 from pg_roles where rolname = 'rds_replication') as rds`,
  );
  const r = res.rows[0];
  const version = Number(r.version);
  // The stream's marks are logical messages, which pgoutput sends from PostgreSQL 14 on.
  if (version < 140000) {
    throw new ConfigError('PG2CRATE_CAPTURE', `pgoutput mode needs PostgreSQL 14 or later (the source runs ${Math.floor(version / 10000)}.${version % 10000}); ${USE_TRIGGERS}`);
  }
  if (r.wal_level !== 'logical') {
    throw new ConfigError(
      'PG2CRATE_CAPTURE',
      `the source runs with wal_level=${r.wal_level}, pgoutput needs wal_level=logical (ALTER SYSTEM SET wal_level = logical and restart; on RDS set rds.logical_replication = 1), ${USE_TRIGGERS}`,
    );
  }
  let can = r.can;
  if (!can && r.rds) {
    const m = await db.query<{ ok: boolean }>(`select pg_has_role(current_user, 'rds_replication', 'member') as ok`);
    can = m.rows[0].ok;
  }
  if (!can) {
    throw new ConfigError(
      'PG2CRATE_CAPTURE',
      `role ${r.role} lacks the REPLICATION attribute that pgoutput needs (ALTER ROLE ${quoteIdent(r.role)} WITH REPLICATION; on RDS: GRANT rds_replication TO ${quoteIdent(r.role)}), ${USE_TRIGGERS}`,
    );
  }
  return version;
}

interface TableRow {
  source_schema: string;
  source_table: string;
  key_columns: string[];
  replident: string | null;
  identity: string[] | null;
  generated: string[] | null;
}

/** The columns of relation `c`'s replica identity index (its primary key under DEFAULT), in index order; null when it has none. */
const IDENTITY_COLUMNS = `(select array_agg(a.attname::text order by k.ord)
               from pg_index i cross join lateral unnest(i.indkey) with ordinality as k(attnum, ord)
               join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
              where i.indrelid = c.oid and ((c.relreplident = 'd' and i.indisprimary) or (c.relreplident = 'i' and i.indisreplident)))`;

function sameColumns(identity: readonly string[] | null, key: readonly string[]): boolean {
  return !!identity && identity.length === key.length && identity.every((c) => key.includes(c));
}

/** Every registered table must identify its rows in the WAL by exactly its key (or in full). */
export async function checkTables(db: Queryable, schema: string): Promise<void> {
  const res = await db.query<TableRow>(
    `select t.source_schema, t.source_table, t.key_columns, c.relreplident::text as replident,
            ${IDENTITY_COLUMNS} as identity,
            (select array_agg(a.attname::text order by a.attnum) from pg_attribute a
              where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped and a.attgenerated <> '') as generated
       from ${qualify(schema, 'tables')} t left join pg_class c on c.oid = t.relid order by t.id`,
  );
  for (const t of res.rows) {
    const name = displayName(t.source_schema, t.source_table);
    const sql = qualify(t.source_schema, t.source_table);
    if (t.replident === null) throw new TableError(`captured table ${name} no longer exists; release it with \`pg2crate tables remove ${name}\``);
    if (t.replident === 'n') {
      throw new TableError(`table ${name} has REPLICA IDENTITY NOTHING, so pgoutput cannot say which row an update or delete changed: ALTER TABLE ${sql} REPLICA IDENTITY DEFAULT (or FULL), ${USE_TRIGGERS}`);
    }
    if (t.generated) {
      throw new TableError(`table ${name} has generated columns (${t.generated.join(', ')}), which pgoutput does not send; ${USE_TRIGGERS}`);
    }
    if (t.replident === 'f') continue;
    const identity = t.identity ?? [];
    if (identity.length === 0) {
      throw new TableError(
        `table ${name} has no primary key, so its updates and deletes carry no key in the WAL (and would fail once published): ` +
          `ALTER TABLE ${sql} REPLICA IDENTITY FULL (or USING INDEX on a unique index over ${t.key_columns.join(', ')}), ${USE_TRIGGERS}`,
      );
    }
    if (!sameColumns(identity, t.key_columns)) {
      throw new TableError(
        `table ${name} identifies rows in the WAL by (${identity.join(', ')}) but pg2crate keys it by (${t.key_columns.join(', ')}): ` +
          `ALTER TABLE ${sql} REPLICA IDENTITY FULL, or configure those key columns, ${USE_TRIGGERS}`,
      );
    }
  }
  // shaped tables: what a publication can do for them (column lists, row filters) and what not
  await checkShapesForPgoutput(db, schema);
}

/** A partition of a captured table, as it identifies its rows in the WAL. */
export interface PartitionIdentity {
  schema: string;
  name: string;
  /** its replica identity: 'd', 'i', 'f' or 'n' */
  replident: string;
  identity: string[] | null;
}

/**
 * Whether a leaf partition identifies its rows as its partitioned table does. Postgres checks the
 * replica identity of the partition a row is in, not of the table published for it: a partition
 * without one fails the application's UPDATEs and DELETEs once the table is published ("cannot
 * update table … because it does not have a replica identity"), and one identified by other
 * columns sends old rows without the key. So a table with REPLICA IDENTITY FULL needs it on every
 * leaf (ALTER TABLE on the partitioned table does not reach its partitions), and one identified by
 * its key needs each leaf identified by the same columns (a partitioned primary key gives them that).
 */
export function partitionIdentityHolds(rootReplident: string, keyColumns: readonly string[], p: PartitionIdentity): boolean {
  return rootReplident === 'f' ? p.replident === 'f' : p.replident !== 'f' && p.replident !== 'n' && sameColumns(p.identity, keyColumns);
}

/**
 * The name of leaf `c`'s share of partitioned table `r`'s replica identity index, when `r` is
 * identified USING INDEX (pg_partition_tree lists a partitioned index's shares too); null otherwise.
 * A partitioned index reaches every partition, but a partition's identity stays DEFAULT.
 */
export const IDENTITY_INDEX_SHARE = `(select ci.relname from pg_index ri cross join lateral pg_partition_tree(ri.indexrelid) pi
                                 join pg_index li on li.indexrelid = pi.relid join pg_class ci on ci.oid = li.indexrelid
                                where r.relreplident = 'i' and ri.indrelid = r.oid and ri.indisreplident and li.indrelid = c.oid)`;

/**
 * The switch to pgoutput refuses a partitioned table whose leaf partitions do not identify rows as
 * the table does (partitionIdentityHolds), naming each and the statement that fixes it. A partition
 * created later in pgoutput mode is given the table's identity by the partition watch
 * (ops/partition-watch.ts).
 */
export async function checkPartitionIdentities(db: Queryable, schema: string): Promise<void> {
  const res = await db.query<PartitionIdentity & { table_schema: string; table_name: string; key_columns: string[]; root_replident: string; share: string | null }>(
    `select t.source_schema as table_schema, t.source_table as table_name, t.key_columns, r.relreplident::text as root_replident,
            n.nspname as schema, c.relname as name, c.relreplident::text as replident, ${IDENTITY_COLUMNS} as identity,
            ${IDENTITY_INDEX_SHARE} as share
       from ${qualify(schema, 'tables')} t join pg_class r on r.oid = t.relid and r.relkind = 'p'
            cross join lateral pg_partition_tree(t.relid) p
            join pg_class c on c.oid = p.relid join pg_namespace n on n.oid = c.relnamespace
      where p.isleaf
      order by t.id, p.level, n.nspname, c.relname`,
  );
  const bad = new Map<string, typeof res.rows>();
  for (const r of res.rows) {
    if (partitionIdentityHolds(r.root_replident, r.key_columns, r)) continue;
    const name = displayName(r.table_schema, r.table_name);
    bad.set(name, [...(bad.get(name) ?? []), r]);
  }
  for (const [name, rows] of bad) {
    const full = rows[0].root_replident === 'f';
    const identity = (r: (typeof rows)[number]) => (full ? 'FULL' : r.share !== null ? `USING INDEX ${quoteIdent(r.share)}` : 'DEFAULT');
    const shown = rows.slice(0, 5).map((r) => `ALTER TABLE ${qualify(r.schema, r.name)} REPLICA IDENTITY ${identity(r)};`);
    const more = rows.length > shown.length ? ` (and ${rows.length - shown.length} more)` : '';
    throw new TableError(
      `${rows.length} partition(s) of ${name} do not identify rows in the WAL as the table does ` +
        `(${full ? 'REPLICA IDENTITY FULL' : `by ${rows[0].key_columns.join(', ')}`}): ${rows.map((r) => displayName(r.schema, r.name)).join(', ')}; ` +
        `once published, Postgres would refuse the application's updates and deletes in them${full ? '' : ' or send them without the key'}: ` +
        `${shown.join(' ')}${more}${full ? '' : ' (DEFAULT where the partition has the primary key over those columns, else USING INDEX on a unique index over them, or FULL on the table and every partition)'}, ${USE_TRIGGERS}`,
    );
  }
}

/**
 * Creates the publication or brings its table list in line with the registry and pg2crate's outbox.
 * Returns whether it changed. A shaped table is published with its column list and row filter (publication-shape.ts);
 * a column list that no longer matches the table's columns is replaced by dropping and adding the
 * table in one transaction, so that no change falls between the two.
 */
export async function ensurePublication(db: Queryable, schema: string, publication: string): Promise<boolean> {
  const want = await publishedTables(db, schema);
  // The outbox too: repair, dead-letter retry and initial-load events are written there and reach
  // the target through the slot, in commit order with the row changes (pgoutput-source.ts). It is
  // list-partitioned by generation; publish_via_partition_root makes every partition's inserts
  // (present and future ones) arrive as the root's. It cannot be published for inserts only: that
  // is a publication-wide option, and a second publication created after an existing slot's
  // position would make decoding fail ("publication does not exist" under the historic snapshot).
  // So nothing may UPDATE or DELETE outbox rows in this mode (no replica identity): pg2crate only
  // inserts and truncates partitions, and truncating a partition is not sent via the root.
  want.set(`${schema}\u0000outbox`, { clause: qualify(schema, 'outbox'), columns: null });
  const exists = await db.query(`select 1 from pg_publication where pubname = $1`, [publication]);
  if (exists.rows.length === 0) {
    const list = want.size > 0 ? ` for table ${[...want.values()].map((w) => w.clause).join(', ')}` : '';
    await db.query(`create publication ${quoteIdent(publication)}${list} with (publish_via_partition_root = true)`);
    return true;
  }
  const have = await db.query<{ s: string; t: string }>(`select schemaname as s, tablename as t from pg_publication_tables where pubname = $1`, [publication]);
  const haveKeys = new Set(have.rows.map((r) => `${r.s}\u0000${r.t}`));
  let changed = await refreshColumnLists(db, publication, want, haveKeys);
  for (const [k, w] of want) {
    if (!haveKeys.has(k)) { await db.query(`alter publication ${quoteIdent(publication)} add table ${w.clause}`); changed = true; }
  }
  for (const r of have.rows) {
    if (!want.has(`${r.s}\u0000${r.t}`)) { await db.query(`alter publication ${quoteIdent(publication)} drop table ${qualify(r.s, r.t)}`); changed = true; }
  }
  return changed;
}

/** Re-adds published tables whose column list differs from the one wanted (only PostgreSQL 15+ has lists). */
async function refreshColumnLists(db: Queryable, publication: string, want: Map<string, PublishedTable>, haveKeys: Set<string>): Promise<boolean> {
  const listed = [...want.entries()].filter(([k, w]) => haveKeys.has(k) && w.columns !== null);
  if (listed.length === 0) return false;
  const res = await db.query<{ s: string; t: string; cols: string[] | null }>(
    `select schemaname as s, tablename as t, attnames::text[] as cols from pg_publication_tables where pubname = $1`, [publication],
  );
  let changed = false;
  for (const [k, w] of listed) {
    const current = res.rows.find((x) => `${x.s}\u0000${x.t}` === k)?.cols ?? [];
    if (current.join('\u0000') === w.columns!.join('\u0000')) continue;
    const [s, t] = k.split('\u0000');
    // One simple query: both statements run in one implicit transaction, on whatever connection.
    await db.query(`alter publication ${quoteIdent(publication)} drop table ${qualify(s, t)}; alter publication ${quoteIdent(publication)} add table ${w.clause}`);
    changed = true;
  }
  return changed;
}
