import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, classify, ConfigError, describe, SchemaVersionError, TableError, TargetError, targetUnreachable, type ErrorKind } from '../../src/core/errors.js';

/** An error as node-postgres raises it: a message and a SQLSTATE in `code`. */
function pgError(code: string, message = `pg error ${code}`): Error {
  return Object.assign(new Error(message), { code });
}

function nodeError(code: string): Error {
  return Object.assign(new Error(`connect ${code} 127.0.0.1:5432`), { code, errno: -1, syscall: 'connect' });
}

const TABLE: [string, unknown, ErrorKind][] = [
  // SQLSTATE: connection, serialization and deadlock, resources, operator intervention, locks
  ['08006 connection failure', pgError('08006'), 'retryable'],
  ['08001 cannot connect now', pgError('08001'), 'retryable'],
  ['40001 serialization failure', pgError('40001'), 'retryable'],
  ['40P01 deadlock', pgError('40P01'), 'retryable'],
  ['53300 too many connections', pgError('53300'), 'retryable'],
  ['53100 disk full', pgError('53100'), 'retryable'],
  ['57P01 admin shutdown', pgError('57P01'), 'retryable'],
  ['57P03 cannot connect now (recovery)', pgError('57P03'), 'retryable'],
  ['55P03 lock not available', pgError('55P03'), 'retryable'],
  // a row's value
  ['22003 numeric out of range', pgError('22003'), 'data'],
  ['22P02 invalid text representation', pgError('22P02'), 'data'],
  ['23505 unique violation', pgError('23505'), 'data'],
  ['23502 not null violation', pgError('23502'), 'data'],
  // the target's shape
  ['42703 undefined column', pgError('42703'), 'schema'],
  ['42P01 undefined table', pgError('42P01'), 'schema'],
  ['3F000 invalid schema name', pgError('3F000'), 'schema'],
  // nothing a retry changes
  ['42601 syntax error', pgError('42601'), 'fatal'],
  ['42501 insufficient privilege', pgError('42501'), 'fatal'],
  ['28P01 password authentication failed', pgError('28P01'), 'fatal'],
  ['XX000 internal error', pgError('XX000'), 'fatal'],
  // Node's socket errors
  ['ECONNREFUSED', nodeError('ECONNREFUSED'), 'retryable'],
  ['ECONNRESET', nodeError('ECONNRESET'), 'retryable'],
  ['EPIPE (five capitals, not a SQLSTATE)', nodeError('EPIPE'), 'retryable'],
  ['ETIMEDOUT', nodeError('ETIMEDOUT'), 'retryable'],
  ['ENOTFOUND', nodeError('ENOTFOUND'), 'retryable'],
  ['EAI_AGAIN', nodeError('EAI_AGAIN'), 'retryable'],
  ['UND_ERR_SOCKET (fetch)', nodeError('UND_ERR_SOCKET'), 'retryable'],
  ['ENOENT', nodeError('ENOENT'), 'fatal'],
  ['EACCES', nodeError('EACCES'), 'fatal'],
  // node-postgres messages without a code
  ['Connection terminated unexpectedly', new Error('Connection terminated unexpectedly'), 'retryable'],
  ['Connection terminated due to connection timeout', new Error('Connection terminated due to connection timeout'), 'retryable'],
  ['terminating connection due to administrator command', new Error('terminating connection due to administrator command'), 'retryable'],
  ['fetch failed', new TypeError('fetch failed'), 'retryable'],
  // CrateDB codes on a TargetError
  ['CrateDB 4000 (a value)', new TargetError('bad value', '4000'), 'data'],
  ['CrateDB 4003 (unsupported value)', new TargetError('x', '4003'), 'data'],
  ['CrateDB 4091 (duplicate key)', new TargetError('x', '4091'), 'data'],
  ['CrateDB 4041 (unknown table)', new TargetError('x', '4041'), 'schema'],
  ['CrateDB 4043 (unknown column)', new TargetError('x', '4043'), 'schema'],
  ['CrateDB 4045 (unknown schema)', new TargetError('x', '4045'), 'schema'],
  ['CrateDB 5000 (internal)', new TargetError('x', '5000'), 'retryable'],
  ['CrateDB 5030 (unavailable)', new TargetError('x', '5030'), 'retryable'],
  ['CrateDB 4290 (too many requests)', new TargetError('x', '4290'), 'retryable'],
  ['CrateDB 4010 (unauthorized)', new TargetError('x', '4010'), 'fatal'],
  ['TargetError with a SQLSTATE', new TargetError('x', '23505'), 'data'],
  ['TargetError with EPIPE', new TargetError('x', 'EPIPE'), 'retryable'],
  ['TargetError without a code', new TargetError('x', undefined), 'fatal'],
  // causes are followed, our own classes are always fatal
  ['a wrapper around ECONNRESET', new Error('page failed', { cause: nodeError('ECONNRESET') }), 'retryable'],
  ['a wrapper around a wrapper around 40P01', new Error('a', { cause: new Error('b', { cause: pgError('40P01') }) }), 'retryable'],
  ['ConfigError, even caused by a network error', Object.assign(new ConfigError('X', 'bad'), { cause: nodeError('ECONNRESET') }), 'fatal'],
  ['TableError', new TableError('no primary key'), 'fatal'],
  ['SchemaVersionError', new SchemaVersionError('run npm run migrate'), 'fatal'],
  // anything else
  ['a plain Error', new Error('something else'), 'fatal'],
  ['a string', 'oops', 'fatal'],
  ['null', null, 'fatal'],
  ['undefined', undefined, 'fatal'],
  ['an object with a numeric code', { code: 500 }, 'fatal'],
];

test('the classification table: retryable, data, schema or fatal', () => {
  const wrong = TABLE.filter(([, err, kind]) => classify(err) !== kind).map(([what, err, kind]) => `${what}: expected ${kind}, got ${classify(err)}`);
  assert.deepEqual(wrong, []);
});

test('an error that causes itself does not loop', () => {
  const e = new Error('self') as Error & { cause?: unknown };
  e.cause = e;
  assert.equal(classify(e), 'fatal');
});

test('backoff grows exponentially with jitter, from half the cap to the cap, and stops at the maximum', () => {
  for (let attempt = 0; attempt < 30; attempt++) {
    const cap = Math.min(30_000, 200 * 2 ** Math.min(attempt, 20));
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(attempt);
      assert.ok(d >= cap / 2 - 1 && d <= cap, `attempt ${attempt}: ${d} outside [${cap / 2}, ${cap}]`);
    }
  }
  assert.ok(backoffDelay(1000, 250, 10_000) <= 10_000);
});

test('describe gives the message and the code, and keeps the error class readable', () => {
  assert.equal(describe(pgError('23505', 'duplicate key value')), 'duplicate key value (23505)');
  assert.equal(describe(new Error('plain')), 'plain');
  assert.equal(describe('text'), 'text');
  const c = new ConfigError('PG2CRATE_PAGE_SIZE', 'expected a whole number');
  assert.equal(c.message, 'PG2CRATE_PAGE_SIZE: expected a whole number');
  assert.equal(c.setting, 'PG2CRATE_PAGE_SIZE');
  assert.equal(c.name, 'ConfigError');
  const t = new TargetError('refused', '4000', { cause: pgError('22003') });
  assert.equal(t.code, '4000');
  assert.ok(t.cause instanceof Error, 'the cause is kept as an error, not flattened into text');
});

test('a target that could not be reached is told apart from one that answered with an error', () => {
  for (const code of ['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET', 'ETIMEDOUT', '5030']) assert.equal(targetUnreachable(new TargetError('x', code)), true, code);
  // answered: overloaded (a back-off is what it needs), a value refused, no code at all
  for (const code of ['5000', '4290', '4000', undefined]) assert.equal(targetUnreachable(new TargetError('x', code)), false, String(code));
  // the same codes from the source are not the target's
  assert.equal(targetUnreachable(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })), false);
});
