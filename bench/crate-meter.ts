// The CPU of CrateDB's JVM, read from /proc (so the server must run on this machine).
import { readdirSync, readFileSync } from 'node:fs';
import { processCpuSeconds } from './server-cpu.js';

/** Pids of the CrateDB JVMs on this machine (command lines that run io.crate.bootstrap.CrateDB). */
export function crateJvmPids(): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('io.crate.bootstrap.CrateDB')) out.push(Number(entry));
    } catch { /* gone meanwhile */ }
  }
  return out;
}

/** CPU seconds the CrateDB JVMs have used so far (0 without one on this machine). */
export function crateCpuSeconds(pids: readonly number[]): number {
  return pids.reduce((n, pid) => n + processCpuSeconds(pid), 0);
}
