// A key column renamed in the source, with a real CrateDB target (README "Schema changes"): a
// partitioned table written through its root and a partition, and a table whose include list names
// the key. The CrateDB table keeps the old primary key, so every change is parked; once the
// operator renames the CrateDB column too (`ALTER TABLE … RENAME COLUMN`), the retry makes both
// equal to the source.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { retryDeadLetters } from '../../src/commands/dead-letters.js';
import { qualify } from '../../src/core/identifiers.js';
import { as, assertSameAsSource, skipWithoutCrate, sourceAndCrate } from '../helpers/cratedb.js';
import { lettersOf } from '../helpers/key-rename.js';
import { makeConfig, startReplicator, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';

describe('a key column renamed, with a real CrateDB', { skip: skipWithoutCrate }, () => {
  let rep: Running | undefined;
  const suite = sourceAndCrate('key_rename', () => [rep]);
  const V = [{ name: 'v', pg: 't.v', crate: 'v', norm: as.text }];
  const same = (table: string) => assertSameAsSource(suite.src, `public.${table}`, suite.crate, suite.schema, table, { pg: 't.ident', crate: 'ident' }, V);

  test('changes of a partitioned table and of an include list are parked until the CrateDB column is renamed, then the retry makes both equal to the source', async () => {
    const { src } = suite;
    await src.query(`
      create table pk (id int primary key, v text) partition by range (id);
      create table pk1 partition of pk for values from (0) to (100);
      create table pk2 partition of pk for values from (100) to (200);
      create table narrow (id int primary key, v text, secret text);
      insert into pk select g, 'row ' || g from generate_series(1, 5) g union all select g, 'row ' || g from generate_series(101, 105) g;
      insert into narrow select g, 'row ' || g, 'secret ' || g from generate_series(1, 5) g;`);
    rep = await startReplicator(makeConfig(
      { DATABASE_URL: suite.srcUrl, CRATEDB_URL: process.env.CRATEDB_URL, PG2CRATE_TARGET_SCHEMA: suite.schema, PG2CRATE_PARTITION_WATCH_MS: '300', PG2CRATE_RETENTION_CRON: 'off' },
      { tables: ['public.pk', { name: 'public.narrow', includeColumns: ['id', 'v'] }] },
    ));
    await waitCaughtUp(src);

    await src.query(`alter table pk rename column id to ident; alter table narrow rename column id to ident`);
    for (const t of ['pk', 'narrow']) {
      await waitFor(`updates of ${t} to work again`, () => src.query(`update ${t} set v = 'after' where ident = 1`).then(() => true, () => false), 15_000, 100);
    }
    await src.query(`update pk2 set v = 'through pk2' where ident = 102; delete from pk1 where ident = 2; update pk set ident = 106 where ident = 3; insert into pk2 values (107, 'new')`);
    await src.query(`delete from narrow where ident = 2; insert into narrow values (6, 'new', 'secret 6')`);
    await waitCaughtUp(src);
    for (const t of ['pk', 'narrow']) {
      const letters = await lettersOf(rep.runner, `public.${t}`);
      assert.ok(letters.length >= 3, `${letters.length} letters of ${t}`);
      for (const l of letters) assert.match(l.error, new RegExp(`${suite.schema}\\.${t} is keyed by \\(id\\) but the changes of public\\.${t} are keyed by \\(ident\\).*ALTER TABLE … RENAME COLUMN`));
    }

    for (const t of ['pk', 'narrow']) await suite.crate.sql(`ALTER TABLE ${qualify(suite.schema, t)} RENAME COLUMN id TO ident`);
    await retryDeadLetters(rep.runner, 'all');
    await waitCaughtUp(src);
    assert.deepEqual([...await lettersOf(rep.runner, 'public.pk'), ...await lettersOf(rep.runner, 'public.narrow')], []);
    assert.equal(await same('pk'), 10);
    assert.equal(await same('narrow'), 5);
    const cols = await suite.crate.sql(`SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = 'narrow' ORDER BY ordinal_position`, [suite.schema]);
    assert.deepEqual(cols.rows.map((r) => r[0]), ['ident', 'v']);
  });
});
