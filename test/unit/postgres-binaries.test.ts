import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseBinaries, npmPackageName } from '../helpers/postgres-binaries.js';

test('PG2CRATE_TEST_PG picks the npm package of that major, even beside the system binaries', () => {
  assert.deepEqual(chooseBinaries('13', '/usr/lib/postgresql/15/bin', [13, 18]), { from: 'npm', major: 13 });
});

test('a major asked for and not installed fails naming its package and what to do instead', () => {
  assert.throws(() => chooseBinaries('14', '/usr/lib/postgresql/15/bin', [13, 18]), (err: Error) => {
    assert.match(err.message, new RegExp(`^PG2CRATE_TEST_PG=14: package ${npmPackageName(14)} is not installed`));
    assert.match(err.message, /npm ci/);
    return true;
  });
  assert.throws(() => chooseBinaries('12', undefined, [13]), /^Error: PG2CRATE_TEST_PG=12: expected one of 13, 14, 15, 16, 17, 18$/);
});

test('without PG2CRATE_TEST_PG the system binaries come first, then the newest npm package', () => {
  assert.deepEqual(chooseBinaries(undefined, '/usr/lib/postgresql/15/bin', [13, 18]), { from: 'system', binDir: '/usr/lib/postgresql/15/bin' });
  assert.deepEqual(chooseBinaries(undefined, undefined, [13, 18, 15]), { from: 'npm', major: 18 });
});

test('with no binaries at all the message says how to get some', () => {
  assert.throws(() => chooseBinaries(undefined, undefined, []), /no PostgreSQL server binaries.*npm ci.*apt-get install -y postgresql.*TEST_DATABASE_URL/);
});
