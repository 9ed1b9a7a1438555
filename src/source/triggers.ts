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
import { qualify, quoteIdent, quoteLiteral } from '../identifiers.js';
import { captureFunctionName, triggerName, wakeupChannel } from './names.js';

export interface CaptureTarget {
  tableId: number;
  sourceSchema: string;
  sourceTable: string;
  keyColumns: string[];
  /** configured keys may hold NULLs; primary keys never do */
  keyOrigin: 'primary key' | 'config';
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
  // `n.*`, not `n`: a bare `n` means the table's column "n" when it has one, not the row.
  const body = `
#variable_conflict use_variable
declare
  v_gen smallint;
  v_idle boolean;
begin
  select s.gen, s.idle into v_gen, v_idle from ${state} s;
  if tg_op = 'INSERT' then
    insert into ${outbox} (gen, table_id, op, data) select v_gen, ${id}, 'I', to_jsonb(n.*) from pg2crate_new n;
  elsif tg_op = 'UPDATE' then
    insert into ${outbox} (gen, table_id, op, data)
      select v_gen, ${id}, 'D', ${keyObject('o')} from pg2crate_old o
      where not exists (select from pg2crate_new n where ${sameKey});
    insert into ${outbox} (gen, table_id, op, data) select v_gen, ${id}, 'U', to_jsonb(n.*) from pg2crate_new n;
  elsif tg_op = 'DELETE' then
    insert into ${outbox} (gen, table_id, op, data) select v_gen, ${id}, 'D', ${keyObject('o')} from pg2crate_old o;
  else
    insert into ${outbox} (gen, table_id, op, data) values (v_gen, ${id}, 'T', null);
  end if;
  if v_idle then
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
