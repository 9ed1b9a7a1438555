// pgbench for the benchmark scenarios: where the binary is, running it, reading its summary.
// Shared by every scenario that drives TPC-B (capture, capture-variants, modes …), so that they
// all count transactions and TPS the same way.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** A Postgres client binary: from PATH, else the newest /usr/lib/postgresql/<v>/bin. */
export function pgBin(name: string): string {
  const onPath = execFileSync('sh', ['-c', `command -v ${name} || true`], { encoding: 'utf8' }).trim();
  if (onPath) return onPath;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    for (const v of readdirSync(root).sort((a, b) => Number(b) - Number(a))) {
      const p = join(root, v, 'bin', name);
      if (existsSync(p)) return p;
    }
  }
  throw new Error(`${name} not found on PATH nor under /usr/lib/postgresql/*/bin`);
}

/** Runs pgbench to the end; resolves with stdout and stderr together, rejects on a non-zero exit. */
export function runPgbench(args: string[], bin = pgBin('pgbench')): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`pgbench exited ${code}:\n${out}`))));
  });
}

export interface PgbenchSummary {
  txns: number;
  /** without the initial connection time */
  tps: number;
}

export function pgbenchSummary(out: string): PgbenchSummary {
  const txns = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
  const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(out)?.[1]);
  if (!txns || !tps) throw new Error(`cannot read pgbench's output:\n${out}`);
  return { txns, tps };
}
