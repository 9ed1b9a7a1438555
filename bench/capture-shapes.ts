// Alternative capture functions for bench/capture-variants.ts, written out as plain SQL (pure: builds
// text, runs nothing). Each shape is a point in a small space of choices, so that one run can tell
// what each choice costs on its own:
//   level      statement triggers with transition tables (what ships), row triggers, an empty
//              trigger (a floor: what calling a trigger at all costs), or a bare one (a floor: one
//              INSERT of the image into outbox_0, nothing else: no state row, no notify, no key
//              changes, no deletes' keys; not a candidate)
//              `handmade`: the hand-written outbox of capture-common.ts (HANDMADE_SQL) as a row
//              trigger on the table, nothing else (the reference the ladder starts from)
//   settings   `proconfig`: SECURITY DEFINER with search_path and five output settings as SET
//              clauses (what shipped before issue 11: each one is applied and undone on every call);
//              `guard`: SET search_path only, and the body checks the five settings and changes
//              them only when the writing session's differ from the canonical ones, with
//              set_config(…, true), and sets the session's back before returning (the guard of
//              src/source/triggers.ts, which explains why the setting back is needed; what ships
//              for shaped tables; a plain table's function has no SET clause at all);
//              `path-only`: SET search_path only, no guard (a floor, not a candidate: the JSON then
//              depends on the session); `secdef`: SECURITY DEFINER without any SET (a floor: not
//              safe, the caller's search_path applies); `none`: no SECURITY DEFINER, no SET (a floor)
//   body       `plpgsql`: read the state row, then one INSERT … SELECT per kind of event, then
//              notify (what shipped before issue 11); `cte`: one statement (state, insert and
//              notify in one query); `initplan`: one INSERT per call whose generation is a scalar
//              subquery on the state row (an InitPlan: run once per statement, and only if a row is
//              written) that also notifies when the drainer is idle (what ships since issue 11)
//   keyChange  `anti-join`: UPDATE writes a delete for each old key absent from the new rows (what
//              ships; needs the OLD transition table); `row-trigger`: an extra row trigger
//              `AFTER UPDATE OF <key columns> … WHEN (old key is distinct from new key)` writes the
//              delete, and the statement trigger needs only the NEW table (not for partitioned
//              tables: a cross-partition move fires no row UPDATE trigger)
//   into       `parent`: insert into pg2crate.outbox and let Postgres route to the generation's
//              partition (what ships); `partition`: insert into outbox_<gen> directly, chosen by
//              an IF on the generation read first (plpgsql body only: `cte` always writes the parent)
//   sink       for level `floor` only: a statement trigger (no SECURITY DEFINER, no SET, no state
//              row, constant generation 0) that writes one event per row for INSERT and UPDATE (the
//              image) and DELETE (the key), into: `outbox_0` (the partition: its index on id, an id
//              from the CACHE 1 sequence, the xid8 default); `heap`, a bench table of the same
//              columns without any index (bench_floor.heap; ids from a CACHE 1 sequence of its
//              own); `heap-no-nextval`, the same with a constant id; `heap-no-xid`, also a constant
//              xid; `heap-no-image`, also no jsonb (data NULL); `read`: nothing written, the
//              transition table only counted. Each step down the ladder prices one component.
//              `chunked`: into outbox_0, one event row per slice of CHUNK_ROWS rows of the statement
//              (jsonb_agg of the images, or of the keys for DELETE): what fewer outbox rows would
//              save on bulk statements (issue 21; the drainer cannot read such rows).
//   body `seqlock` (bare shapes only): the generation from a sequence (pg_sequence_last_value, no
//              table read) and the wake-up decided by probing an advisory lock the drainer would
//              hold while idle (pg_try_advisory_lock_shared, released at once), in an InitPlan as
//              `initplan`: what a state row read costs against the cheapest alternatives (issue 21).
// The bench tables have no row filter, column filter or hashing (issue 12): those keep their own SQL.
import { qualify, quoteIdent, quoteLiteral } from '../src/core/identifiers.js';
import { captureFunctionName, wakeupChannel } from '../src/capture/names.js';
import { settingsGuardSql, settingsRestoreSql } from '../src/capture/triggers.js';

export interface ShapeTable {
  id: number;
  schema: string;
  table: string;
  keyColumns: string[];
  keyOrigin: 'primary key' | 'config';
}

export interface Shape {
  level: 'statement' | 'row' | 'empty-row' | 'empty-statement' | 'bare-row' | 'bare-statement' | 'floor' | 'handmade';
  settings: 'proconfig' | 'guard' | 'path-only' | 'secdef' | 'none';
  body: 'plpgsql' | 'cte' | 'initplan' | 'seqlock';
  keyChange: 'anti-join' | 'row-trigger';
  into: 'parent' | 'partition';
  sink?: 'outbox_0' | 'heap' | 'heap-no-nextval' | 'heap-no-xid' | 'heap-no-image' | 'read' | 'chunked';
}

const TOOL = 'pg2crate';
/** every trigger name any shape uses, so that installing one shape removes the others */
export const TRIGGER_NAMES = [...['i', 'u', 'd', 't', 'k', 'r'].map((op) => `pg2crate_capture_${op}`), 'handmade_capture', 'pgq_capture'];

/** The guard of src/source/triggers.ts, on an unlabelled variable `v_saved`; the restore goes before every `return null`. */
const SETTINGS_GUARD_SQL = `  ${settingsGuardSql('v_saved', false)}\n`;
const SETTINGS_RESTORE_SQL = `${settingsRestoreSql('v_saved')}\n  `;

/** Bench tables the floor shapes write into (capture-variants.ts creates them once). */
export const FLOOR_SETUP_SQL = [
  'create schema bench_floor',
  'create sequence bench_floor.seq as bigint cache 1',
  `create table bench_floor.heap (id bigint not null default nextval('bench_floor.seq'), gen smallint not null, xid xid8 not null default pg_current_xact_id(),
    table_id integer not null, op "char" not null, data jsonb, source_time timestamptz)`,
  'create sequence bench_floor.gen as smallint minvalue 0 maxvalue 2 start 0',
  `select setval('bench_floor.gen', 0, true)`,
];

/** Rows per event row of the `chunked` floor. */
export const CHUNK_ROWS = 500;

function proconfig(settings: Shape['settings']): string {
  if (settings === 'none') return '';
  if (settings === 'secdef') return 'security definer\n';
  const lines = ['security definer', 'set search_path = pg_catalog, pg_temp'];
  if (settings === 'proconfig') lines.push(`set timezone = 'UTC'`, `set datestyle = 'ISO, YMD'`, `set intervalstyle = 'postgres'`, 'set extra_float_digits = 1', `set bytea_output = 'hex'`);
  return lines.join('\n') + '\n';
}

/** Statements that install `shape` on table `t` (drop every capture trigger, replace the function, create its triggers). */
export function installShapeSql(t: ShapeTable, shape: Shape): string[] {
  const table = qualify(t.schema, t.table);
  const fn = qualify(TOOL, captureFunctionName(t.id));
  const drops = TRIGGER_NAMES.map((n) => `drop trigger if exists ${quoteIdent(n)} on ${table}`);
  // With the guard, the session's settings go back before every return.
  const body = shape.settings === 'guard'
    ? functionBody(t, shape).replace(/^declare\n/, 'declare\n  v_saved text[];\n').replace(/^begin\n/, 'declare\n  v_saved text[];\nbegin\n').replaceAll('return null;', `${SETTINGS_RESTORE_SQL}return null;`)
    : functionBody(t, shape);
  const fnSql = `create or replace function ${fn}() returns trigger language plpgsql\n${proconfig(shape.settings)}as $pg2crate$\n${body}$pg2crate$`;
  const trg = (op: string) => quoteIdent(`pg2crate_capture_${op}`);
  const exec = `execute function ${fn}()`;
  const creates: string[] = [];
  if (shape.level === 'statement' || shape.level === 'empty-statement' || shape.level === 'bare-statement' || shape.level === 'floor') {
    const rowKey = (shape.level === 'statement' && shape.keyChange === 'row-trigger') || shape.level === 'bare-statement';
    creates.push(
      `create trigger ${trg('i')} after insert on ${table} referencing new table as pg2crate_new for each statement ${exec}`,
      `create trigger ${trg('u')} after update on ${table} referencing ${rowKey ? '' : 'old table as pg2crate_old '}new table as pg2crate_new for each statement ${exec}`,
      `create trigger ${trg('d')} after delete on ${table} referencing old table as pg2crate_old for each statement ${exec}`,
      `create trigger ${trg('t')} after truncate on ${table} for each statement ${exec}`,
    );
    if (rowKey) {
      const changed = t.keyColumns.map((c) => `old.${quoteIdent(c)} is distinct from new.${quoteIdent(c)}`).join(' or ');
      if (shape.level === 'statement') creates.push(`create trigger ${trg('k')} after update of ${t.keyColumns.map(quoteIdent).join(', ')} on ${table} for each row when (${changed}) ${exec}`);
    }
  } else {
    creates.push(`create trigger ${trg('r')} after insert or update or delete on ${table} for each row ${exec}`);
    if (shape.level !== 'empty-row' && shape.level !== 'handmade') creates.push(`create trigger ${trg('t')} after truncate on ${table} for each statement ${exec}`);
  }
  return [...drops, fnSql, `revoke all on function ${fn}() from public`, ...creates];
}

export function removeShapeSql(t: ShapeTable): string[] {
  const table = qualify(t.schema, t.table);
  return TRIGGER_NAMES.map((n) => `drop trigger if exists ${quoteIdent(n)} on ${table}`);
}

/** One SELECT feeding an outbox insert: its select list (GEN stands for the generation), FROM item and condition. */
interface Part {
  list: string;
  from: string;
  where?: string;
}

function functionBody(t: ShapeTable, shape: Shape): string {
  if (shape.level === 'empty-row' || shape.level === 'empty-statement') return 'begin\n  return null;\nend\n';
  if (shape.level === 'handmade') {
    return `begin
  insert into handmade_outbox (tbl, op, data)
    values (tg_table_name, tg_op, case when tg_op = 'DELETE' then to_jsonb(old) else to_jsonb(new) end);
  return null;
end
`;
  }
  if (shape.level === 'floor') {
    const key = `jsonb_build_object(${t.keyColumns.map((c) => `${quoteLiteral(c)}, o.${quoteIdent(c)}`).join(', ')})`;
    const sink = shape.sink ?? 'outbox_0';
    if (sink === 'read') {
      return `begin
  if tg_op in ('INSERT', 'UPDATE') then perform count(*) from pg2crate_new;
  elsif tg_op = 'DELETE' then perform count(*) from pg2crate_old;
  end if;
  return null;
end
`;
    }
    if (sink === 'chunked') {
      const slices = (from: string, img: string) => `select 0, ${t.id}, OP, pg_catalog.jsonb_agg(c.img) from (select ${img} as img, (pg_catalog.row_number() over () - 1) / ${CHUNK_ROWS} as slice from ${from}) c group by c.slice`;
      return `begin
  if tg_op in ('INSERT', 'UPDATE') then
    insert into ${qualify(TOOL, 'outbox_0')} (gen, table_id, op, data) ${slices('pg2crate_new n', 'to_jsonb(n.*)').replace('OP', `'U'`)};
  elsif tg_op = 'DELETE' then
    insert into ${qualify(TOOL, 'outbox_0')} (gen, table_id, op, data) ${slices('pg2crate_old o', key).replace('OP', `'D'`)};
  end if;
  return null;
end
`;
    }
    const table = sink === 'outbox_0' ? qualify(TOOL, 'outbox_0') : 'bench_floor.heap';
    // The columns given explicitly, so that the defaults (nextval, pg_current_xact_id) are not called.
    const given: [string, string][] = [['gen', '0'], ['table_id', String(t.id)], ['op', 'OP']];
    if (sink !== 'outbox_0' && sink !== 'heap') given.unshift(['id', '0']);
    if (sink === 'heap-no-xid' || sink === 'heap-no-image') given.push(['xid', `'0'::xid8`]);
    const cols = `(${[...given.map(([c]) => c), 'data'].join(', ')})`;
    const list = (op: string, data: string) => [...given.map(([, v]) => (v === 'OP' ? `'${op}'` : v)), data].join(', ');
    const img = sink === 'heap-no-image' ? 'null::jsonb' : 'to_jsonb(n.*)';
    const delImg = sink === 'heap-no-image' ? 'null::jsonb' : key;
    return `begin
  if tg_op in ('INSERT', 'UPDATE') then
    insert into ${table} ${cols} select ${list('U', img)} from pg2crate_new n;
  elsif tg_op = 'DELETE' then
    insert into ${table} ${cols} select ${list('D', delImg)} from pg2crate_old o;
  end if;
  return null;
end
`;
  }
  if (shape.level === 'bare-row' || shape.level === 'bare-statement') {
    // body `initplan`: the generation from the state row (an InitPlan, as the initplan shape) into
    // the parent; body `cte`: the state row read into variables first, then an IF picks the
    // generation's partition; body `plpgsql`: a constant generation 0, into the parent or straight
    // into outbox_0 (`into`). Settings as asked (the guard too).
    const state = qualify(TOOL, 'state');
    const notify = `pg_notify(${quoteLiteral(wakeupChannel(TOOL))}, '')`;
    const img = (gen: string) => shape.level === 'bare-row' ? `values (${gen}, ${t.id}, 'U', to_jsonb(new))` : `select ${gen}, ${t.id}, 'U', to_jsonb(n.*) from pg2crate_new n`;
    const ins = (table: string, gen: string) => `insert into ${qualify(TOOL, table)} (gen, table_id, op, data) ${img(gen)};`;
    let write: string;
    if (shape.body === 'initplan') {
      write = ins('outbox', `(select s.gen from ${state} s where case when s.idle then ${notify}::text is not null else true end)`);
    } else if (shape.body === 'seqlock') {
      write = ins('outbox', `(select pg_catalog.pg_sequence_last_value('bench_floor.gen'::regclass)::smallint
        where case when pg_catalog.pg_try_advisory_lock_shared(21, 21) then pg_catalog.pg_advisory_unlock_shared(21, 21) else ${notify}::text is not null end)`);
    } else if (shape.body === 'cte') {
      write = `select s.gen, s.idle into v_gen, v_idle from ${state} s;
    if v_gen = 0 then ${ins('outbox_0', 'v_gen')}
    elsif v_gen = 1 then ${ins('outbox_1', 'v_gen')}
    else ${ins('outbox_2', 'v_gen')}
    end if;
    if v_idle then perform ${notify}; end if;`;
    } else {
      write = ins(shape.into === 'parent' ? 'outbox' : 'outbox_0', '0');
    }
    return `declare
  v_gen smallint;
  v_idle boolean;
begin
${shape.settings === 'guard' ? SETTINGS_GUARD_SQL : ''}  if tg_op in ('INSERT', 'UPDATE') then
    ${write}
  end if;
  return null;
end
`;
  }
  const outbox = (gen?: number) => qualify(TOOL, gen === undefined ? 'outbox' : `outbox_${gen}`);
  const state = qualify(TOOL, 'state');
  const id = String(t.id);
  const notify = `pg_notify(${quoteLiteral(wakeupChannel(TOOL))}, '')`;
  const keyObject = (alias: string) => `jsonb_build_object(${t.keyColumns.map((c) => `${quoteLiteral(c)}, ${alias}.${quoteIdent(c)}`).join(', ')})`;
  const eq = t.keyOrigin === 'primary key' ? '=' : 'is not distinct from';
  const sameKey = t.keyColumns.map((c) => `n.${quoteIdent(c)} ${eq} o.${quoteIdent(c)}`).join(' and ');
  const keyChanged = t.keyColumns.map((c) => `old.${quoteIdent(c)} is distinct from new.${quoteIdent(c)}`).join(' or ');
  const guard = shape.settings === 'guard' ? SETTINGS_GUARD_SQL : '';
  const cols = '(gen, table_id, op, data)';
  const antiJoin: Part = { list: `GEN, ${id}, 'D', ${keyObject('o')}`, from: 'pg2crate_old o', where: `not exists (select from pg2crate_new n where ${sameKey})` };
  const upserts = (op: string): Part => ({ list: `GEN, ${id}, '${op}', to_jsonb(n.*)`, from: 'pg2crate_new n' });
  const deletes: Part = { list: `GEN, ${id}, 'D', ${keyObject('o')}`, from: 'pg2crate_old o' };
  const values = (op: string, data: string): Part => ({ list: `GEN, ${id}, '${op}', ${data}`, from: '' });
  const rowKey = shape.level === 'statement' && shape.keyChange === 'row-trigger';

  if (shape.body === 'plpgsql') {
    // One INSERT per kind of event; into the parent, or into the generation's partition by an IF.
    const select = (p: Part) => `select ${p.list.replaceAll('GEN', 'v_gen')}${p.from ? ` from ${p.from}` : ''}${p.where ? ` where ${p.where}` : ''}`;
    const ins = (p: Part) => {
      const one = (gen?: number) => `insert into ${outbox(gen)} ${cols} ${select(p)};`;
      if (shape.into === 'parent') return `    ${one()}\n`;
      return `    if v_gen = 0 then ${one(0)}\n    elsif v_gen = 1 then ${one(1)}\n    else ${one(2)}\n    end if;\n`;
    };
    const dispatch = shape.level === 'statement'
      ? `  if tg_op = 'INSERT' then
${ins(upserts('I'))}  elsif tg_op = 'UPDATE' then
${shape.keyChange === 'anti-join' ? ins(antiJoin) : ''}${ins(upserts('U'))}  elsif tg_op = 'DELETE' then
${ins(deletes)}  else
${ins(values('T', 'null'))}  end if;
`
      : `  if tg_op = 'INSERT' then
${ins(values('I', 'to_jsonb(new)'))}  elsif tg_op = 'UPDATE' then
    if ${keyChanged} then
${ins(values('D', keyObject('old')))}    end if;
${ins(values('U', 'to_jsonb(new)'))}  elsif tg_op = 'DELETE' then
${ins(values('D', keyObject('old')))}  else
${ins(values('T', 'null'))}  end if;
`;
    const keyBranch = rowKey
      ? `  if tg_level = 'ROW' then
    select s.gen into v_gen from ${state} s;
${ins(values('D', keyObject('old')))}    return null;
  end if;
` : '';
    return `declare
  v_gen smallint;
  v_idle boolean;
begin
${guard}${keyBranch}  select s.gen, s.idle into v_gen, v_idle from ${state} s;
${dispatch}  if v_idle then
    perform ${notify};
  end if;
  return null;
end
`;
  }

  if (shape.body === 'initplan') {
    // The generation comes from an uncorrelated scalar subquery: evaluated once, when the first
    // row is projected, and not at all when the statement wrote no rows. It notifies on the way.
    const gen = `(select s.gen from ${state} s where case when s.idle then ${notify}::text is not null else true end)`;
    const select = (p: Part) => `select ${p.list.replaceAll('GEN', gen)}${p.from ? ` from ${p.from}` : ''}${p.where ? ` where ${p.where}` : ''}`;
    const ins = (...parts: Part[]) => `    insert into ${outbox()} ${cols} ${parts.map(select).join(' union all ')};\n`;
    const dispatch = shape.level === 'statement'
      ? `  if tg_op = 'INSERT' then
${ins(upserts('I'))}  elsif tg_op = 'UPDATE' then
${shape.keyChange === 'anti-join' ? ins(antiJoin, upserts('U')) : ins(upserts('U'))}  elsif tg_op = 'DELETE' then
${ins(deletes)}  else
${ins(values('T', 'null'))}  end if;
`
      : `  if tg_op = 'INSERT' then
${ins(values('I', 'to_jsonb(new)'))}  elsif tg_op = 'UPDATE' then
    if ${keyChanged} then
${ins(values('D', keyObject('old')), values('U', 'to_jsonb(new)'))}    else
${ins(values('U', 'to_jsonb(new)'))}    end if;
  elsif tg_op = 'DELETE' then
${ins(values('D', keyObject('old')))}  else
${ins(values('T', 'null'))}  end if;
`;
    const keyBranch = rowKey
      ? `  if tg_level = 'ROW' then
${ins(values('D', keyObject('old')))}    return null;
  end if;
` : '';
    return `begin
${guard}${keyBranch}${dispatch}  return null;
end
`;
  }

  // cte: one statement per call. The state row is read by a CTE that also notifies when the
  // drainer is idle: a CTE holding a volatile function is computed once, and only when the insert
  // reads it (a statement that wrote no rows has nothing to wake anyone for). UNION ALL runs its
  // branches in order, so the deletes of an UPDATE take smaller ids than its upserts.
  const select = (p: Part) => `select ${p.list.replaceAll('GEN', 's.gen')} from s${p.from ? `, ${p.from}` : ''}${p.where ? ` where ${p.where}` : ''}`;
  const stmt = (...parts: Part[]) => `    with s as (select gen, case when idle then ${notify}::text end as woken from ${state})
    insert into ${outbox()} ${cols} ${parts.map(select).join(' union all ')};\n`;
  const dispatch = shape.level === 'statement'
    ? `  if tg_op = 'INSERT' then
${stmt(upserts('I'))}  elsif tg_op = 'UPDATE' then
${shape.keyChange === 'anti-join' ? stmt(antiJoin, upserts('U')) : stmt(upserts('U'))}  elsif tg_op = 'DELETE' then
${stmt(deletes)}  else
${stmt(values('T', 'null'))}  end if;
`
    : `  if tg_op = 'INSERT' then
${stmt(values('I', 'to_jsonb(new)'))}  elsif tg_op = 'UPDATE' then
    if ${keyChanged} then
${stmt(values('D', keyObject('old')), values('U', 'to_jsonb(new)'))}    else
${stmt(values('U', 'to_jsonb(new)'))}    end if;
  elsif tg_op = 'DELETE' then
${stmt(values('D', keyObject('old')))}  else
${stmt(values('T', 'null'))}  end if;
`;
  const keyBranch = rowKey
    ? `  if tg_level = 'ROW' then
    insert into ${outbox()} ${cols} select s.gen, ${id}, 'D', ${keyObject('old')} from ${state} s;
    return null;
  end if;
` : '';
  return `begin
${guard}${keyBranch}${dispatch}  return null;
end
`;
}

/**
 * The ladder of capture-variants.ts walks from what src/capture/triggers.ts generates down to the
 * hand-written outbox, taking away one piece at a time, so that each piece is priced in one run:
 *   key-change  an UPDATE writes no deletes for changed keys: no OLD transition table, no EXCEPT
 *   secdef      not SECURITY DEFINER
 *   guard       no check of the five output settings
 *   state       the generation a constant 0 instead of the InitPlan on the state row (no wake-up)
 *   routing     into outbox_0 instead of the partitioned parent (the bench writes generation 0)
 * Applied as text edits to the generated statements; each must change something, so that a
 * change in triggers.ts cannot turn a step of the ladder into a silent copy of the one above.
 */
export type Removal = 'key-change' | 'secdef' | 'guard' | 'state' | 'routing' | 'nested';

const REMOVALS: Record<Removal, [RegExp, string][]> = {
  'key-change': [
    [/(insert into \S+ \(gen, table_id, op, data\))\n\s+select [^\n]*'D'[^\n]*\n[^\n]*except[^\n]*\n\s+union all\n\s+(select )/, '$1 $2'],
    [/referencing old table as pg2crate_old new table as pg2crate_new/, 'referencing new table as pg2crate_new'],
  ],
  'secdef': [[/language plpgsql security definer/, 'language plpgsql']],
  'guard': [
    [/\n  if not \(pg_catalog\.current_setting\('TimeZone'\)[\s\S]*?\n  end if;/, ''],
    [/\n  if pg2crate_capture\.v_saved is not null then[\s\S]*?\n  end if;/, ''],
  ],
  'state': [[/\(select s\.gen from \S+ s where case when s\.idle then [^()]*\([^()]*\)[^()]* else true end\)/g, '0::pg_catalog.int2']],
  'routing': [[/insert into "pg2crate"\."outbox" \(/g, 'insert into "pg2crate"."outbox_0" (']],
  // the check for writes of the application's triggers inside the statement (triggers.ts), and its mark
  'nested': [
    [/\n {2}v_nested pg_catalog\.text := [^\n]*;/, ''],
    [/\n {2}if v_nested [\s\S]*?\n {4}end if;\n {2}elsif /, '\n  if '],
    [/\n {2}if pg_catalog\.pg_trigger_depth\(\)[\s\S]*?\n {2}end if;/, ''],
  ],
};

/** `statements` (a capture function and its triggers, as triggers.ts makes them) without the pieces named. */
export function withoutSql(statements: string[], removals: readonly Removal[]): string[] {
  let out = statements;
  for (const r of removals) {
    for (const [re, by] of REMOVALS[r]) {
      const hit = out.some((s) => re.test(s));
      re.lastIndex = 0;
      if (!hit) throw new Error(`ladder step ${r}: ${re} matches nothing in the generated capture SQL`);
      out = out.map((s) => s.replace(re, by));
    }
  }
  return out;
}
