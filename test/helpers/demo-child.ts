// `pg2crate demo` as a child process (test/integration/demo.test.ts, test/cratedb/demo.test.ts):
// what its output says about its server, and whether anything of it is left.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { ChildReplicator } from './child-replicator.js';

/** Where a real installation's settings would point; the demo must use none of them. */
export const DECOYS = {
  DATABASE_URL: 'postgres://someone:secret@127.0.0.1:1/production',
  TARGET_DATABASE_URL: 'postgres://someone:secret@127.0.0.1:1/warehouse',
  PGHOST: '127.0.0.1', PGPORT: '1', PGDATABASE: 'production', PGUSER: 'someone', PGPASSWORD: 'secret', PGSSLMODE: 'require',
  PG2CRATE_CONFIG: '/nonexistent/production.json',
};

/** The demo's directory and server pid, from its first lines. */
export function started(r: ChildReplicator): { dir: string; pid: number } {
  const dir = /starting a throwaway PostgreSQL in (\S+)/.exec(r.log())?.[1];
  const pid = /PostgreSQL [\d.]+ \(pid (\d+)\)/.exec(r.log())?.[1];
  assert.ok(dir && pid, `no directory or pid in the demo's output:\n${r.log()}`);
  return { dir, pid: Number(pid) };
}

/** Processes whose command line names the directory (the postmaster and its children: -D <dir>/data). */
export function processesIn(dir: string): string[] {
  const ps = spawnSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' }).stdout;
  return ps.split('\n').filter((l) => l.includes(dir));
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function exitOf(r: ChildReplicator, timeoutMs: number): Promise<number | string> {
  const timer = new Promise<string>((resolve) => setTimeout(() => resolve('timeout'), timeoutMs).unref());
  const code = await Promise.race([r.exited, timer]);
  assert.notEqual(code, 'timeout', `the demo did not exit within ${timeoutMs / 1000} s:\n${r.log()}`);
  return code;
}
