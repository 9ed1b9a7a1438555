// The sink alone against a real CrateDB, for the facts it relies on that the end-to-end scenarios
// cannot aim at precisely: a truncate right after writes (DELETE without WHERE sees only refreshed
// rows), deletes of keys never written, partial updates of rows written a moment ago, a column
// dropped behind the sink's back, and a target table whose key differs.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Change, ColumnInfo, TableInfo } from '../../src/core/change.js';
import { loadConfig } from '../../src/core/config.js';
import { TableError } from '../../src/core/errors.js';
import { qualify } from '../../src/core/identifiers.js';
import { CrateSink } from '../../src/sink/cratedb/cratedb-sink.js';
import type { CrateClient } from '../../src/sink/cratedb/crate-client.js';
import { crateClient, crateCount, endCrateSuite, skipWithoutCrate, testSchema } from '../helpers/cratedb.js';
import { testLogger } from '../helpers/replication.js';

const COLUMNS: ColumnInfo[] = [
  { name: 'id', type: 'bigint', baseType: 'int8', baseFormatted: 'bigint', dims: 0, typtype: 'b', notNull: true },
  { name: 'v', type: 'text', baseType: 'text', baseFormatted: 'text', dims: 0, typtype: 'b', notNull: false },
  { name: 'w', type: 'integer', baseType: 'int4', baseFormatted: 'integer', dims: 0, typtype: 'b', notNull: false },
];

let nextId = 1;
function change(op: Change['op'], row: Record<string, string | number | null>, partial = false): Change {
  return { id: nextId++, tableId: 1, op, key: String(row.id), row, raw: JSON.stringify(row), ...(partial ? { partial: true } : {}) };
}

describe('the CrateDB sink against a real CrateDB', { skip: skipWithoutCrate }, () => {
  const schema = testSchema('sink');
  let crate: CrateClient;
  let sink: CrateSink;
  const info = (table: string, columns = COLUMNS, keyColumns = ['id']): TableInfo => ({
    id: 1, relid: 1, sourceSchema: 'public', sourceTable: table, targetSchema: schema, targetTable: table, keyColumns, columns,
  });
  const rows = async (table: string) => {
    await crate.sql(`REFRESH TABLE ${qualify(schema, table)}`);
    return (await crate.sql(`SELECT id, v, w FROM ${qualify(schema, table)} ORDER BY id`)).rows;
  };

  before(() => {
    crate = crateClient();
    const config = loadConfig({ DATABASE_URL: 'postgres://unused@127.0.0.1/unused', CRATEDB_URL: process.env.CRATEDB_URL });
    if (config.target.kind !== 'cratedb') throw new Error('unreachable');
    sink = new CrateSink(config.target, config.crate, testLogger());
  });

  after(async () => {
    await sink?.stop();
    await endCrateSuite({ crate, schemas: [schema] });
  });

  test('a truncate right after writes removes every row, refreshed or not', async () => {
    const t = info('trunc');
    await sink.start();
    await sink.prepare(t);
    await crate.sql(`ALTER TABLE ${qualify(schema, 'trunc')} SET (refresh_interval = 600000)`);
    const upserts = Array.from({ length: 50 }, (_, i) => change('I', { id: i, v: 'x', w: i }));
    assert.deepEqual(await sink.apply([{ table: t, truncate: false, deletes: [], upserts }]), { rejected: [] });
    assert.deepEqual(await sink.apply([{ table: t, truncate: true, deletes: [], upserts: [change('I', { id: 1000, v: 'after', w: 1 })] }]), { rejected: [] });
    assert.deepEqual(await rows('trunc'), [[1000, 'after', 1]]);
  });

  test('a created table refreshes every 500 ms (PG2CRATE_CRATE_REFRESH_MS), not at CrateDB\'s default of 1 s', async () => {
    await sink.start();
    await sink.prepare(info('refreshed'));
    const res = await crate.sql(`SELECT settings['refresh_interval'] FROM information_schema.tables WHERE table_schema = ? AND table_name = ?`, [schema, 'refreshed']);
    assert.deepEqual(res.rows, [[500]]);
  });

  test('an initial load into a table found empty keeps a row already there; the same rows as upserts overwrite it', async () => {
    const t = info('keep');
    await sink.start();
    await sink.prepare(t);
    assert.equal(await sink.holdsRows(t), false);
    assert.deepEqual(await sink.apply([{ table: t, truncate: false, deletes: [], upserts: [change('U', { id: 1, v: 'newer', w: 2 })] }]), { rejected: [] });
    // holdsRows counts a row written a moment ago, not yet refreshed
    assert.equal(await sink.holdsRows(t), true);
    const chunk = [change('B', { id: 1, v: 'older', w: 1 }), change('B', { id: 2, v: 'copied', w: 1 })];
    assert.deepEqual(await sink.apply([{ table: t, truncate: false, deletes: [], upserts: chunk, keepExisting: true }]), { rejected: [] });
    assert.deepEqual(await rows('keep'), [[1, 'newer', 2], [2, 'copied', 1]]);
    assert.deepEqual(await sink.apply([{ table: t, truncate: false, deletes: [], upserts: chunk }]), { rejected: [] });
    assert.deepEqual(await rows('keep'), [[1, 'older', 1], [2, 'copied', 1]]);
  });

  test('deletes of keys never written are applied; deletes of rows written a moment ago delete them', async () => {
    const t = info('del');
    await sink.prepare(t);
    await crate.sql(`ALTER TABLE ${qualify(schema, 'del')} SET (refresh_interval = 600000)`);
    await sink.apply([{ table: t, truncate: false, deletes: [], upserts: [change('I', { id: 1, v: 'a', w: 1 }), change('I', { id: 2, v: 'b', w: 2 })] }]);
    const res = await sink.apply([{ table: t, truncate: false, deletes: [change('D', { id: 1 }), change('D', { id: 99 }), change('D', { id: 100 })], upserts: [] }]);
    assert.deepEqual(res, { rejected: [] });
    assert.deepEqual(await rows('del'), [[2, 'b', 2]]);
    // Far more gone keys than CrateDB names reasons for in one request (it answers the rest -2 alone).
    const many = Array.from({ length: 1500 }, (_, i) => change('D', { id: 10_000 + i }));
    assert.deepEqual(await sink.apply([{ table: t, truncate: false, deletes: many, upserts: [] }]), { rejected: [] });
    assert.deepEqual(await rows('del'), [[2, 'b', 2]]);
  });

  test('a partial image updates the columns it carries of a row written a moment ago, and of a missing row changes nothing', async () => {
    const t = info('partial');
    await sink.prepare(t);
    await crate.sql(`ALTER TABLE ${qualify(schema, 'partial')} SET (refresh_interval = 600000)`);
    await sink.apply([{ table: t, truncate: false, deletes: [], upserts: [change('I', { id: 1, v: 'keep me', w: 1 })] }]);
    const res = await sink.apply([{ table: t, truncate: false, deletes: [], upserts: [change('U', { id: 1, w: 2 }, true), change('U', { id: 7, w: 7 }, true)] }]);
    assert.deepEqual(res, { rejected: [] });
    assert.deepEqual(await rows('partial'), [[1, 'keep me', 2]]);
  });

  test('a column dropped in CrateDB behind the sink is added again after one re-read, and the rows arrive', async () => {
    const t = info('drift');
    await sink.prepare(t);
    await sink.apply([{ table: t, truncate: false, deletes: [], upserts: [change('I', { id: 1, v: 'a', w: 1 })] }]);
    await crate.sql(`ALTER TABLE ${qualify(schema, 'drift')} DROP COLUMN "w"`);
    const res = await sink.apply([{ table: t, truncate: false, deletes: [], upserts: [change('I', { id: 2, v: 'b', w: 2 })] }]);
    assert.deepEqual(res, { rejected: [] });
    assert.deepEqual(await rows('drift'), [[1, 'a', null], [2, 'b', 2]]);
    assert.equal(await crateCount(crate, schema, 'drift'), 2);
  });

  test('a target table whose primary key differs from the source key stops the table with a clear message', async () => {
    await crate.sql(`CREATE TABLE ${qualify(schema, 'otherkey')} ("id" BIGINT, "v" TEXT PRIMARY KEY, "w" INTEGER)`);
    await assert.rejects(sink.prepare(info('otherkey')), (e: unknown) => e instanceof TableError && /has primary key \(v\) but the source key is \(id\)/.test(e.message));
  });
});
