// The log's two forms and who chooses: LOG_FORMAT, else a terminal gets readable lines and anything
// else JSON; the readable form of a line; and one key once per line through the component children.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseLogFormat, createLogger } from '../../src/core/logger.js';
import { prettyLine } from '../../src/core/log-pretty.js';
import { loadConfig } from '../../src/core/config.js';
import { duplicateKeys, isLogLine } from '../helpers/log-lines.js';

test('LOG_FORMAT chooses the form; unset, a terminal gets pretty lines and a pipe or file JSON', () => {
  assert.equal(chooseLogFormat(undefined, true), 'pretty');
  assert.equal(chooseLogFormat(undefined, false), 'json');
  assert.equal(chooseLogFormat('json', true), 'json');
  assert.equal(chooseLogFormat('pretty', false), 'pretty');
  const base = { DATABASE_URL: 'postgres://a@h/db', TARGET_DATABASE_URL: 'postgres://b@h/db' };
  assert.equal(loadConfig(base).logFormat, undefined);
  assert.equal(loadConfig({ ...base, LOG_FORMAT: 'pretty' }).logFormat, 'pretty');
  assert.throws(() => loadConfig({ ...base, LOG_FORMAT: 'text' }), /LOG_FORMAT.*expected one of json, pretty, got "text"/);
});

test('a pretty line shows time, level, component and message, then the fields as key=value; an error its stack', () => {
  const json = JSON.stringify({
    level: 40, time: '2026-12-06T20:15:21.123Z', service: 'pg2crate', component: 'drainer', table: 'public.items', events: 5000,
    note: 'two words', nested: { a: 1 }, msg: 'page applied',
  });
  const line = prettyLine(`${json}\n`, false);
  assert.match(line, /^\d\d:\d\d:\d\d\.123 WARN  drainer: page applied table=public\.items events=5000 note="two words" nested=\{"a":1\}\n$/);
  assert.ok(!isLogLine(line.trim()), 'the pretty form is not a JSON log line');
  const err = prettyLine(JSON.stringify({ level: 50, time: 0, msg: 'failed', err: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at f (x.ts:1:1)' } }), false);
  assert.match(err, /ERROR failed err=boom\n {4}at f \(x\.ts:1:1\)\n$/);
  assert.match(prettyLine(JSON.stringify({ level: 30, time: 0, msg: 'm' }), true), /\x1b\[32mINFO \x1b\[0m m/);
  assert.equal(prettyLine('not json\n', false), 'not json\n');
});

test('the duplicate-key scan finds a key written twice in one object, also nested, and nothing in a clean line', () => {
  assert.deepEqual(duplicateKeys('{"component":"runner","component":"outbox","msg":"x"}'), ['component']);
  assert.deepEqual(duplicateKeys('{"a":{"b":1,"b":2},"c":[{"d":1},{"d":2}],"e":"{\\"a\\":1,\\"a\\":2}"}'), ['a.b']);
  assert.deepEqual(duplicateKeys('{"a":1,"b":[1,2,{"a":1}],"c":{"a":{"a":1}}}'), []);
});

test('a component child of the root writes component once; a child of that child would write it twice', () => {
  const lines: string[] = [];
  const root = createLogger('info', { write: (l: string) => { lines.push(l); } });
  root.child({ component: 'drainer' }).info({ table: 't' }, 'one');
  root.child({ component: 'runner' }).child({ component: 'outbox' }).info('two');
  assert.deepEqual(duplicateKeys(lines[0]), []);
  assert.deepEqual(duplicateKeys(lines[1]), ['component'], 'pino keeps both, which is why modules pass the root down');
});
