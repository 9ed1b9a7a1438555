// A CrateDB that cannot be reached for a while (a restart, a network cut: a proxy in front of it
// resets every connection). The drainer backs off, up to 30 s between tries; once the target
// answers again it must not sit out the rest of that back-off while the backlog grows, but go on at
// once (it asks the target every second while backing off). The same for an initial load under way.
// And nothing written meanwhile is lost.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { as, assertSameAsSource, CRATEDB_URL, skipWithoutCrate, sourceAndCrate } from '../helpers/cratedb.js';
import { initialLoadsDone, logLines, makeConfig, startReplicator, testLogger, waitCaughtUp, waitFor, type Running } from '../helpers/replication.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

/** A back-off at least this long is under way when the target comes back. */
const LONG_BACKOFF_MS = 8_000;

/** Whether a line logged since `from` says `what` with a back-off of LONG_BACKOFF_MS or more. */
const longWaitLogged = (from: number, what: string) =>
  logLines.slice(from).some((l) => l.includes(what) && Number(/"retryInMs":(\d+)/.exec(l)?.[1] ?? 0) >= LONG_BACKOFF_MS);

describe('a CrateDB away for a while', { skip: skipWithoutCrate }, () => {
  let rep: Running | undefined;
  const suite = sourceAndCrate('away', () => [rep]);

  /**
   * Runs `body` with a replicator of public.`table` that reaches CrateDB through a proxy, then
   * stops it and returns how many rows of the table CrateDB holds, each checked equal to the source.
   */
  async function throughProxy(table: string, env: Record<string, string>, body: (proxy: TcpProxy) => Promise<void>): Promise<number> {
    const { src, srcUrl, crate, schema } = suite;
    const u = new URL(CRATEDB_URL!);
    const proxy = await startTcpProxy(u.hostname, Number(u.port || 4200));
    try {
      rep = await startReplicator(makeConfig({
        DATABASE_URL: srcUrl, CRATEDB_URL: proxy.rewrite(CRATEDB_URL!), PG2CRATE_TARGET_SCHEMA: schema, PG2CRATE_TABLES: `public.${table}`, ...env,
      }), testLogger('info'));
      await body(proxy);
      await waitCaughtUp(src, 'pg2crate', 60_000);
      await rep.stop();
      rep = undefined;
      return await assertSameAsSource(src, `public.${table}`, crate, schema, table, { pg: 't.id', crate: 'id' }, [{ name: 'v', pg: 't.v', crate: 'v', norm: as.text }]);
    } finally {
      await rep?.stop();
      rep = undefined;
      await proxy.close();
    }
  }

  /** Lets the target answer again, and waits for `said` to be logged before the back-off would have ended. */
  async function backBeforeBackOffEnds(proxy: TcpProxy, what: string, said: string): Promise<void> {
    proxy.up();
    const back = logLines.length;
    await waitFor(what, () => logLines.slice(back).some((l) => l.includes(said)), LONG_BACKOFF_MS - 2_000, 100);
  }

  test('the drainer goes on as soon as the target answers again, not after its back-off, and applies everything', async () => {
    const { src } = suite;
    await src.query(`create table public.events (id integer primary key, v text not null)`);
    let id = 100;
    const rows = await throughProxy('events', {}, async (proxy) => {
      await src.query(`insert into events select g, 'before' from generate_series(1, 100) g`);
      await waitCaughtUp(src, 'pg2crate', 60_000);
      proxy.down();
      const from = logLines.length;
      // Writes go on while the target is away, until the drainer has scheduled a long wait.
      await waitFor(`a back-off of ${LONG_BACKOFF_MS} ms or more`, async () => {
        await src.query(`insert into events values ($1, 'while away')`, [++id]);
        return longWaitLogged(from, 'page failed');
      }, 120_000, 200);
      await backBeforeBackOffEnds(proxy, 'the drainer to go on before its back-off is over', 'the target answers again; retrying now');
      await src.query(`insert into events values ($1, 'after')`, [++id]);
    });
    assert.equal(rows, id);
  });

  test('an initial load interrupted by it goes on as soon as the target answers again, and ends equal', async () => {
    const { src } = suite;
    await src.query(`create table public.big (id integer primary key, v text not null)`);
    await src.query(`insert into big select g, 'v' || g from generate_series(1, 200000) g`);
    const rows = await throughProxy('big', { PG2CRATE_BACKFILL_CHUNK_ROWS: '500', PG2CRATE_INITIAL_LOAD: 'direct' }, async (proxy) => {
      await waitFor('the copy under way', async () => Number((await src.query(`select coalesce(max(rows_copied), 0) as n from pg2crate.backfills`)).rows[0].n) > 0, 60_000, 20);
      proxy.down();
      const from = logLines.length;
      await waitFor(`the load to wait ${LONG_BACKOFF_MS} ms or more`, () => longWaitLogged(from, 'initial load interrupted'), 120_000, 100);
      await backBeforeBackOffEnds(proxy, 'the load to go on before its back-off is over', 'the target answers again; resuming the initial load now');
      await waitFor('the initial load', () => initialLoadsDone(src), 180_000, 200);
    });
    assert.equal(rows, 200000);
  });
});
