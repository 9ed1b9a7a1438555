import { test } from 'node:test';
import assert from 'node:assert/strict';
import { captureFunctionSql, createTriggersSql, dropTriggersSql, type CaptureTarget } from '../../src/source/triggers.js';
import { triggerName, wakeupChannel } from '../../src/source/names.js';

const TOOL = 'tool "Zq0"; x';
const TARGET: CaptureTarget = {
  tableId: 7,
  sourceSchema: 'App Zq1; drop',
  sourceTable: 'Zq2 "Items"',
  keyColumns: ['Zq3 Kéy', "Zq4's"],
  keyOrigin: 'primary key',
};

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
  assert.ok(fn.includes(`'Zq4''s', o."Zq4's"`), 'key names go into jsonb_build_object as a literal and a quoted column');
  assert.ok(triggers.includes(`on "App Zq1; drop"."Zq2 ""Items"""`));
});

test('the row image is taken from the whole row (n.*), never from a bare alias a column could shadow', () => {
  const fn = captureFunctionSql(TOOL, TARGET);
  assert.match(fn, /to_jsonb\(n\.\*\)/);
  assert.doesNotMatch(fn, /to_jsonb\(n\)/);
  assert.doesNotMatch(fn, /to_jsonb\(o\)/);
});

test('the function is SECURITY DEFINER with a fixed search_path and fixed output settings, and nobody else may call it', () => {
  const fn = captureFunctionSql(TOOL, TARGET);
  assert.match(fn, /security definer/i);
  assert.match(fn, /^set search_path = pg_catalog, pg_temp$/m, 'pg_catalog first and pg_temp last, so nothing planted wins');
  assert.match(fn, /^set timezone = 'UTC'$/m);
  assert.match(fn, /^set datestyle = 'ISO, YMD'$/m);
  assert.match(fn, /^set extra_float_digits = 1$/m);
  assert.match(fn, /revoke all on function "tool ""Zq0""; x"\."capture_7"\(\) from public/);
  assert.ok(fn.includes(`pg_notify('${wakeupChannel(TOOL)}'`), 'it notifies the tool schema\'s channel');
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

test('a primary key matches old and new rows with =, a configured key with IS NOT DISTINCT FROM', () => {
  const pk = captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'] });
  assert.ok(pk.includes('n."a" = o."a" and n."b" = o."b"'));
  const configured = captureFunctionSql('pg2crate', { ...TARGET, keyColumns: ['a', 'b'], keyOrigin: 'config' });
  assert.ok(configured.includes('n."a" is not distinct from o."a" and n."b" is not distinct from o."b"'));
});

test('four statement-level triggers with transition tables, each dropped first so that adding again is harmless', () => {
  const stmts = createTriggersSql('pg2crate', TARGET);
  assert.deepEqual(stmts.slice(0, 4), dropTriggersSql('pg2crate', TARGET.sourceSchema, TARGET.sourceTable));
  assert.ok(stmts.slice(0, 4).every((s) => s.startsWith('drop trigger if exists ')));
  const creates = stmts.slice(4);
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
