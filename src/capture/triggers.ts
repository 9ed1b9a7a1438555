// SQL for the capture triggers of one table (pure: builds text, runs nothing).
//
// One plpgsql function per table, fired by four statement-level triggers. INSERT and UPDATE read
// the statement's transition tables and write all events of the statement with one set-based
// insert; that costs far less than a row trigger on bulk statements. An UPDATE that changes keys
// writes a delete for each old key absent from the new rows, then an upsert for every new row:
// applied in order, that gives the right final state even when one statement swaps keys.
//
// The function is SECURITY DEFINER (the application's roles need no grant on the outbox). Nothing
// the caller plants on its search_path may reach it: the function of a plain table names every
// function, operator and type schema-qualified (pg_catalog.to_json, OPERATOR(pg_catalog.=),
// ::pg_catalog.text) and so runs on the caller's path, since a SET search_path clause costs every
// call a parse, apply, namespace lookup and undo (issue 11: about a fifth of the function's CPU on
// a one-row UPDATE). A shaped table's function (a predicate, column filters, hashing, source time)
// holds SQL that names things unqualified, and keeps `SET search_path = pg_catalog, pg_temp`.
// (Relations are qualified; the transition tables are found before any schema is searched.)
//
// The JSON of a value must never depend on the writing session (TimeZone above all: the same
// instant must give the same key text in every session), but fixing five output settings as SET
// clauses costs every call a parse, apply and undo of each. So the body checks them instead (five
// lookups): a session whose settings already give the canonical JSON (the defaults do) writes as
// it is; any other gets the canonical ones for the call, and its own back before the function
// returns. Both with set_config(…, true): a SET clause undoes at exit only the settings it names
// itself, so a transaction-local change made in the body would otherwise stay until the writer's
// transaction ends, and set back the same way, the session cannot tell (within the transaction,
// after commit, after a rollback to a savepoint) that anything happened. An error in between
// aborts the (sub)transaction, which restores them anyway.
//
// One SQL statement per call: the generation and the idle flag come from the state row in an
// InitPlan of the outbox insert (evaluated once, when the first event is written; it notifies on
// the way when the drainer is idle), and an UPDATE writes its key-change deletes and its upserts in
// one INSERT … UNION ALL (the branches run in order, so the deletes take the smaller ids). A
// statement that writes no event reads nothing and notifies nobody.
//
// The deletes of an UPDATE are the old keys EXCEPT the new ones. Not an anti-join: plpgsql keeps
// the plan made at the function's first call in a session, sized for the transition tables of that
// call, and a nested-loop anti-join planned for one row then runs quadratically on the next bulk
// UPDATE (30,000 rows: 55 s instead of 0.6 s). A set operation hashes or sorts, whatever it was
// planned for. It compares with the key type's own equality (whatever its schema, so nothing is
// looked up on the caller's path) and NULL matches NULL, as IS NOT DISTINCT FROM does for a
// configured key.
//
// A shaped table (table-shape.ts) gets its row image from row-image.ts (columns left out or
// hashed) and a row predicate: INSERT writes only new rows that pass; UPDATE writes a delete for
// every old row that passed and whose key is not among the new rows that pass (the key changed, or
// the row left the filter), then an upsert for every new row that passes (a row that enters the
// filter arrives as an upsert); DELETE writes only old rows that passed. The predicate names the
// table's columns unqualified, so the function resolves names to columns first
// (`#variable_conflict use_column`) and its own variables are always qualified by the block label.
import { capturesSourceTime, shapesImage, type TableShape } from '../core/table-shape.js';
import { displayName, qualify, quoteIdent, quoteLiteral } from '../core/identifiers.js';
import { captureFunctionName, guardFunctionName, triggerName, wakeupChannel } from './names.js';
import { rowFilterSql, rowImageSql, sourceTimeSql, type RowImageSql } from './row-image.js';

export interface CaptureTarget {
  tableId: number;
  sourceSchema: string;
  sourceTable: string;
  keyColumns: string[];
  /** configured keys may hold NULLs; primary keys never do */
  keyOrigin: 'primary key' | 'config';
  /** the table's oid (needed with includeColumns) */
  relid?: number;
  /** column filters, hashing, predicate, source time; absent: the whole row, every row */
  shape?: TableShape | null;
  /** set when the table is partitioned: its oid (capture-install.ts fills it in from the catalog) */
  partitionRoot?: number;
  /**
   * The excluded and hashed columns that the table has, with their attnums at install time
   * (capture-install.ts reads them from the catalog): needed when the shape excludes or hashes.
   */
  guardedColumns?: readonly GuardedColumn[];
  /**
   * Per key column, the schema of its type's `=` (capture-install.ts reads it from the catalog:
   * citext's is not pg_catalog's); absent: pg_catalog for every key column.
   */
  keyEqualitySchemas?: readonly string[];
}

export interface GuardedColumn {
  name: string;
  attnum: number;
}

function dollarTag(body: string): string {
  let n = 0;
  while (body.includes(`$pg2crate${n}$`)) n++;
  return `$pg2crate${n}$`;
}

/** The key of row `alias` as the json object a delete event carries. */
function keyObjectSql(keyColumns: readonly string[], alias: string): string {
  return `pg_catalog.json_build_object(${keyColumns.map((c) => `${quoteLiteral(c)}, ${alias}.${quoteIdent(c)}`).join(', ')})`;
}

/**
 * The image of row `alias.*` as the outbox's json. `alias.*`, not `alias`: a bare `n` means the
 * table's column "n" when it has one, not the row. The outbox holds json text (migrations/000012):
 * to_json writes it at once, with the same values as to_jsonb. A shaped image is built as jsonb
 * (row-image.ts: its operators are jsonb's) and cast.
 */
function outboxImageSql(schema: string, t: CaptureTarget, alias: string): RowImageSql {
  const shape = t.shape ?? null;
  if (!shape || !shapesImage(shape)) return { expr: `pg_catalog.to_json(${alias}.*)`, lateral: '' };
  const shaped = rowImageSql(schema, { id: t.tableId, relid: t.relid ?? 0, shape }, alias, true);
  return { ...shaped, expr: `(${shaped.expr})::pg_catalog.json` };
}

/** The output settings every capture function writes under, in the order the guard saves them. */
export const CANONICAL_SETTINGS: readonly (readonly [string, string])[] = [
  ['TimeZone', 'UTC'], ['DateStyle', 'ISO, YMD'], ['IntervalStyle', 'postgres'], ['extra_float_digits', '1'], ['bytea_output', 'hex'],
];

// Every name below is written schema-qualified, operators too (`OPERATOR(pg_catalog.=)`): the
// function of a plain table runs on the writer's search_path (see the top of the file).
const EQ = 'OPERATOR(pg_catalog.=)';

/**
 * True when the session's settings give exactly the JSON the canonical ones give. ISO output does
 * not depend on DateStyle's field order, every extra_float_digits above 0 gives the shortest exact
 * text, and Etc/UTC is UTC. A row predicate may hold literals, though, whose reading depends on the
 * field order (`'01/02/2024'`): with one, DateStyle must be the canonical one exactly.
 */
export function canonicalSettingsSql(withPredicate: boolean): string {
  const setting = (name: string) => `pg_catalog.current_setting(${quoteLiteral(name)})`;
  return `${setting('TimeZone')} ${EQ} any ('{UTC,Etc/UTC}'::pg_catalog.text[])
      and ${setting('DateStyle')} ${withPredicate ? `${EQ} 'ISO, YMD'` : `OPERATOR(pg_catalog.~~) 'ISO,%'`}
      and ${setting('IntervalStyle')} ${EQ} 'postgres'
      and ${setting('extra_float_digits')}::pg_catalog.int4 OPERATOR(pg_catalog.>) 0
      and ${setting('bytea_output')} ${EQ} 'hex'`;
}

/** Sets the canonical output settings unless the session's already give the same JSON, keeping the session's in `saved`. */
export function settingsGuardSql(saved: string, withPredicate: boolean): string {
  return `if not (${canonicalSettingsSql(withPredicate)}) then
    ${saved} := array[${CANONICAL_SETTINGS.map(([k]) => `pg_catalog.current_setting(${quoteLiteral(k)})`).join(', ')}];
    perform ${CANONICAL_SETTINGS.map(([k, v]) => `pg_catalog.set_config(${quoteLiteral(k)}, ${quoteLiteral(v)}, true)`).join(', ')};
  end if;`;
}

/** Gives the session its own settings back, if settingsGuardSql changed them. */
export function settingsRestoreSql(saved: string): string {
  return `if ${saved} is not null then
    perform ${CANONICAL_SETTINGS.map(([k], i) => `pg_catalog.set_config(${quoteLiteral(k)}, ${saved}[${i + 1}], true)`).join(', ')};
  end if;`;
}

/**
 * Whether the function needs a fixed search_path: a shape brings SQL that names things unqualified
 * (the user's predicate, the image's column filters and hashing, now()). A plain table's function
 * names everything qualified and runs on the writer's path, which saves a SET and its undo per call.
 */
export function needsSearchPath(shape: TableShape | null | undefined): boolean {
  return !!shape && (shapesImage(shape) || shape.where !== undefined || capturesSourceTime(shape));
}

export function captureFunctionSql(schema: string, t: CaptureTarget): string {
  const outbox = qualify(schema, 'outbox');
  const state = qualify(schema, 'state');
  const keyObject = (alias: string) => keyObjectSql(t.keyColumns, alias);
  const keyList = (alias: string) => t.keyColumns.map((c) => `${alias}.${quoteIdent(c)}`).join(', ');
  const id = String(t.tableId);
  const shape = t.shape ?? null;
  if (shape?.includeColumns && t.relid === undefined) throw new TypeError('a capture with includeColumns needs the table oid');
  const pinned = needsSearchPath(shape);
  const image = outboxImageSql(schema, t, 'n');
  const filtered = shape?.where !== undefined;
  const pass = rowFilterSql(shape);
  const at = sourceTimeSql(shape);
  const guard = renamedColumnGuardSql(t);
  const into = `insert into ${outbox} (gen, table_id, op, data${at.column})`;
  // The generation, from an uncorrelated subquery (an InitPlan: run once, when the first event is
  // written); it notifies on the way while the drainer is idle (pg_notify returns void, whose text
  // is '', so the condition is true either way).
  const gen = `(select s.gen from ${state} s where case when s.idle then pg_catalog.pg_notify(${quoteLiteral(wakeupChannel(schema))}, '')::pg_catalog.text is not null else true end)`;
  const saved = 'pg2crate_capture.v_saved';
  const op = (name: string) => `tg_op ${EQ} '${name}'`;
  const root = t.partitionRoot;
  const nested = nestedWritesSql(schema, t, { into, gen, id, at: at.value, filtered, pass });
  const body = `
#variable_conflict use_column
<<pg2crate_capture>>
declare
  v_nested pg_catalog.text := pg_catalog.current_setting(${quoteLiteral(NESTED_SETTING)}, true);
  v_saved pg_catalog.text[];${guard ? `
  v_renamed pg_catalog.text;` : ''}${root !== undefined ? `
  v_rel pg_catalog.text;` : ''}
begin${root !== undefined ? `
  ${detachedGuardSql(root)}` : ''}
  ${settingsGuardSql(saved, filtered)}
  if v_nested ${EQ} 'on' and tg_op ${NE} 'TRUNCATE' then${guard}
    ${nested}
  elsif ${op('INSERT')} then${guard}
    ${into} select ${gen}, ${id}, 'I', ${image.expr}${at.value} from pg2crate_new n${image.lateral}${filtered ? ` where ${pass}` : ''};
  elsif ${op('UPDATE')} then${guard}
    ${into}
      select ${gen}, ${id}, 'D', ${keyObject('o')}${at.value}
        from (select ${keyList('o')} from pg2crate_old o${filtered ? ` where ${pass}` : ''} except select ${keyList('n')} from pg2crate_new n${filtered ? ` where ${pass}` : ''}) o
      union all
      select ${gen}, ${id}, 'U', ${image.expr}${at.value} from pg2crate_new n${image.lateral}${filtered ? ` where ${pass}` : ''};
  elsif ${op('DELETE')} then
    ${into} select ${gen}, ${id}, 'D', ${keyObject('o')}${at.value} from pg2crate_old o${filtered ? ` where ${pass}` : ''};
  else${root !== undefined ? `
    ${partitionTruncateSql(schema, root, into, gen, id, keyObject('o'), at.value, filtered ? ` where ${pass}` : '')}` : `
    ${into} values (${gen}, ${id}, 'T', null${at.value});`}
  end if;
  if pg_catalog.pg_trigger_depth() ${GT} 1 then
    perform pg_catalog.set_config(${quoteLiteral(NESTED_SETTING)}, 'on', true);
  elsif v_nested ${EQ} 'on' then
    perform pg_catalog.set_config(${quoteLiteral(NESTED_SETTING)}, '', true);
  end if;
  ${settingsRestoreSql(saved)}
  return null;
end
`;
  const q = dollarTag(body);
  const fn = qualify(schema, captureFunctionName(t.tableId));
  return `create or replace function ${fn}() returns trigger
language plpgsql security definer
${pinned ? 'set search_path = pg_catalog, pg_temp\n' : ''}as ${q}${body}${q};
revoke all on function ${fn}() from public;`;
}

// Writes made inside a captured statement by the application's own triggers. A statement's events
// come from its transition tables when its AFTER STATEMENT trigger fires, which is after every
// AFTER ROW trigger of the statement (and after the application's AFTER STATEMENT triggers whose
// names sort first). When one of those writes rows of a captured table, that nested statement's
// capture fires first and writes the newer images; the outer capture then wrote the older images
// from its transition table after them, and the target kept the older row. So a capture that runs
// inside another trigger (pg_trigger_depth() > 1) marks the transaction (a transaction-local
// setting), and every capture that finds the mark writes, for each key its statement touched, the
// row as it is now (read from the table, an 'U') or a delete where it is gone (or fails the
// predicate); the outermost capture (depth 1) clears the mark. Its events come after the nested
// ones, so the last event of each key is its current state. A capture without the mark, the usual
// case, only reads the setting. The mark is also left by a nested write whose outer statement is
// not captured; the next capture then takes this path once, which is correct, only slower. The
// lookups use the key type's own `=`, named with its schema (keyEqualitySchemas), and read the whole
// table through its root, where a nested write may have moved a row to another partition. An
// UPDATE's old and new keys are one set (UNION: the type's default equality, as EXCEPT above); a
// key written twice by one statement (a configured key without a unique index) is sent twice, the
// same current state.
export const NESTED_SETTING = 'pg2crate.nested_write';
const GT = 'OPERATOR(pg_catalog.>)';

function nestedWritesSql(schema: string, t: CaptureTarget, w: { into: string; gen: string; id: string; at: string; filtered: boolean; pass: string }): string {
  const q = quoteIdent;
  const list = (alias: string) => t.keyColumns.map((c) => `${alias}.${q(c)}`).join(', ');
  const match = t.keyColumns.map((c, i) => {
    const nsp = t.keyEqualitySchemas?.[i] ?? 'pg_catalog';
    const eq = `t.${q(c)} OPERATOR(${nsp === 'pg_catalog' ? nsp : q(nsp)}.=) k.${q(c)}`;
    // configured keys may hold NULLs, which match each other as a key (EXCEPT above does the same)
    return t.keyOrigin === 'config' ? `(${eq} or (t.${q(c)} is null and k.${q(c)} is null))` : eq;
  }).join(' and ');
  const image = outboxImageSql(schema, t, 't');
  const write = (keysFrom: string) => `${w.into}
      select ${w.gen}, ${w.id}, case when l.found then 'U' else 'D' end, case when l.found then l.image else ${keyObjectSql(t.keyColumns, 'k')} end${w.at}
        from (${keysFrom}) k
        left join lateral (select true as found, ${image.expr} as image from ${qualify(t.sourceSchema, t.sourceTable)} t${image.lateral}
                            where ${match}${w.filtered ? ` and ${w.pass}` : ''} limit 1) l on true;`;
  return `if tg_op ${EQ} 'INSERT' then
      ${write(`select ${list('n')} from pg2crate_new n`)}
    elsif tg_op ${EQ} 'UPDATE' then
      ${write(`select ${list('o')} from pg2crate_old o union select ${list('n')} from pg2crate_new n`)}
    else
      ${write(`select ${list('o')} from pg2crate_old o`)}
    end if;`;
}

/**
 * Excluded and hashed columns are left out or hashed BY NAME (row-image.ts): after `ALTER TABLE …
 * RENAME COLUMN ssn TO social` the image would carry the raw values under the new name. So the
 * function of a table that excludes or hashes columns refuses to write an image (INSERT, UPDATE)
 * while one of those columns, found by the attnum it had when the function was made, is a column
 * under another name: the application's write fails with a message that says what to do, until the
 * watch captures the table again under the new name (ops/key-watch.ts, within a second while the
 * replicator runs) or `tables add` does. A column dropped (attisdropped) leaks nothing and fails
 * nothing; one added again under the listed name is left out by name. One index lookup per listed
 * column and statement, on the root's attributes: a partition's columns are renamed with the root's.
 * DELETE writes keys only, and TRUNCATE no row, so neither is checked.
 */
function renamedColumnGuardSql(t: CaptureTarget): string {
  const shape = t.shape;
  if (!shape || (shape.excludeColumns === undefined && shape.hashColumns.length === 0)) return '';
  if (t.guardedColumns === undefined || t.relid === undefined) throw new TypeError('a capture that excludes or hashes columns needs their attnums and the table oid');
  if (t.guardedColumns.length === 0) return '';
  const listed = t.guardedColumns.map((c) => `(${Number(c.attnum)}::pg_catalog.int2, ${quoteLiteral(c.name)}::pg_catalog.name)`).join(', ');
  const fix = 'the write is refused so that its values do not leave the database under the new name. pg2crate captures the table again under the new name ' +
    `within a second while the replicator runs, or run \`pg2crate tables add ${t.sourceSchema}.${t.sourceTable}\`; rename it in the configuration file too`;
  const v = 'pg2crate_capture.v_renamed';
  // The test is one index scan with nothing to aggregate; the message is made only when it fails.
  const attnums = `array[${t.guardedColumns.map((c) => Number(c.attnum)).join(', ')}]::pg_catalog.int2[]`;
  const pairs = `array[${t.guardedColumns.map((c) => quoteLiteral(`${Number(c.attnum)}:${c.name}`)).join(', ')}]::pg_catalog.text[]`;
  return `
    if exists (select from pg_catalog.pg_attribute a
                where a.attrelid ${EQ} ${Number(t.relid)}::pg_catalog.oid and a.attnum ${EQ} any (${attnums}) and not a.attisdropped
                  and (a.attnum::pg_catalog.text ${CAT} ':' ${CAT} a.attname::pg_catalog.text) ${NE} all (${pairs})) then
      select pg_catalog.string_agg(pg_catalog.format('%I (now %I)', c.listed, a.attname), ', ') into ${v}
        from (values ${listed}) c(attnum, listed)
        join pg_catalog.pg_attribute a on a.attrelid ${EQ} ${Number(t.relid)}::pg_catalog.oid and a.attnum ${EQ} c.attnum
                                        and not a.attisdropped and a.attname ${NE} c.listed;
      raise exception 'pg2crate: a column of % that pg2crate leaves out or hashes (excludeColumns, hashColumns) was renamed: %; %',
        ${quoteLiteral(displayName(t.sourceSchema, t.sourceTable))}, ${v}, ${quoteLiteral(fix)} using errcode = 'object_not_in_prerequisite_state';
    end if;`;
}

// A partitioned table (the README's "Partitioned tables" has every case). Statement triggers fire only on the
// relation a statement names, so the root and every partition at every level carry the same
// statement triggers, calling the same function: a write through any name is captured once.
//
// A partition is no longer part of the table once detached, but keeps the triggers created on it:
// the function returns at once on a relation outside the root's tree (until the partition watch
// drops those triggers). Checked before anything else, so it costs one catalog walk per statement.
function detachedGuardSql(root: number): string {
  return `if tg_relid ${NE} ${root}::pg_catalog.oid
     and coalesce(pg_catalog.pg_partition_root(tg_relid)::pg_catalog.oid, 0::pg_catalog.oid) ${NE} ${root}::pg_catalog.oid then
    return null;
  end if;`;
}

const NE = 'OPERATOR(pg_catalog.<>)';
const CAT = 'OPERATOR(pg_catalog.||)';

/**
 * TRUNCATE removes every row of the partition, also rows committed after the transaction's
 * snapshot. The deletes above are read under the snapshot of their statement: in READ COMMITTED one
 * taken after TRUNCATE's lock, when every writer of the partition has ended; in REPEATABLE READ or
 * SERIALIZABLE the transaction's own, older one, which misses such rows, and the target would keep
 * them. So there the partition's truncate is refused with what to do instead. The root's truncate
 * ('T': the whole table) does not depend on what the snapshot sees.
 */
const snapshotTruncateGuardSql = `if pg_catalog.current_setting('transaction_isolation') ${NE} 'read committed' then
            raise exception 'pg2crate: TRUNCATE of partition % in a % transaction is refused: it would also remove rows committed after the transaction began, which pg2crate cannot see to delete them from the target',
              tg_relid::pg_catalog.regclass, pg_catalog.upper(pg_catalog.current_setting('transaction_isolation'))
              using errcode = 'object_not_in_prerequisite_state',
                    hint = 'Truncate the partition in a READ COMMITTED transaction (the default), or DELETE its rows.';
          end if;`;

/**
 * TRUNCATE of a partitioned table. A TRUNCATE of the root fires the truncate triggers of the root
 * and of every partition, root first; a TRUNCATE of one partition (or of a sub-partitioned
 * partition) fires only those of that subtree, and must remove only its rows from the target. So
 * BEFORE the truncate, a partition writes a delete ('P', read as 'D') for each of its rows, unless
 * an ancestor truncated in the same statement covers it: each relation that acts is listed in
 * pg2crate.truncating for its transaction, which the later ones in the statement read, and AFTER
 * the truncate the list is emptied (every BEFORE trigger of a statement runs before any AFTER one).
 * A table only this function writes, not a setting the writer could set itself to hide a truncate.
 * The root writes its one 'T' after the truncate, as a plain table does. 'P' rather than 'D'
 * because in pgoutput mode the slot does not send a partition's truncate
 * (publish_via_partition_root), so these deletes must be applied even in a transaction whose other
 * changes the slot does send (outbox-events.ts). Every name is qualified: the function of a plain
 * shape runs on the writer's search_path.
 */
function partitionTruncateSql(schema: string, root: number, into: string, gen: string, id: string, keyObject: string, at: string, where: string): string {
  const listed = qualify(schema, 'truncating');
  const covered = `exists (select from ${listed} l, pg_catalog.pg_partition_ancestors(tg_relid) a
        where l.xid ${EQ} pg_catalog.pg_current_xact_id() and l.relid ${EQ} a::pg_catalog.oid)`;
  const deletes = `${into} select ${gen}, ${id}, 'P', ${keyObject}${at} from `;
  return `if tg_when ${EQ} 'BEFORE' then
      if not ${covered} then
        if tg_relid ${NE} ${root}::pg_catalog.oid then
          ${snapshotTruncateGuardSql}
          select pg_catalog.quote_ident(n.nspname) ${CAT} '.' ${CAT} pg_catalog.quote_ident(c.relname) into pg2crate_capture.v_rel
            from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid ${EQ} c.relnamespace where c.oid ${EQ} tg_relid;
          execute ${quoteLiteral(deletes)} ${CAT} pg2crate_capture.v_rel ${CAT} ${quoteLiteral(` o${where}`)};
        end if;
        insert into ${listed} (xid, relid) values (pg_catalog.pg_current_xact_id(), tg_relid);
      end if;
    else
      delete from ${listed} l where l.xid ${EQ} pg_catalog.pg_current_xact_id();
      if tg_relid ${EQ} ${root}::pg_catalog.oid then
        ${into} values (${gen}, ${id}, 'T', null${at});
      end if;
    end if;`;
}

/**
 * The guard of a partitioned table: a row trigger on the root, which Postgres clones onto every
 * partition, also onto each one created or attached later, in the same transaction. Once a
 * partition has its statement triggers its clone is disabled; until then (a partition the watch has
 * not reached yet) it records every key written into it, so that the watch can send those keys'
 * current state (partition-watch.ts). No write into a new partition goes unseen between its creation
 * and its first capture.
 */
export function guardFunctionSql(schema: string, t: CaptureTarget): string {
  const writes = qualify(schema, 'partition_writes');
  const keyObject = (alias: string) => keyObjectSql(t.keyColumns, alias);
  const body = `
begin
  if tg_op <> 'INSERT' then
    insert into ${writes} (table_id, relid, key) values (${t.tableId}, tg_relid, ${keyObject('old')});
  end if;
  if tg_op <> 'DELETE' then
    insert into ${writes} (table_id, relid, key) values (${t.tableId}, tg_relid, ${keyObject('new')});
  end if;
  return null;
end
`;
  const q = dollarTag(body);
  const fn = qualify(schema, guardFunctionName(t.tableId));
  return `create or replace function ${fn}() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as ${q}${body}${q};
revoke all on function ${fn}() from public;`;
}

export interface TriggerOptions {
  /** the relation to put the triggers on (a partition); default: the table itself */
  on?: { schema: string; table: string };
  /** the insert, update and delete triggers; false in pgoutput mode, where a partitioned table keeps only its truncate triggers */
  dml?: boolean;
  /**
   * ENABLE ALWAYS: the triggers fire also in a session with `session_replication_role = replica`
   * (a logical replication subscription's apply worker, a restore with triggers disabled), whose
   * writes would otherwise not be captured. Takes the table's owner (capture-install.ts checks).
   */
  always?: boolean;
}

type TriggerOp = 'i' | 'u' | 'd' | 't' | 'b';

/** Statements that (re)create the triggers on the table or one of its partitions; run after captureFunctionSql in one transaction. */
export function createTriggersSql(schema: string, t: CaptureTarget, opts: TriggerOptions = {}): string[] {
  const on = opts.on ?? { schema: t.sourceSchema, table: t.sourceTable };
  const table = qualify(on.schema, on.table);
  const fn = qualify(schema, captureFunctionName(t.tableId));
  const trg = (op: TriggerOp) => quoteIdent(triggerName(schema, op));
  const partitioned = t.partitionRoot !== undefined;
  const create: Record<TriggerOp, string> = {
    i: `create trigger ${trg('i')} after insert on ${table} referencing new table as pg2crate_new for each statement execute function ${fn}()`,
    u: `create trigger ${trg('u')} after update on ${table} referencing old table as pg2crate_old new table as pg2crate_new for each statement execute function ${fn}()`,
    d: `create trigger ${trg('d')} after delete on ${table} referencing old table as pg2crate_old for each statement execute function ${fn}()`,
    t: `create trigger ${trg('t')} after truncate on ${table} for each statement execute function ${fn}()`,
    b: `create trigger ${trg('b')} before truncate on ${table} for each statement execute function ${fn}()`,
  };
  const ops: TriggerOp[] = [...(opts.dml === false ? [] : ['i', 'u', 'd'] as const), ...(partitioned || opts.dml !== false ? ['t'] as const : []), ...(partitioned ? ['b'] as const : [])];
  return [
    ...dropTriggersSql(schema, on.schema, on.table),
    ...ops.map((op) => create[op]),
    // ONLY: the statement triggers of each partition are its own, made here, not clones to recurse to
    ...(opts.always ? ops.map((op) => `alter table only ${table} enable always trigger ${trg(op)}`) : []),
  ];
}

/** The guard row trigger on a partitioned table's root (cloned by Postgres onto its partitions). */
export function createGuardSql(schema: string, t: CaptureTarget): string[] {
  const table = qualify(t.sourceSchema, t.sourceTable);
  const g = quoteIdent(triggerName(schema, 'g'));
  return [
    `drop trigger if exists ${g} on ${table}`,
    `create trigger ${g} after insert or update or delete on ${table} for each row execute function ${qualify(schema, guardFunctionName(t.tableId))}()`,
  ];
}

export function dropTriggersSql(schema: string, sourceSchema: string, sourceTable: string): string[] {
  const table = qualify(sourceSchema, sourceTable);
  return (['i', 'u', 'd', 't', 'b'] as const).map((op) => `drop trigger if exists ${quoteIdent(triggerName(schema, op))} on ${table}`);
}

export function dropFunctionSql(schema: string, tableId: number): string {
  return `drop function if exists ${qualify(schema, captureFunctionName(tableId))}(); drop function if exists ${qualify(schema, guardFunctionName(tableId))}()`;
}
