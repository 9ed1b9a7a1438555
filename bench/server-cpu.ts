// CPU time spent by one Postgres server, read from /proc: the postmaster's own utime+stime, plus
// cutime+cstime (the CPU of children that have exited and been reaped: backends of connections that
// closed during the measurement), plus utime+stime of every live child (backends, walwriter,
// autovacuum …). The difference of two readings is the server's CPU between them, whatever
// connections came and went. Linux only; the client (pgbench, this process) is not included.
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

interface Stat {
  ppid: number;
  utime: number;
  stime: number;
  cutime: number;
  cstime: number;
}

function stat(pid: number | string): Stat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null; // exited meanwhile
  }
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state); fields 4, 14, 15, 16, 17 are ppid, utime, stime, cutime, cstime.
  return { ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]), cutime: Number(f[13]), cstime: Number(f[14]) };
}

/** The postmaster's pid, found as the parent of this connection's backend. */
export async function postmasterPid(db: pg.Pool | pg.Client): Promise<number> {
  const res = await db.query<{ pid: number }>('select pg_backend_pid() as pid');
  const s = stat(res.rows[0].pid);
  if (!s) throw new Error('cannot read /proc for the backend: is the server on this machine?');
  return s.ppid;
}

/** CPU seconds one process has used so far (its own, not its children's); 0 once it is gone. */
export function processCpuSeconds(pid: number): number {
  const s = stat(pid);
  return s ? (s.utime + s.stime) / TICKS : 0;
}

/** CPU seconds one thread of a process has used so far (the main thread: tid = pid); 0 once it is gone. */
export function threadCpuSeconds(pid: number, tid: number): number {
  const s = stat(`${pid}/task/${tid}`);
  return s ? (s.utime + s.stime) / TICKS : 0;
}

/** Seconds of CPU the server has used so far (see the top of this file). */
export function serverCpuSeconds(postmaster: number): number {
  const pm = stat(postmaster);
  if (!pm) throw new Error(`postmaster ${postmaster} is gone`);
  let ticks = pm.utime + pm.stime + pm.cutime + pm.cstime;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const s = stat(entry);
    if (s && s.ppid === postmaster) ticks += s.utime + s.stime;
  }
  return ticks / TICKS;
}

/** The last lines of a throwaway cluster's server log (test/helpers/cluster.ts keeps it next to a `port` file), for failures. */
export function clusterLogTail(url: string, lines = 40): string {
  const port = new URL(url).port;
  const root = tmpdir();
  for (const d of readdirSync(root)) {
    if (!d.startsWith('pg2crate-test-')) continue;
    try {
      if (readFileSync(join(root, d, 'port'), 'utf8').trim() !== port) continue;
      return readFileSync(join(root, d, 'log'), 'utf8').split('\n').slice(-lines).join('\n');
    } catch { /* another cluster, or gone */ }
  }
  return `(no server log found for port ${port})`;
}
