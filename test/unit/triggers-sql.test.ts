import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CANONICAL_SETTINGS, canonicalSettingsSql, captureFunctionSql, createTriggersSql, dropTriggersSql, generationSql, keyChangedSql, keyFunctionSql, splitsKeyChanges, type CaptureTarget,
} from '../../src/capture/triggers.js';
import { triggerName, wakeupChannel, wakeupLockKeys } from '../../src/capture/names.js';
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
  assert.ok(fn.includes(`'"tool ""Zq0""; x"."generation"'::pg_catalog.regclass`), 'the generation sequence by a qualified literal');
  assert.ok(fn.includes(`'Zq4''s', o."Zq4's"`), 'key names go into jsonb_build_object as a literal and a quoted column');
  assert.ok(triggers.includes(`on "App Zq1; drop"."Zq2 ""Items"""`));
});

test('the row image is taken from the whole row (n.*), never from a bare alias a column could shadow', () => {
  const fn = captureFunctionSql(TOOL, TARGET);
  assert.match(fn, /to_jsonb\(n\.\*\)/);
  assert.doesNotMatch(fn, /to_jsonb\(n\)/);
  assert.doesNotMatch(fn, /to_jsonb\(o\)/);
});

test('the function is SECURITY DEFINER with no SET clause for a plain table, SET search_path for a shaped one, and nobody else may call it', () => {
  const fn = captureFunctionSql(TOOL, TARGET);
  assert.match(fn, /security definer/i);
  assert.doesNotMatch(fn, /^set /m, 'a SET clause is applied and undone on every call');
  assert.match(fn, /revoke all on function "tool ""Zq0""; x"\."capture_7"\(\) from public/);
  assert.ok(fn.includes(`pg_catalog.pg_notify('${wakeupChannel(TOOL)}'`), 'it notifies the tool schema\'s channel');
  for (const shape of [FILTERED, { ...FILTERED, where: undefined, excludeColumns: ['x'] }, { ...FILTERED, where: undefined, hashColumns: ['x'] }, { ...FILTERED, where: undefined, deletes: 'soft' as const }]) {
    const shaped = captureFunctionSql(TOOL, { ...TARGET, relid: 1, shape });
    assert.match(shaped, /^set search_path = pg_catalog, pg_temp$/m, 'pg_catalog first and pg_temp last, so nothing planted wins');
    assert.equal(shaped.match(/^set /gm)?.length, 1);
  }
});

test('a plain table\'s function names every function, operator and type qualified: nothing on the caller\'s search_path can reach it', () => {
  const { text } = body(captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'] }));
  for (const keyOrigin of ['primary key', 'config'] as const) {
    const b = bare(body(captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'], keyOrigin })).text).replace(/^#variable_conflict use_column$/m, '');
    // Every call is pg_catalog.<name>( or SQL syntax that names no function.
    const syntax = new Set(['if', 'elsif', 'not', 'exists', 'array', 'any', 'coalesce', 'values', 'select', 'and', 'or', 'then', 'in', 'is', 'null', 'operator', 'where', 'when', 'case', 'from']);
    for (const m of b.matchAll(/([A-Za-z_][A-Za-z_0-9.]*)\s*\(/g)) {
      const name = m[1].toLowerCase();
      assert.ok(name.startsWith('pg_catalog.') || syntax.has(name) || name.endsWith('.outbox'), `unqualified call ${m[1]}( in:\n${b}`);
    }
    // Every operator is OPERATOR(pg_catalog.…); no LIKE, IN, IS DISTINCT FROM (they look "=" up on the path).
    const withoutQualified = b.replace(/OPERATOR\(pg_catalog\.[^)]+\)/g, '⟨op⟩').replace(/:=/g, '⟨assign⟩').replace('<<pg2crate_capture>>', '').replaceAll('n.*', '⟨row⟩').replace(/::pg_catalog\.[a-z0-9_]+(\[\])?/g, '⟨cast⟩');
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

test('one outbox insert per call: the generation and the notify in an InitPlan; a set-difference update\'s deletes and upserts in one UNION ALL', () => {
  for (const t of [TARGET, { ...TARGET, floatKey: true }]) {
    const { text } = body(captureFunctionSql('pg2crate', t));
    assert.equal(text.split('insert into').length - 1, 4, 'one insert in each of the four branches (insert, update, delete, truncate)');
    assert.doesNotMatch(text, /select [^;]* into /, 'the state row is not read by a statement of its own');
    assert.ok(text.includes(generationSql('pg2crate')));
    assert.doesNotMatch(text, /"state"/, 'no table is read for the generation or the wake-up');
  }
  const split = body(captureFunctionSql('pg2crate', TARGET)).text;
  const splitUpdate = split.slice(split.indexOf(`'UPDATE'`), split.indexOf(`'DELETE'`));
  assert.ok(!splitUpdate.includes(`'D'`) && !splitUpdate.includes('pg2crate_old'), 'a plain table\'s key changes come from the key trigger');
  const { text } = body(captureFunctionSql('pg2crate', { ...TARGET, floatKey: true }));
  const update = text.slice(text.indexOf(`'UPDATE'`), text.indexOf(`'DELETE'`));
  assert.ok(update.indexOf(`'D'`) < update.indexOf('union all') && update.indexOf('union all') < update.indexOf(`'U'`), 'deletes first, so they take the smaller ids');
});

test('key changes by a row trigger for a plain table; by the set difference where a row trigger cannot see them all', () => {
  assert.equal(splitsKeyChanges(TARGET), true);
  assert.equal(splitsKeyChanges({ ...TARGET, relid: 1, shape: { ...FILTERED, where: undefined, excludeColumns: ['x'] } }), true, 'a column filter changes nothing about keys');
  assert.equal(splitsKeyChanges({ ...TARGET, partitionRoot: 99 }), false, 'a row moved between partitions fires no row UPDATE trigger');
  assert.equal(splitsKeyChanges({ ...TARGET, shape: FILTERED }), false, 'a row leaving the filter needs a delete too');
  assert.equal(splitsKeyChanges({ ...TARGET, floatKey: true }), false, 'a float key\'s JSON depends on extra_float_digits');
  // The WHEN names no column (ALTER COLUMN … TYPE must stay possible) and every operator qualified.
  assert.equal(keyChangedSql(['a', 'b']), `(pg_catalog.to_jsonb(old) OPERATOR(pg_catalog.->) 'a') OPERATOR(pg_catalog.<>) (pg_catalog.to_jsonb(new) OPERATOR(pg_catalog.->) 'a') or `
    + `(pg_catalog.to_jsonb(old) OPERATOR(pg_catalog.->) 'b') OPERATOR(pg_catalog.<>) (pg_catalog.to_jsonb(new) OPERATOR(pg_catalog.->) 'b')`);
  const key = createTriggersSql('pg2crate', TARGET).find((s) => s.startsWith('create') && s.includes('for each row'));
  assert.ok(key, 'a row trigger for key changes');
  assert.ok(key.includes('after update on "App Zq1; drop"."Zq2 ""Items""" for each row when ('), key);
  assert.ok(key.endsWith('execute function "pg2crate"."capture_7_key"()'), key);
  assert.doesNotMatch(bare(key), /\b(old|new)\.(?!\*)/, 'no column of OLD or NEW is named');
  assert.ok(!createTriggersSql('pg2crate', { ...TARGET, partitionRoot: 99 }).some((s) => s.includes('for each row')));
  assert.ok(!createTriggersSql('pg2crate', TARGET, { dml: false }).some((s) => s.includes('for each row')), 'pgoutput mode: no key trigger');
  // The key function: the old key from the old row's image, under the settings guard; nobody else may call it.
  const fn = keyFunctionSql('pg2crate', TARGET);
  assert.match(fn, /v_old := pg_catalog\.to_jsonb\(old\);/);
  assert.ok(fn.includes(`pg_catalog.jsonb_build_object('Zq3 Kéy', pg2crate_capture.v_old OPERATOR(pg_catalog.->) 'Zq3 Kéy', 'Zq4''s', pg2crate_capture.v_old OPERATOR(pg_catalog.->) 'Zq4''s')`), fn);
  assert.ok(fn.includes(canonicalSettingsSql(false)));
  assert.match(fn, /security definer/);
  assert.doesNotMatch(fn, /^set /m);
  assert.match(fn, /revoke all on function "pg2crate"\."capture_7_key"\(\) from public/);
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

test('a set-difference update\'s deletes are the old keys EXCEPT the new ones: the key type\'s own equality (NULL matching NULL), never a nested loop', () => {
  const fn = captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'], partitionRoot: 99 });
  assert.ok(fn.includes('from (select o."a", o."b" from pg2crate_old o except select n."a", n."b" from pg2crate_new n) o'));
  assert.ok(fn.includes(`pg_catalog.jsonb_build_object('a', o."a", 'b', o."b")`));
  // The same for a configured key: set operations treat NULLs as equal, as IS NOT DISTINCT FROM does.
  assert.equal(captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'], keyOrigin: 'config', partitionRoot: 99 }), fn);
  const filtered = captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a'], shape: FILTERED });
  assert.ok(filtered.includes(`from (select o."a" from pg2crate_old o where (day > '01/02/2024') except select n."a" from pg2crate_new n where (day > '01/02/2024')) o`));
});

test('four statement-level triggers with transition tables, each dropped first so that adding again is harmless', () => {
  const stmts = createTriggersSql('pg2crate', { ...TARGET, floatKey: true });
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
  const fn = captureFunctionSql('pg2crate', { ...TARGET, floatKey: true });
  assert.ok(fn.includes('from pg2crate_new n') && fn.includes('from pg2crate_old o'));
  // A plain table's UPDATE trigger keeps no OLD table: its key changes come from the key trigger.
  assert.match(createTriggersSql('pg2crate', TARGET).find((s) => s.includes('after update') && s.includes('for each statement'))!, /referencing new table as pg2crate_new for each statement/);
});

test('the generation from its sequence and the wake-up from a shared try of the drainer\'s lock, given back at once', () => {
  const [k1, k2] = wakeupLockKeys('pg2crate');
  assert.equal(generationSql('pg2crate'), `(select pg_catalog.pg_sequence_last_value('"pg2crate"."generation"'::pg_catalog.regclass)::pg_catalog.int2`
    + ` where case when pg_catalog.pg_try_advisory_lock_shared(${k1}, ${k2}) then pg_catalog.pg_advisory_unlock_shared(${k1}, ${k2})`
    + ` else pg_catalog.pg_notify('pg2crate_wakeup', '')::pg_catalog.text is not null end)`);
  assert.notDeepEqual(wakeupLockKeys('pg2crate'), wakeupLockKeys('other'), 'two tool schemas wake their own drainers');
  assert.ok([k1, k2].every((k) => Number.isInteger(k) && k >= -(2 ** 31) && k < 2 ** 31), 'int4 keys');
});

test('two tool schemas capturing the same table use different trigger names and channels', () => {
  assert.notEqual(triggerName('pg2crate', 'i'), triggerName('other', 'i'));
  assert.notEqual(wakeupChannel('pg2crate'), wakeupChannel('other'));
  assert.equal(wakeupChannel('pg2crate'), 'pg2crate_wakeup');
  // Within Postgres' 63 bytes, whatever the schema name.
  assert.ok(Buffer.byteLength(triggerName('x'.repeat(63), 'i')) <= 63);
  assert.ok(Buffer.byteLength(wakeupChannel('ü'.repeat(31))) <= 63);
});
