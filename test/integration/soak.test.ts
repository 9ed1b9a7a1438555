// Two minutes of the soak (test/soak/main.ts, `npm run soak`) as a child process: writers on several
// tables, SIGKILL of the replicator with a standby taking over, source restarts (fast and immediate),
// the target away, an initial load of 200,000 rows started mid-run, verify --repair, dead letters and
// their retry, retention every few seconds. The soak exits 0 only when the target equals the source
// row by row and every committed event lay in exactly one drain window; otherwise it keeps the
// evidence under .tmp/soak/ and says where.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let child: ChildProcess | null = null;

after(async () => {
  // A soak cut short (a timeout) cleans up after itself on SIGTERM: its clusters, processes, proxy.
  const c = child;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(t);
});

test('two minutes of writers, faults, an initial load and repairs lose no committed change', { timeout: 8 * 60_000 }, async () => {
  const c = spawn(process.execPath, ['--import', 'tsx', 'test/soak/main.ts', '--minutes=2'], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  child = c;
  let out = '';
  c.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  c.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const code = await new Promise<number | string>((resolve) => c.once('close', (n, s) => resolve(n ?? s ?? 'unknown')));
  const tail = out.trimEnd().split('\n').slice(-40).join('\n');
  assert.equal(code, 0, `the soak exited with ${code}:\n${tail}`);
  assert.match(out, /differences found: 0\n/, `the soak did not report zero differences:\n${tail}`);
  // the totals, for whoever reads the test output
  console.log(out.slice(out.lastIndexOf('\n', out.indexOf('minutes run:')) + 1).trimEnd());
});
