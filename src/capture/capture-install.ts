// Installing and removing a table's capture in the source database, partitions included. Runs
// inside the caller's transaction, so a table is captured whole or not at all.
//
// A plain table: its function and four statement triggers (triggers.ts). A partitioned table: the
// same function (it knows the root, for truncates and detached partitions), the statement triggers
// plus a BEFORE TRUNCATE one on the root and on every partition at every level, and the guard row
// trigger on the root, whose clone Postgres puts on every partition, now and later; the clones of
// the leaf partitions that have their statement triggers are disabled, so the guard costs nothing
// there.
// In pgoutput mode the slot sends inserts, updates and deletes made through any partition as the
// root's, but not a partition's TRUNCATE: a partitioned table keeps its truncate triggers and guard.
import type pg from 'pg';
import { qualify, quoteIdent } from '../core/identifiers.js';
import { captureFunctionName, guardFunctionName, triggerName } from './names.js';
import {
  captureFunctionSql, createGuardSql, createTriggersSql, dropFunctionSql, guardFunctionSql, type CaptureTarget,
} from './triggers.js';

type Queryable = pg.ClientBase | pg.Pool;

export interface Partition {
  relid: number;
  schema: string;
  table: string;
  /** a partition that holds rows (not itself partitioned) */
  leaf: boolean;
}

/** Every partition of a partitioned table at every level, parents before children; null for a table that is not partitioned. */
export async function partitionsOf(db: Queryable, relid: number): Promise<Partition[] | null> {
  const kind = await db.query<{ relkind: string }>(`select relkind from pg_class where oid = $1`, [relid]);
  if (kind.rows[0]?.relkind !== 'p') return null;
  const res = await db.query<{ relid: string; schema: string; name: string; leaf: boolean }>(
    `select p.relid::oid::int8::text as relid, n.nspname as schema, c.relname as name, p.isleaf as leaf
       from pg_partition_tree($1::oid) p join pg_class c on c.oid = p.relid join pg_namespace n on n.oid = c.relnamespace
      where p.relid <> $1::oid::regclass order by p.level, c.relname`,
    [relid],
  );
  return res.rows.map((r) => ({ relid: Number(r.relid), schema: r.schema, table: r.name, leaf: r.leaf }));
}

/**
 * The capture target with `partitionRoot` and the attnums of its excluded and hashed columns
 * (triggers.ts: the function refuses to write images while one of them has another name) set from
 * the catalog. A listed column the table does not have now (dropped) has nothing to guard.
 */
async function withRoot(db: Queryable, t: CaptureTarget): Promise<{ target: CaptureTarget; partitions: Partition[] | null }> {
  if (t.relid === undefined) throw new TypeError('installing capture needs the table oid');
  const partitions = await partitionsOf(db, t.relid);
  const listed = [...t.shape?.excludeColumns ?? [], ...t.shape?.hashColumns ?? []];
  const guardedColumns = listed.length === 0 ? undefined : (await db.query<{ name: string; attnum: number }>(
    `select attname::text as name, attnum from pg_attribute where attrelid = $1 and attnum > 0 and not attisdropped and attname = any($2::text[]) order by attnum`,
    [t.relid, listed],
  )).rows;
  return { target: { ...t, ...(partitions ? { partitionRoot: t.relid } : {}), ...(guardedColumns ? { guardedColumns } : {}), keyEqualitySchemas: await keyEqualitySchemas(db, t) }, partitions };
}

/**
 * The schema of each key column's `=`: pg_catalog's, unless the column's type (a domain's base type)
 * has its own in another schema (citext's, in the schema of its extension). The capture function
 * names it with that schema, so that nothing on the writer's search_path is used instead.
 */
async function keyEqualitySchemas(db: Queryable, t: CaptureTarget): Promise<string[]> {
  const res = await db.query<{ nsp: string }>(
    `select coalesce((select n.nspname::text from pg_operator o join pg_namespace n on n.oid = o.oprnamespace
                       where o.oprname = '=' and o.oprleft = b.typ and o.oprright = b.typ and n.nspname <> 'pg_catalog'
                       order by n.nspname limit 1), 'pg_catalog') as nsp
       from unnest($2::text[]) with ordinality k(name, ord)
       left join pg_attribute a on a.attrelid = $1 and a.attname = k.name and not a.attisdropped
       left join lateral (select case when y.typtype = 'd' then y.typbasetype else y.oid end as typ from pg_type y where y.oid = a.atttypid) b on true
      order by k.ord`,
    [t.relid, t.keyColumns],
  );
  return res.rows.map((r) => r.nsp);
}

/** Creates (or replaces) the capture of a table and of all its partitions. */
export async function installCapture(db: pg.ClientBase, schema: string, t: CaptureTarget, mode: 'trigger' | 'pgoutput' = 'trigger'): Promise<void> {
  const { target, partitions } = await withRoot(db, t);
  const dml = mode === 'trigger';
  if (!partitions && !dml) return;
  await db.query(captureFunctionSql(schema, target));
  for (const stmt of createTriggersSql(schema, target, { dml, always: await owns(db, t.relid!) })) await db.query(stmt);
  if (!partitions) return;
  await db.query(guardFunctionSql(schema, target));
  for (const stmt of createGuardSql(schema, target)) await db.query(stmt);
  for (const p of partitions) await capturePartition(db, schema, target, p, dml);
}

/**
 * Makes the capture functions of a table again, for its current key columns (the registry's, after
 * a key column was renamed: ops/key-watch.ts), those it has: in pgoutput mode (or half-way through
 * a switch) a plain table may have none. Its triggers stay as they are. CREATE OR REPLACE FUNCTION
 * takes no lock on the table, so no writer of it waits; a statement that starts after the commit
 * runs the new body.
 */
export async function replaceCaptureFunctions(db: pg.ClientBase, schema: string, t: CaptureTarget): Promise<void> {
  const { target } = await withRoot(db, t);
  const res = await db.query<{ proname: string }>(
    `select proname::text from pg_proc where pronamespace = $1::regnamespace and proname in ($2, $3)`,
    [quoteIdent(schema), captureFunctionName(t.tableId), guardFunctionName(t.tableId)],
  );
  const has = new Set(res.rows.map((r) => r.proname));
  if (has.has(captureFunctionName(t.tableId))) await db.query(captureFunctionSql(schema, target));
  if (has.has(guardFunctionName(t.tableId))) await db.query(guardFunctionSql(schema, target));
}

/**
 * Whether this role may ENABLE ALWAYS the triggers of a relation (ALTER TABLE takes its owner). With
 * TRIGGER only, they stay plain ENABLE: writes of a session with `session_replication_role =
 * replica` are then not captured (README, "Privileges and security").
 */
async function owns(db: Queryable, relid: number): Promise<boolean> {
  const res = await db.query<{ owner: boolean }>(`select pg_has_role(relowner, 'USAGE') as owner from pg_class where oid = $1`, [relid]);
  return res.rows[0]?.owner === true;
}

/**
 * The statement triggers on one partition, and on a leaf its guard clone disabled. Only a leaf's:
 * row triggers fire on leaves alone, and a partition created later under a sub-partitioned one
 * takes its parent's clone as it is, so that one stays enabled (ONLY: without it the change would
 * reach down to every partition below).
 */
export async function capturePartition(db: pg.ClientBase, schema: string, root: CaptureTarget, p: Partition, dml: boolean): Promise<void> {
  for (const stmt of createTriggersSql(schema, root, { on: p, dml, always: await owns(db, p.relid) })) await db.query(stmt);
  if (p.leaf) await db.query(`alter table only ${qualify(p.schema, p.table)} disable trigger ${quoteIdent(triggerName(schema, 'g'))}`);
}

/**
 * Drops the capture of table `tableId` wherever its triggers are: on the table, its partitions, and
 * tables detached from it since. `keep: 'pgoutput'` keeps what a partitioned table needs in pgoutput
 * mode (its truncate triggers and guard); everything else goes, the functions too.
 */
export async function removeCapture(db: pg.ClientBase, schema: string, tableId: number, keep: 'none' | 'pgoutput' = 'none'): Promise<void> {
  const res = await db.query<{ rel: string; tgname: string }>(
    `select quote_ident(n.nspname) || '.' || quote_ident(c.relname) as rel, g.tgname
       from pg_trigger g join pg_proc f on f.oid = g.tgfoid join pg_class c on c.oid = g.tgrelid join pg_namespace n on n.oid = c.relnamespace
      where f.pronamespace = $1::regnamespace and f.proname in ($2, $3) and g.tgparentid = 0`,
    [quoteIdent(schema), captureFunctionName(tableId), guardFunctionName(tableId)],
  );
  const partitioned = res.rows.some((r) => r.tgname === triggerName(schema, 'g'));
  const kept = keep === 'pgoutput' && partitioned ? new Set(['t', 'b', 'g'].map((op) => triggerName(schema, op as 't' | 'b' | 'g'))) : new Set<string>();
  for (const r of res.rows) {
    if (!kept.has(r.tgname)) await db.query(`drop trigger if exists ${quoteIdent(r.tgname)} on ${r.rel}`);
  }
  if (kept.size === 0) await db.query(dropFunctionSql(schema, tableId));
}
