// The README's configuration table is the settings' schemas rendered (src/core/settings.ts): a
// setting added, renamed or given another default without the README (or the other way round) fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { replaceSettingsTable, SETTINGS } from '../../src/core/settings.js';
import { loadConfig } from '../../src/core/config.js';

const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

test("the README's configuration table is the one the settings' schemas give", () => {
  assert.equal(README, replaceSettingsTable(README), 'README.md and src/core/settings.ts disagree: run `npm run docs:settings` and review the diff');
});

test('every variable in the table is one loadConfig reads', () => {
  // A variable set to a value its schema refuses must make loadConfig fail naming it: proof that
  // the table's row is wired to the configuration, not only written down.
  const base = { DATABASE_URL: 'postgres://u@db.example/x', TARGET_DATABASE_URL: 'postgres://u@t.example/y' };
  const free = new Set(['PG2CRATE_TABLES', 'CRATEDB_USER', 'CRATEDB_PASSWORD', 'CRATEDB_URL', 'TARGET_DATABASE_URL']);
  for (const env of Object.values(SETTINGS).map((s): string | null => s.env)) {
    if (env === null || free.has(env)) continue;
    assert.throws(() => loadConfig({ ...base, [env]: '\u0000not valid\u0000' }), (err: Error) => err.message.startsWith(`${env}:`), env);
  }
});
