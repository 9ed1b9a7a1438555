// What the one-shot commands print, run as a user runs them (the CLI as a child process): the result
// on stdout for a person, with no log line in it, or one JSON document with --json; their log on
// stderr, as JSON or readable lines (LOG_FORMAT, else whether stderr is a terminal: tried through
// a pseudo-terminal); status with a running initial load's progress on a table never analysed; and
// verify --repair with no replicator running, which applies the repair itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Sink, SinkTableBatch, ApplyResult } from '../../src/sink/sink.js';
import type { TableInfo } from '../../src/core/change.js';
import { clusterForFile } from '../helpers/file-cluster.js';
import { runCli } from '../helpers/child-replicator.js';
import { isLogLine } from '../helpers/log-lines.js';
import { assertSameRows, makeConfig, startReplicator, testLogger, waitFor } from '../helpers/replication.js';

const bed = clusterForFile();
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** util-linux `script` gives a child a pseudo-terminal; without it the terminal half of the LOG_FORMAT test is skipped. */
const noPty = spawnSync('sh', ['-c', 'command -v script'], { encoding: 'utf8' }).status === 0 ? false : 'util-linux `script` is not installed (it lends the CLI a pseudo-terminal)';

const lines = (text: string) => text.split(/\r?\n/).filter((l) => l.trim() !== '');

/** The CLI under a pseudo-terminal (util-linux `script`): stdout and stderr are that terminal, merged. */
async function runInTerminal(env: Record<string, string>, args: string[]): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, '--import', 'tsx', 'src/cli.ts', ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('script', ['-qec', command, '/dev/null'], {
    cwd: ROOT, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', TERM: 'dumb', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  return { code, output };
}

test('verify prints its report for a person with no log line on stdout, logs on stderr, and --json is one document', async () => {
  const { env, dst } = await bed.settled(`create table items (id int primary key, v text); insert into items select g, 'v' || g from generate_series(1, 300) g;`,
    { PG2CRATE_TABLES: 'public.items', LOG_LEVEL: 'info' });
  await dst.query(`update items set v = 'tampered' where id = 7`);

  const human = await runCli(env, ['verify']);
  assert.equal(human.code, 1, human.stderr);
  assert.ok(lines(human.stdout).length > 0);
  for (const l of lines(human.stdout)) assert.ok(!isLogLine(l) && !l.startsWith('{'), `a JSON line on stdout:\n${l}`);
  assert.match(human.stdout, /^table +result +source rows +target rows +missing +extra +different +time\npublic\.items +DIFFERENT +300 +300 +0 +0 +1 +\d+\.\d s$/m);
  assert.match(human.stdout, /^ {2}different: \{"id": 7\}$/m);
  // the log is there, on stderr, as JSON lines (stderr is no terminal here)
  const logged = lines(human.stderr);
  assert.ok(logged.some((l) => isLogLine(l) && JSON.parse(l).msg === 'table verified'), `no log on stderr:\n${human.stderr}`);
  for (const l of logged) assert.ok(isLogLine(l), `not a JSON log line on stderr: ${l}`);

  const machine = await runCli(env, ['verify', '--json']);
  assert.equal(machine.code, 1, machine.stderr);
  const doc = JSON.parse(machine.stdout) as { equal: boolean; tables: { table: string; differences: { different: { keys: string[] } } }[] };
  assert.equal(doc.equal, false);
  assert.deepEqual(doc.tables[0].differences.different.keys, ['{"id": 7}']);
  assert.ok(lines(machine.stderr).some(isLogLine), 'the log still goes to stderr');
});

test('verify --repair with no replicator running applies the repair itself and ends with the target equal to the source', async () => {
  const { env, src, dst } = await bed.settled(`create table items (id int primary key, v text); insert into items select g, 'v' || g from generate_series(1, 500) g;`,
    { PG2CRATE_TABLES: 'public.items' });
  // differences of every kind, behind the replicator's back, and a change no replicator applied yet
  await dst.query(`update items set v = 'tampered' where id = 10; delete from items where id between 20 and 29; insert into items values (9999, 'stray')`);
  await src.query(`update items set v = 'changed after the replicator stopped' where id = 400`);
  const running = await src.query(`select count(*)::int as n from pg_locks where locktype = 'advisory' and granted`);
  assert.equal(running.rows[0].n, 0, 'no replicator may hold the stream in this test');

  const res = await runCli(env, ['verify', '--repair', '--json']);
  assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
  assert.equal(res.stderr, '', 'LOG_LEVEL unset: a one-shot command logs only warnings and errors, and there were none');
  const doc = JSON.parse(res.stdout) as { equal: boolean; tables: { repair: { catchUp: string; upserts: number; deletes: number } }[] };
  assert.equal(doc.equal, true);
  assert.equal(doc.tables[0].repair.catchUp, 'applied-here');
  assert.equal(doc.tables[0].repair.deletes, 1);
  // Not pg2crate's word for it: the target's rows, compared with the source's.
  assert.equal(await assertSameRows(src, dst, 'public.items', 'public.items', ['id']), 500);

  // The text form says who applied it.
  await dst.query(`delete from items where id = 33`);
  const text = await runCli(env, ['verify', '--repair']);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /no replicator was running: verify applied the repair itself/);
  assert.equal(await assertSameRows(src, dst, 'public.items', 'public.items', ['id']), 500);
});

/** A sink that applies the first `allowed` batches, then holds the rest until released: a load stays under way while status looks. */
class HoldingSink implements Sink {
  #allowed: number;
  constructor(readonly inner: Sink, allowed: number, readonly released: Promise<void>) { this.#allowed = allowed; }
  get name() { return this.inner.name; }
  start() { return this.inner.start(); }
  prepare(t: TableInfo) { return this.inner.prepare(t); }
  async apply(b: SinkTableBatch[]): Promise<ApplyResult> {
    if (this.#allowed-- <= 0) await this.released;
    await sleep(20); // a measurable rate
    return this.inner.apply(b);
  }
  stop() { return this.inner.stop(); }
}

test('status shows a running initial load of a table never analysed: rows of a non-zero estimate, rows/s, ETA; --json the same', async () => {
  const { srcUrl, dstUrl, src } = await bed.databases();
  const ROWS = 60_000;
  // autovacuum off for this table: nothing analyses it behind the test's back
  await src.query(`create table never (id int primary key, v text) with (autovacuum_enabled = false)`);
  await src.query(`insert into never select g, repeat('x', 28) from generate_series(1, ${ROWS}) g`);
  const reltuples = async () => Number((await src.query(`select reltuples from pg_class where oid = 'public.never'::regclass`)).rows[0].reltuples);
  assert.ok(await reltuples() <= 0, 'the table must never have been analysed');
  const env = { DATABASE_URL: srcUrl, TARGET_DATABASE_URL: dstUrl, PG2CRATE_TABLES: 'public.never', PG2CRATE_BACKFILL_CHUNK_ROWS: '500' };
  let release!: () => void;
  const released = new Promise<void>((r) => { release = r; });
  const rep = await startReplicator(makeConfig(env), testLogger(), { wrapSink: (s) => new HoldingSink(s, 8, released) });
  try {
    await waitFor('the load under way', async () => Number((await src.query(`select rows_copied from pg2crate.backfills`)).rows[0]?.rows_copied ?? 0) >= 2000, 60_000, 50);
    const machine = await runCli(env, ['status', '--json']);
    assert.equal(machine.code, 0, machine.stderr);
    const st = JSON.parse(machine.stdout) as { tables: { name: string; load: { status: string; rowsCopied: number; rowsEstimate: number; rowsPerSecond: number; etaSeconds: number | null } }[] };
    const load = st.tables.find((t) => t.name === 'public.never')?.load;
    assert.ok(load, machine.stdout);
    assert.equal(load.status, 'running');
    assert.ok(load.rowsCopied >= 2000 && load.rowsCopied < ROWS, `copied ${load.rowsCopied}`);
    // the estimate is the planner's, not reltuples (0 or -1 here): near the real count
    assert.ok(load.rowsEstimate >= ROWS / 2 && load.rowsEstimate <= ROWS * 2, `estimate ${load.rowsEstimate} for ${ROWS} rows`);
    assert.ok(load.rowsPerSecond > 0);
    assert.ok(load.etaSeconds !== null && load.etaSeconds >= 0);

    const human = await runCli(env, ['status']);
    assert.equal(human.code, 0, human.stderr);
    for (const l of lines(human.stdout)) assert.ok(!l.startsWith('{'), `a JSON line on stdout: ${l}`);
    assert.match(human.stdout, /^public\.never +public\.never +id +yes +copying: [\d,]+ of ~[\d,]+ rows \(\d+%\), [\d,]+ rows\/s, ETA \d+ (s|min)/m);
    assert.match(human.stdout, /^stream +main \(trigger capture, schema pg2crate\)$/m);
    assert.match(human.stdout, /^drainer +pid \d+/m);
    release();
    await waitFor('the load to end', async () => (await src.query(`select status from pg2crate.backfills`)).rows[0].status === 'done', 60_000);
  } finally {
    release();
    await rep.stop();
  }
  assert.ok(await reltuples() <= 0, 'nothing analysed the table meanwhile, so the estimate did not come from reltuples');
});

test('LOG_FORMAT: unset, a terminal gets readable lines and a pipe JSON; json and pretty choose either way', { skip: noPty }, async () => {
  const { env } = await bed.settled(`create table t (id int primary key); insert into t select generate_series(1, 10);`, { PG2CRATE_TABLES: 'public.t', LOG_LEVEL: 'info' });
  const pretty = /^\d\d:\d\d:\d\d\.\d{3} INFO {2}\S+: /;
  const check = (output: string, want: 'json' | 'pretty', how: string) => {
    const logs = lines(output).filter((l) => !l.startsWith('caught up'));
    assert.ok(logs.length > 0, `${how}: no log lines`);
    for (const l of logs) assert.ok(want === 'json' ? isLogLine(l) : pretty.test(l.replace(/\r|\x1b\[[0-9;]*[A-Za-z]/g, '')), `${how}: not a ${want} line: ${JSON.stringify(l)}`);
  };
  const terminal = await runInTerminal(env, ['catch-up']);
  assert.equal(terminal.code, 0, terminal.output);
  check(terminal.output, 'pretty', 'terminal, LOG_FORMAT unset');
  assert.match(terminal.output, /caught up: \d+ event\(s\) applied/);
  check((await runInTerminal({ ...env, LOG_FORMAT: 'json' }, ['catch-up'])).output, 'json', 'terminal, LOG_FORMAT=json');
  const piped = await runCli(env, ['catch-up']);
  assert.equal(piped.code, 0, piped.stderr);
  assert.deepEqual(lines(piped.stdout), [piped.stdout.trim()], 'the result alone on stdout');
  check(piped.stderr, 'json', 'pipe, LOG_FORMAT unset');
  const pipedPretty = await runCli({ ...env, LOG_FORMAT: 'pretty' }, ['catch-up', '--json']);
  check(pipedPretty.stderr, 'pretty', 'pipe, LOG_FORMAT=pretty');
  assert.equal(typeof (JSON.parse(pipedPretty.stdout) as { appliedEvents: number }).appliedEvents, 'number');
});
