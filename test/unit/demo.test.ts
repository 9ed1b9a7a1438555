// The demo's pure parts: the live line's text and its two ways of showing (redrawn on a terminal,
// a plain line every few seconds elsewhere), the configuration it builds (its own server only, of
// the environment only the CrateDB target), and the binary packages it looks for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoConfig, DEMO_CRATE_SCHEMA } from '../../src/commands/demo.js';
import { binaryPackageName, copyPostgresBinaries } from '../../src/demo/embedded-postgres.js';
import { formatLiveLine, LiveLine, type LiveSample } from '../../src/demo/live-line.js';
import { CATALOG } from '../../src/commands/catalog.js';
import { parseCommandLine } from '../../src/commands/command-line.js';

const SAMPLE: LiveSample = {
  elapsedSeconds: 75.4, eventsPerSecond: 1234.4, lagSeconds: 0.26, backlogEvents: 12, transactions: 1500,
  rows: [{ table: 'customers', rows: 212 }, { table: 'orders', rows: 10_503 }],
};

test('the live line names events/s, lag, backlog and the rows of each table', () => {
  assert.equal(
    formatLiveLine(SAMPLE),
    '01:15  1,500 txns written | 1,234 events/s | lag 0.3 s | backlog 12 | target rows: customers 212, orders 10,503',
  );
});

function sink(isTTY: boolean) {
  const writes: string[] = [];
  return { writes, out: { isTTY, columns: 60, write: (t: string) => { writes.push(t); return true; } } };
}

test('a narrow terminal gets the compact line, without clock and writer count; narrower still, it is cut', () => {
  const compact = '1,234 ev/s lag 0.3s backlog 12 | customers 212 orders 10,503';
  assert.equal(formatLiveLine(SAMPLE, 80), compact);
  assert.equal(formatLiveLine(SAMPLE, compact.length), compact);
  assert.equal(formatLiveLine(SAMPLE, 30), `${compact.slice(0, 29)}…`);
});

test('on a terminal the line is redrawn in place, fitted to the width, and finish() ends it', async () => {
  const s = sink(true);
  const live = new LiveLine({ out: s.out, everyMs: 1000, plainEveryMs: 3000, sample: async () => SAMPLE });
  await live.tick();
  await live.tick();
  live.finish();
  assert.equal(s.writes.length, 3);
  for (const w of s.writes.slice(0, 2)) {
    assert.ok(w.startsWith('\r\x1b[2K'), 'carriage return and erase line before each redraw');
    assert.ok(!w.includes('\n'));
    assert.ok(w.length - '\r\x1b[2K'.length <= 59, `longer than the terminal: ${w}`);
  }
  assert.equal(s.writes[2], '\n');
});

test('without a terminal a plain line is written at most every few seconds, unless forced', async () => {
  const s = sink(false);
  const live = new LiveLine({ out: s.out, everyMs: 1000, plainEveryMs: 60_000, sample: async () => SAMPLE });
  await live.tick();
  await live.tick();
  assert.deepEqual(s.writes, [`${formatLiveLine(SAMPLE)}\n`]);
  await live.tick(true);
  live.finish();
  assert.equal(s.writes.length, 2);
  assert.ok(s.writes.every((w) => !w.includes('\r') && !w.includes('\x1b')));
});

test('a failing sample is skipped, not thrown', async () => {
  const s = sink(false);
  const live = new LiveLine({ out: s.out, everyMs: 1000, plainEveryMs: 0, sample: async () => { throw new Error('pool ended'); } });
  await live.tick();
  assert.deepEqual(s.writes, []);
});

const OWN = 'postgres://demo:pw@127.0.0.1:5555/shop?sslmode=disable';
const OWN_TARGET = 'postgres://demo:pw@127.0.0.1:5555/shop_copy?sslmode=disable';
const REAL = { DATABASE_URL: 'postgres://u:p@prod:5432/app', TARGET_DATABASE_URL: 'postgres://u:p@dwh:5432/dwh', PG2CRATE_TABLES: 'public.payroll', PG2CRATE_SCHEMA: 'other' };

test('the demo configuration uses only its own server, whatever DATABASE_URL and TARGET_DATABASE_URL say', () => {
  const c = demoConfig(OWN, OWN_TARGET, REAL);
  assert.equal(c.sourceUrl, OWN);
  assert.deepEqual(c.target, { kind: 'postgres', connectionString: OWN_TARGET });
  assert.equal(c.schema, 'pg2crate');
  assert.deepEqual(c.tables.map((t) => `${t.schema}.${t.table}`), ['shop.customers', 'shop.products', 'shop.orders', 'shop.cart_items']);
  assert.equal(c.targetSchema, undefined);
});

test('with CRATEDB_URL the demo replicates into CrateDB, only into its own schema', () => {
  const c = demoConfig(OWN, undefined, { ...REAL, CRATEDB_URL: 'http://crate:4200', CRATEDB_USER: 'writer', CRATEDB_PASSWORD: 'pw' });
  assert.equal(c.sourceUrl, OWN);
  assert.deepEqual(c.target, { kind: 'cratedb', urls: ['http://crate:4200'], username: 'writer', password: 'pw' });
  assert.equal(c.targetSchema, DEMO_CRATE_SCHEMA);
});

test('the binary packages the demo looks for are the optional dependencies package.json installs', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { optionalDependencies: Record<string, string> };
  const platforms = [['linux', 'x64'], ['linux', 'arm64'], ['darwin', 'x64'], ['darwin', 'arm64']];
  assert.deepEqual(platforms.map(([p, a]) => binaryPackageName(p, a)).sort(), Object.keys(pkg.optionalDependencies).sort());
  assert.equal(binaryPackageName('win32', 'x64'), undefined);
  assert.equal(binaryPackageName('linux', 'ia32'), undefined);
});

test('demo takes --rate and --help but no --config, which it would not read', () => {
  const line = parseCommandLine(['demo', '--rate', '5'], CATALOG);
  assert.ok(line.kind === 'run' && line.command.name === 'demo' && line.values.rate === '5');
  assert.throws(() => parseCommandLine(['demo', '--config', 'x.json'], CATALOG), /unknown option --config for demo/);
  const help = parseCommandLine(['demo', '--help'], CATALOG);
  assert.ok(help.kind === 'help' && !help.text.includes('--config') && help.text.includes('--rate <n>'));
});

test('a binary package installed without its install script is copied runnable: library links made, files opened to all', () => {
  const root = mkdtempSync(join(tmpdir(), 'pg2crate-unit-'));
  try {
    const pkg = join(root, 'pkg');
    mkdirSync(join(pkg, 'native', 'bin'), { recursive: true });
    mkdirSync(join(pkg, 'native', 'lib'), { recursive: true });
    writeFileSync(join(pkg, 'native', 'bin', 'postgres'), '#!/bin/sh\n', { mode: 0o700 });
    writeFileSync(join(pkg, 'native', 'lib', 'libpq.so.5.18'), 'lib', { mode: 0o600 });
    writeFileSync(join(pkg, 'native', 'pg-symlinks.json'), JSON.stringify([
      { source: 'native/lib/libpq.so.5.18', target: 'native/lib/libpq.so.5' },
      { source: 'native/lib/libpq.so.5.18', target: 'native/lib/libpq.so' },
    ]));
    chmodSync(join(pkg, 'native', 'lib'), 0o700);
    const bin = copyPostgresBinaries(pkg, join(root, 'copy'));
    assert.equal(bin, join(root, 'copy', 'native', 'bin'));
    assert.equal(readlinkSync(join(root, 'copy', 'native', 'lib', 'libpq.so.5')), 'libpq.so.5.18', 'a relative link beside its file');
    assert.equal(readFileSync(join(root, 'copy', 'native', 'lib', 'libpq.so'), 'utf8'), 'lib');
    assert.equal(statSync(join(bin, 'postgres')).mode & 0o777, 0o755, 'runnable by everyone');
    assert.equal(statSync(join(root, 'copy', 'native', 'lib', 'libpq.so.5.18')).mode & 0o777, 0o644, 'readable, not made runnable');
    assert.equal(statSync(join(root, 'copy', 'native', 'lib')).mode & 0o777, 0o755);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
