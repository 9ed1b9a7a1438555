// SQL for the capture triggers of one table (pure: builds text, runs nothing).
//
// One plpgsql function per table, fired by four statement-level triggers. INSERT and UPDATE read
// the statement's transition tables and write all events of the statement with one set-based
// insert; that costs far less than a row trigger on bulk statements. An UPDATE that changes keys
// writes a delete for each old key absent from the new rows, then an upsert for every new row:
// applied in order, that gives the right final state even when one statement swaps keys.
//
// The function is SECURITY DEFINER (the application's roles need no grant on the outbox) with a
// fixed search_path (a schema planted earlier on a caller's path cannot hijack it) and fixed output
// settings, so that the JSON of a value never depends on the writing session (TimeZone above all:
// the same instant must give the same key text in every session).
//
// A shaped table (table-shape.ts) gets its row image from row-image.ts (columns left out or
// hashed) and a row predicate: INSERT writes only new rows that pass; UPDATE writes a delete for
// every old row that passed and whose key is not among the new rows that pass (the key changed, or
// the row left the filter), then an upsert for every new row that passes (a row that enters the
// filter arrives as an upsert); DELETE writes only old rows that passed. The predicate names the
// table's columns unqualified, so the function resolves names to columns first
// (`#variable_conflict use_column`) and its own variables are always qualified by the block label.
import type { TableShape } from '../table-shape.js';
import { qualify, quoteIdent, quoteLiteral } from '../identifiers.js';
import { captureFunctionName, triggerName, wakeupChannel } from './names.js';
import { rowFilterSql, rowImageSql, sourceTimeSql } from './row-image.js';

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
}

function dollarTag(body: string): string {
  let n = 0;
  while (body.includes(`$pg2crate${n}$`)) n++;
  return `$pg2crate${n}$`;
}

export function captureFunctionSql(schema: string, t: CaptureTarget): string {
  const outbox = qualify(schema, 'outbox');
  const state = qualify(schema, 'state');
  const keyObject = (alias: string) =>
    `jsonb_build_object(${t.keyColumns.map((c) => `${quoteLiteral(c)}, ${alias}.${quoteIdent(c)}`).join(', ')})`;
  const eq = t.keyOrigin === 'primary key' ? '=' : 'is not distinct from';
  const sameKey = t.keyColumns.map((c) => `n.${quoteIdent(c)} ${eq} o.${quoteIdent(c)}`).join(' and ');
  const id = String(t.tableId);
  const shape = t.shape ?? null;
  if (shape?.includeColumns && t.relid === undefined) throw new TypeError('a capture with includeColumns needs the table oid');
  // `n.*`, not `n`: a bare `n` means the table's column "n" when it has one, not the row.
  const image = rowImageSql(schema, { id: t.tableId, relid: t.relid ?? 0, shape }, 'n');
  const filtered = shape?.where !== undefined;
  const pass = rowFilterSql(shape);
  const at = sourceTimeSql(shape);
  const into = `insert into ${outbox} (gen, table_id, op, data${at.column})`;
  const gen = 'pg2crate_capture.v_gen';
  const body = `
#variable_conflict use_column
<<pg2crate_capture>>
declare
  v_gen smallint;
  v_idle boolean;
begin
  select s.gen, s.idle into pg2crate_capture.v_gen, pg2crate_capture.v_idle from ${state} s;
  if tg_op = 'INSERT' then
    ${into} select ${gen}, ${id}, 'I', ${image.expr}${at.value} from pg2crate_new n${image.lateral}${filtered ? ` where ${pass}` : ''};
  elsif tg_op = 'UPDATE' then
    ${into}
      select ${gen}, ${id}, 'D', ${keyObject('o')}${at.value} from pg2crate_old o
      where ${filtered ? `${pass} and ` : ''}not exists (select from pg2crate_new n where ${sameKey}${filtered ? ` and ${pass}` : ''});
    ${into} select ${gen}, ${id}, 'U', ${image.expr}${at.value} from pg2crate_new n${image.lateral}${filtered ? ` where ${pass}` : ''};
  elsif tg_op = 'DELETE' then
    ${into} select ${gen}, ${id}, 'D', ${keyObject('o')}${at.value} from pg2crate_old o${filtered ? ` where ${pass}` : ''};
  else
    ${into} values (${gen}, ${id}, 'T', null${at.value});
  end if;
  if pg2crate_capture.v_idle then
    perform pg_notify(${quoteLiteral(wakeupChannel(schema))}, '');
  end if;
  return null;
end
`;
  const q = dollarTag(body);
  const fn = qualify(schema, captureFunctionName(t.tableId));
  return `create or replace function ${fn}() returns trigger
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC'
set datestyle = 'ISO, YMD'
set intervalstyle = 'postgres'
set extra_float_digits = 1
set bytea_output = 'hex'
as ${q}${body}${q};
revoke all on function ${fn}() from public;`;
}

/** Statements that (re)create the four triggers; run after captureFunctionSql in one transaction. */
export function createTriggersSql(schema: string, t: CaptureTarget): string[] {
  const table = qualify(t.sourceSchema, t.sourceTable);
  const fn = qualify(schema, captureFunctionName(t.tableId));
  const trg = (op: 'i' | 'u' | 'd' | 't') => quoteIdent(triggerName(schema, op));
  return [
    ...dropTriggersSql(schema, t.sourceSchema, t.sourceTable),
    `create trigger ${trg('i')} after insert on ${table} referencing new table as pg2crate_new for each statement execute function ${fn}()`,
    `create trigger ${trg('u')} after update on ${table} referencing old table as pg2crate_old new table as pg2crate_new for each statement execute function ${fn}()`,
    `create trigger ${trg('d')} after delete on ${table} referencing old table as pg2crate_old for each statement execute function ${fn}()`,
    `create trigger ${trg('t')} after truncate on ${table} for each statement execute function ${fn}()`,
  ];
}

export function dropTriggersSql(schema: string, sourceSchema: string, sourceTable: string): string[] {
  const table = qualify(sourceSchema, sourceTable);
  return (['i', 'u', 'd', 't'] as const).map((op) => `drop trigger if exists ${quoteIdent(triggerName(schema, op))} on ${table}`);
}

export function dropFunctionSql(schema: string, tableId: number): string {
  return `drop function if exists ${qualify(schema, captureFunctionName(tableId))}()`;
}
