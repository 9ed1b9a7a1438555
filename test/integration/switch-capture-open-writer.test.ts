// The switch back to triggers does not lose an outbox event of a transaction that drew its id
// before the switch read the outbox's lower id bound and commits after the stop mark: such a
// transaction is not applied from the slot (it commits after the mark) and must be read from the
// outbox. A repair (`verify --repair`) writes such events; here one stays open across the switch
// while four writers keep writing.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { assertNoLeaks, assertSameRows, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor } from '../helpers/replication.js';
import { startSwitchBed, startWriters, switchCapture, type SwitchBed } from '../helpers/switch-writers.js';
import { listTables, RegistryCatalog } from '../../src/capture/registry.js';
import { resendSql } from '../../src/resend.js';
import { TAKE_XID } from '../../src/capture/outbox-bounds.js';
import { needsServer } from '../helpers/server-version.js';

/** The whole file is about pgoutput mode, which pg2crate refuses before PostgreSQL 14. */
const skip = needsServer(14, 'pgoutput mode');

let bed: SwitchBed;
let srcUrl: string;
let src: pg.Pool;
let dst: pg.Pool;
let env: Record<string, string>;

before(async () => {
  if (skip) return;
  // Row 5000 is out of the writers' reach: only the repair changes its fate in the target.
  bed = await startSwitchBed('open_writer', `; insert into items values (5000, 5000, 'repaired')`);
  ({ srcUrl, src, dst, env } = bed);
});

after(async () => {
  await bed?.close();
  await assertNoLeaks();
});

test('a repair that is open while the switch back reads its bounds and commits after the stop mark reaches the target', { skip }, async () => {
  const writers = startWriters(srcUrl);
  const repair = new pg.Client({ connectionString: srcUrl, application_name: 'repair' });
  await repair.connect();
  try {
    await switchCapture(makeConfig(env), testLogger(), 'pgoutput');
    const p = await startReplicator(makeConfig({ ...env, PG2CRATE_CAPTURE: 'pgoutput' }), testLogger());
    await new Promise((r) => setTimeout(r, 1500));
    await p.stop();
    // The target lost row 5000; a repair re-sends it, the way `verify --repair` does, and stays open.
    await dst.query(`delete from items where id = 5000`);
    const [items] = (await listTables(src, 'pg2crate')).filter((t) => t.sourceTable === 'items');
    const sql = resendSql('pg2crate', await new RegistryCatalog(src, 'pg2crate').describe(items.id));
    await repair.query('begin');
    await repair.query(TAKE_XID);
    assert.equal((await repair.query(sql.upsert, ['[{"id": 5000}]'])).rowCount, 1);
    // Commit once the switch has emitted its stop mark (or after 10 s, whichever comes first).
    const committed = waitFor('the stop mark', async () => {
      const r = await src.query(`select stop_marker is not null as marked from pg2crate.capture where stream = 'main'`);
      return r.rows[0]?.marked === true;
    }, 10_000).catch(() => {}).then(() => repair.query('commit'));
    await switchCapture(makeConfig(env), testLogger(), 'trigger');
    await committed;
    const t = await startReplicator(makeConfig(env), testLogger());
    try {
      await new Promise((r) => setTimeout(r, 1500));
      await writers.stop();
      await waitCaughtUp(src);
    } finally {
      await t.stop();
    }
  } finally {
    await writers.stop().catch(() => {});
    await repair.end();
  }
  const row = await dst.query(`select note from items where id = 5000`);
  assert.deepEqual(row.rows, [{ note: 'repaired' }], 'the repair committed after the stop mark was lost');
  await assertSameRows(src, dst, 'public.items', 'public.items', ['id']);
  await assertSameRows(src, dst, 'public.pairs', 'public.pairs', ['a', 'b']);
  assert.ok(await assertSameRows(src, dst, 'public.log', 'public.log', ['seq']) > 300);
});
