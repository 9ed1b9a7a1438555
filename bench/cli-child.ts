// The pg2crate CLI as a user runs it, in a child process started from a checkout: as built
// (`node dist/cli.js`, what bin/pg2crate.js runs in the npm package and the Docker image) or from
// the TypeScript source under tsx (`node --import tsx src/cli.ts`, what `npm start` runs). Its CPU
// and peak resident set are read from /proc while it lives, so they are the replicator's alone,
// not a benchmark's that happens to host it.
//
// The build goes to a temporary directory, never to the checkout's dist/: bin/pg2crate.js prefers
// a dist/ it finds, and one left behind by a benchmark would go stale as the sources change.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { memoryOf } from '../test/helpers/child-replicator.js';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** How the CLI runs: compiled, or from source under tsx. */
export type CliMode = 'dist' | 'tsx';

export const CLI_MODES: readonly CliMode[] = ['dist', 'tsx'];

/** A checkout prepared to run its CLI both ways. */
export interface CliCheckout {
  dir: string;
  /** the temporary directory holding the compiled build (dist/, with migrations/ and node_modules/ linked beside it) */
  built: string;
}

/** Compiles a checkout's sources into a temporary directory laid out like the npm package. */
export function buildCheckout(dir: string): CliCheckout {
  const root = resolve(dir);
  const built = mkdtempSync(join(tmpdir(), 'pg2crate-bench-dist-'));
  try {
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(built, 'dist')], { stdio: 'inherit' });
    // dist/capture/migrate.js reads ../../migrations/; packages resolve from node_modules/ above dist/; package.json says ESM.
    symlinkSync(join(root, 'migrations'), join(built, 'migrations'));
    symlinkSync(join(root, 'node_modules'), join(built, 'node_modules'));
    copyFileSync(join(root, 'package.json'), join(built, 'package.json'));
  } catch (err) {
    rmSync(built, { recursive: true, force: true });
    throw err;
  }
  return { dir: root, built };
}

export function removeBuild(c: CliCheckout): void {
  rmSync(c.built, { recursive: true, force: true });
}

/** Starts `pg2crate <args>` from the checkout; `nodeFlags` go before the script (profiling, V8 flags). */
export function spawnCli(c: CliCheckout, mode: CliMode, args: string[], env: Record<string, string>, nodeFlags: string[] = []): ChildProcess {
  const script = mode === 'dist' ? [join(c.built, 'dist', 'cli.js')] : ['--import', 'tsx', join(c.dir, 'src', 'cli.ts')];
  return spawn(process.execPath, [...nodeFlags, ...script, ...args], {
    cwd: mode === 'dist' ? c.built : c.dir,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

/** One of the process's memory figures from /proc (memoryOf), in MiB; throws when it cannot be read. */
function memoryMiB(pid: number, which: 'peak' | 'rss'): number {
  const bytes = memoryOf(pid)?.[which] ?? NaN;
  if (!Number.isFinite(bytes)) throw new Error(`no ${which === 'peak' ? 'VmHWM' : 'VmRSS'} in /proc/${pid}/status`);
  return bytes / 1024 / 1024;
}

/** The process's peak resident set so far (VmHWM), in MiB; it never goes down, so one read at the end is the peak. */
export function peakRssMiB(pid: number): number {
  return memoryMiB(pid, 'peak');
}

/** The process's resident set now (VmRSS), in MiB. */
export function rssMiB(pid: number): number {
  return memoryMiB(pid, 'rss');
}

/** Stops the child with SIGTERM (graceful) and waits for it; SIGKILL after `ms`. Resolves to its exit code or signal. */
export async function stopChild(child: ChildProcess, ms = 30_000): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode ?? child.signalCode!;
  const exited = new Promise<number | string>((r) => child.once('exit', (code, sig) => r(code ?? sig ?? 'unknown')));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}
