import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CANONICAL_SETTINGS, canonicalSettingsSql, captureFunctionSql, createTriggersSql, dropTriggersSql, type CaptureTarget } from '../../src/capture/triggers.js';
import { triggerName, wakeupChannel } from '../../src/capture/names.js';
import type { TableShape } from '../../src/core/table-shape.js';

const TOOL = 'tool "Zq0"; x';
const TARGET: CaptureTarget = {
  tableId: 7,
  sourceSchema: 'App Zq1; drop',
  sourceTable: 'Zq2 "Items"',
  keyColumns: ['Zq3 Kéy', "Zq4's"],
  keyOrigin: 'primary key',
};

const FILTERED: TableShape = { where: `day > '01/02/2024'`, hashColumns: [], deletes: 'hard', deletedAtColumn: '_deleted_at', metadata: {}, history: null };

/** The SQL with every quoted identifier and string literal cut out: what the parser reads as keywords. */
function bare(sql: string): string {
  return sql.replace(/"(?:[^"]|"")*"/g, '⟨ident⟩').replace(/'(?:[^']|'')*'/g, '⟨literal⟩');
}

/** The function's body: the text between its dollar-quote tags. */
function body(sql: string): { tag: string; text: string } {
  const m = /as (\$[A-Za-z0-9_]*\$)([\s\S]*)\1;/.exec(sql);
  assert.ok(m, 'the function body is dollar-quoted');
  return { tag: m[1], text: m[2] };
}

test('every name in the generated SQL is quoted: none is left where the parser would read it', () => {
  const fn = captureFunctionSql(TOOL, TARGET);
  const triggers = createTriggersSql(TOOL, TARGET).join(';\n');
  for (const sql of [fn, triggers]) {
    const b = bare(sql);
    for (const token of ['Zq0', 'Zq1', 'Zq2', 'Zq3', 'Zq4']) assert.ok(!b.includes(token), `${token} appears unquoted in:\n${sql}`);
  }
  assert.ok(fn.includes('"tool ""Zq0""; x"."outbox"'), 'the outbox is qualified by the quoted tool schema');
  assert.ok(fn.includes('"tool ""Zq0""; x"."state"'));
  assert.ok(fn.includes(`'Zq4''s', o."Zq4's"`), 'key names go into json_build_object as a literal and a quoted column');
  assert.ok(triggers.includes(`on "App Zq1; drop"."Zq2 ""Items"""`));
});

test('the row image is taken from the whole row (n.*), never from a bare alias a column could shadow', () => {
  const fn = captureFunctionSql(TOOL, TARGET);
  assert.match(fn, /to_json\(n\.\*\)/);
  assert.match(fn, /to_json\(t\.\*\)/);
  assert.doesNotMatch(fn, /to_jsonb?\((n|o|t)\)/);
});

test('the function is SECURITY DEFINER with no SET clause for a plain table, SET search_path for a shaped one, and nobody else may call it', () => {
  const fn = captureFunctionSql(TOOL, TARGET);
  assert.match(fn, /security definer/i);
  assert.doesNotMatch(fn, /^set /m, 'a SET clause is applied and undone on every call');
  assert.match(fn, /revoke all on function "tool ""Zq0""; x"\."capture_7"\(\) from public/);
  assert.ok(fn.includes(`pg_catalog.pg_notify('${wakeupChannel(TOOL)}'`), 'it notifies the tool schema\'s channel');
  for (const shape of [FILTERED, { ...FILTERED, where: undefined, excludeColumns: ['x'] }, { ...FILTERED, where: undefined, hashColumns: ['x'] }, { ...FILTERED, where: undefined, deletes: 'soft' as const }]) {
    const shaped = captureFunctionSql(TOOL, { ...TARGET, relid: 1, shape, guardedColumns: [{ name: 'x', attnum: 3 }] });
    assert.match(shaped, /^set search_path = pg_catalog, pg_temp$/m, 'pg_catalog first and pg_temp last, so nothing planted wins');
    assert.equal(shaped.match(/^set /gm)?.length, 1);
  }
});

test('a plain table\'s function names every function, operator and type qualified: nothing on the caller\'s search_path can reach it', () => {
  const { text } = body(captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'] }));
  for (const keyOrigin of ['primary key', 'config'] as const) {
    const b = bare(body(captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'], keyOrigin })).text).replace(/^#variable_conflict use_column$/m, '');
    // Every call is pg_catalog.<name>( or SQL syntax that names no function.
    const syntax = new Set(['if', 'elsif', 'not', 'exists', 'array', 'any', 'coalesce', 'values', 'select', 'and', 'or', 'then', 'in', 'is', 'null', 'operator', 'where', 'when', 'case', 'from', 'lateral']);
    for (const m of b.matchAll(/([A-Za-z_][A-Za-z_0-9.]*)\s*\(/g)) {
      const name = m[1].toLowerCase();
      assert.ok(name.startsWith('pg_catalog.') || syntax.has(name) || name.endsWith('.outbox'), `unqualified call ${m[1]}( in:\n${b}`);
    }
    // Every operator is OPERATOR(pg_catalog.…); no LIKE, IN, IS DISTINCT FROM (they look "=" up on the path).
    const withoutQualified = b.replace(/OPERATOR\(pg_catalog\.[^)]+\)/g, '⟨op⟩').replace(/:=/g, '⟨assign⟩').replace('<<pg2crate_capture>>', '').replaceAll('n.*', '⟨row⟩').replaceAll('t.*', '⟨row⟩').replace(/::pg_catalog\.[a-z0-9_]+(\[\])?/g, '⟨cast⟩');
    assert.doesNotMatch(withoutQualified, /[=<>!~|+\-*/%^&@#]/, `a bare operator in:\n${withoutQualified}`);
    assert.doesNotMatch(withoutQualified, /\b(like|ilike|similar|distinct|in)\b/i);
    // Every type is pg_catalog.<type>.
    assert.doesNotMatch(withoutQualified, /::/, 'an unqualified cast');
    assert.match(text, /v_saved pg_catalog\.text\[\];/);
  }
});

test('a session with other output settings writes under the canonical ones and gets its own back before the function returns', () => {
  const { text } = body(captureFunctionSql('pg2crate', TARGET));
  const guard = text.indexOf('if not (pg_catalog.current_setting(\'TimeZone\')');
  const restore = text.indexOf('if pg2crate_capture.v_saved is not null then');
  const firstWrite = text.indexOf('insert into');
  assert.ok(guard >= 0 && restore >= 0, 'the body checks the settings and sets them back');
  assert.ok(guard < firstWrite && restore > text.lastIndexOf('insert into') && restore < text.indexOf('return null'), 'check before the first write, restore after the last one, before the return');
  assert.equal(text.split('return').length - 1, 1, 'one return: nothing skips the restore');
  for (const [k, v] of CANONICAL_SETTINGS) {
    assert.ok(text.includes(`pg_catalog.set_config('${k}', '${v}', true)`), `${k} is set to ${v} for the call`);
    assert.match(text, new RegExp(`pg_catalog\\.set_config\\('${k}', pg2crate_capture\\.v_saved\\[\\d\\], true\\)`), `${k} is set back`);
  }
  // Transaction-local, both ways: undone by a rollback of the writer's (sub)transaction if the call fails in between.
  assert.doesNotMatch(text, /set_config\([^)]*, false\)/);
});

test('a row predicate needs the canonical DateStyle exactly (its literals are read by it); a plain table only its ISO output', () => {
  assert.match(canonicalSettingsSql(false), /current_setting\('DateStyle'\) OPERATOR\(pg_catalog\.~~\) 'ISO,%'/);
  assert.match(canonicalSettingsSql(true), /current_setting\('DateStyle'\) OPERATOR\(pg_catalog\.=\) 'ISO, YMD'/);
  const plain = body(captureFunctionSql('pg2crate', TARGET)).text;
  const filtered = body(captureFunctionSql('pg2crate', { ...TARGET, shape: FILTERED })).text;
  assert.ok(plain.includes(canonicalSettingsSql(false)));
  assert.ok(filtered.includes(canonicalSettingsSql(true)));
});

test('one outbox insert per call: the generation and the notify in an InitPlan, an update\'s deletes and upserts in one UNION ALL', () => {
  const whole = body(captureFunctionSql('pg2crate', TARGET)).text;
  // the usual path: after the branch taken when the application's triggers wrote inside the statement
  const text = whole.slice(whole.indexOf(`\n  elsif tg_op OPERATOR(pg_catalog.=) 'INSERT'`));
  assert.equal(text.split('insert into').length - 1, 4, 'one insert in each of the four branches (insert, update, delete, truncate)');
  assert.equal(whole.split('insert into').length - 1, 7, 'and one in each of the nested-write branches (insert, update, delete)');
  assert.doesNotMatch(text, /select [^;]* into /, 'the state row is not read by a statement of its own');
  const update = text.slice(text.indexOf(`'UPDATE'`), text.indexOf(`'DELETE'`));
  assert.ok(update.indexOf(`'D'`) < update.indexOf('union all') && update.indexOf('union all') < update.indexOf(`'U'`), 'deletes first, so they take the smaller ids');
  assert.match(text, /\(select s\.gen from "pg2crate"\."state" s where case when s\.idle then pg_catalog\.pg_notify\('pg2crate_wakeup', ''\)::pg_catalog\.text is not null else true end\)/);
});

test('the dollar-quote tag never occurs inside the body, whatever the names hold', () => {
  const plain = body(captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['id'] }));
  assert.equal(plain.tag, '$pg2crate0$');

  for (const keyColumns of [['$pg2crate0$'], ['$pg2crate0$', '$pg2crate1$'], ['a$pg2crate0$b', '$$']]) {
    const sql = captureFunctionSql('pg2crate', { ...TARGET, keyColumns });
    const { tag, text } = body(sql);
    assert.ok(!text.includes(tag), `tag ${tag} occurs inside the body for keys ${keyColumns.join(', ')}`);
    assert.equal(sql.split(tag).length - 1, 2, 'the tag opens and closes the body, nothing else');
    for (const k of keyColumns) assert.ok(text.includes(`"${k}"`), 'the key column is still there, quoted');
  }
  assert.equal(body(captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['$pg2crate0$', '$pg2crate1$'] })).tag, '$pg2crate2$');
  // A schema name can hold a tag too.
  const { tag } = body(captureFunctionSql('$pg2crate0$', TARGET));
  assert.notEqual(tag, '$pg2crate0$');
});

test('an update\'s deletes are the old keys EXCEPT the new ones: the key type\'s own equality (NULL matching NULL), never a nested loop', () => {
  const fn = captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'] });
  assert.ok(fn.includes('from (select o."a", o."b" from pg2crate_old o except select n."a", n."b" from pg2crate_new n) o'));
  assert.ok(fn.includes(`pg_catalog.json_build_object('a', o."a", 'b', o."b")`));
  // The same for a configured key: set operations treat NULLs as equal, as IS NOT DISTINCT FROM does;
  // only the nested-write path's lookup of the current rows spells that out.
  const configured = captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'], keyOrigin: 'config' });
  assert.ok(configured.includes('from (select o."a", o."b" from pg2crate_old o except select n."a", n."b" from pg2crate_new n) o'));
  assert.ok(configured.includes('where (t."a" OPERATOR(pg_catalog.=) k."a" or (t."a" is null and k."a" is null)) and (t."b" OPERATOR(pg_catalog.=) k."b" or (t."b" is null and k."b" is null)) limit 1'));
  assert.ok(fn.includes('where t."a" OPERATOR(pg_catalog.=) k."a" and t."b" OPERATOR(pg_catalog.=) k."b" limit 1'));
  // a key type whose `=` lives elsewhere (citext's) is compared with that one, named with its schema
  assert.ok(captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a'], keyEqualitySchemas: ['ext schema'] }).includes('t."a" OPERATOR("ext schema".=) k."a"'));
  const filtered = captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a'], shape: FILTERED });
  assert.ok(filtered.includes(`from (select o."a" from pg2crate_old o where (day > '01/02/2024') except select n."a" from pg2crate_new n where (day > '01/02/2024')) o`));
});

test('four statement-level triggers with transition tables, each dropped first so that adding again is harmless', () => {
  const stmts = createTriggersSql('pg2crate', TARGET);
  const drops = dropTriggersSql('pg2crate', TARGET.sourceSchema, TARGET.sourceTable);
  assert.deepEqual(stmts.slice(0, drops.length), drops);
  assert.ok(drops.every((s) => s.startsWith('drop trigger if exists ')));
  const creates = stmts.slice(drops.length);
  assert.equal(creates.length, 4);
  assert.ok(creates.every((s) => s.includes('for each statement execute function "pg2crate"."capture_7"()')));
  assert.match(creates[0], /after insert .* referencing new table as pg2crate_new/);
  assert.match(creates[1], /after update .* referencing old table as pg2crate_old new table as pg2crate_new/);
  assert.match(creates[2], /after delete .* referencing old table as pg2crate_old/);
  assert.match(creates[3], /after truncate /);
  // The body reads the transition tables by exactly these names.
  const fn = captureFunctionSql('pg2crate', TARGET);
  assert.ok(fn.includes('from pg2crate_new n') && fn.includes('from pg2crate_old o'));
});

test('two tool schemas capturing the same table use different trigger names and channels', () => {
  assert.notEqual(triggerName('pg2crate', 'i'), triggerName('other', 'i'));
  assert.notEqual(wakeupChannel('pg2crate'), wakeupChannel('other'));
  assert.equal(wakeupChannel('pg2crate'), 'pg2crate_wakeup');
  // Within Postgres' 63 bytes, whatever the schema name.
  assert.ok(Buffer.byteLength(triggerName('x'.repeat(63), 'i')) <= 63);
  assert.ok(Buffer.byteLength(wakeupChannel('ü'.repeat(31))) <= 63);
});

test('a table that excludes or hashes columns: its function refuses inserts and updates while one of them, by its attnum, has another name; deletes and truncates are not checked', () => {
  const shape: TableShape = { ...FILTERED, where: undefined, excludeColumns: ['ssn'], hashColumns: ["e'mail"] };
  assert.throws(() => captureFunctionSql(TOOL, { ...TARGET, relid: 16400, shape }), /needs their attnums/);
  const fn = captureFunctionSql(TOOL, { ...TARGET, relid: 16400, shape, guardedColumns: [{ name: "e'mail", attnum: 3 }, { name: 'ssn', attnum: 5 }] });
  const { text } = body(fn);
  const check = /from \(values \(3::pg_catalog\.int2, 'e''mail'::pg_catalog\.name\), \(5::pg_catalog\.int2, 'ssn'::pg_catalog\.name\)\) c\(attnum, listed\)\s+join pg_catalog\.pg_attribute a on a\.attrelid OPERATOR\(pg_catalog\.=\) 16400::pg_catalog\.oid and a\.attnum OPERATOR\(pg_catalog\.=\) c\.attnum\s+and not a\.attisdropped and a\.attname OPERATOR\(pg_catalog\.<>\) c\.listed;/;
  const branches = text.split(/\n {2}(?:if|elsif|else)\b/);
  const branch = (op: string) => branches.find((b) => b.startsWith(` tg_op OPERATOR(pg_catalog.=) '${op}'`)) ?? '';
  const test = /if exists \(select from pg_catalog\.pg_attribute a\s+where a\.attrelid OPERATOR\(pg_catalog\.=\) 16400::pg_catalog\.oid and a\.attnum OPERATOR\(pg_catalog\.=\) any \(array\[3, 5\]::pg_catalog\.int2\[\]\) and not a\.attisdropped\s+and \(a\.attnum::pg_catalog\.text OPERATOR\(pg_catalog\.\|\|\) ':' OPERATOR\(pg_catalog\.\|\|\) a\.attname::pg_catalog\.text\) OPERATOR\(pg_catalog\.<>\) all \(array\['3:e''mail', '5:ssn'\]::pg_catalog\.text\[\]\)\) then/;
  assert.match(branch('INSERT'), test);
  assert.match(branch('UPDATE'), test);
  assert.match(branch('INSERT'), check);
  assert.match(branch('UPDATE'), check);
  assert.doesNotMatch(branch('DELETE'), /pg_attribute/);
  assert.match(branch('INSERT'), test);
  // the nested-write path may write images for any kind of statement: it checks too
  assert.equal(text.match(/raise exception/g)?.length, 3);
  assert.ok(text.includes(`raise exception 'pg2crate: a column of % that pg2crate leaves out or hashes (excludeColumns, hashColumns) was renamed: %; %',`));
  assert.ok(text.includes(`'"App Zq1; drop"."Zq2 ""Items"""', pg2crate_capture.v_renamed, 'the write is refused`));
  assert.ok(text.includes('`pg2crate tables add App Zq1; drop.Zq2 "Items"`'));
  // a listed column the table does not have (dropped) has nothing to guard
  assert.doesNotMatch(captureFunctionSql(TOOL, { ...TARGET, relid: 16400, shape, guardedColumns: [] }), /pg_attribute a on|v_renamed/);
  // an include list alone leaves nothing to guard
  assert.doesNotMatch(captureFunctionSql(TOOL, { ...TARGET, relid: 16400, shape: { ...FILTERED, includeColumns: ['x'] } }), /pg_attribute a on|v_renamed/);
});
