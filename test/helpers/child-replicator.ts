// The CLI as a child process, for tests that kill it (SIGKILL), run two at once, or measure its
// memory. Output goes to a log file under .tmp/test-logs; every child started here is killed by
// `killReplicators()` (call it in after()) and, as a last resort, when the test process exits.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { LOG_DIR, waitFor } from './replication.js';

/** The repository root: children run the CLI from here, whatever the test's working directory. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = ['--import', 'tsx', 'src/cli.ts'];

export interface ChildReplicator {
  readonly pid: number;
  readonly child: ChildProcess;
  readonly logFile: string;
  /** settles with the exit code (or the signal name) when the process ends */
  readonly exited: Promise<number | string>;
  /** the log written so far */
  log(): string;
  kill(signal?: NodeJS.Signals): void;
  /** SIGKILL, then waits for the exit */
  killHard(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => { for (const c of live) c.kill('SIGKILL'); });
let counter = 0;

/**
 * Starts `node --import tsx src/cli.ts <args>` with `env` on top of a minimal environment (PATH,
 * HOME). Fast poll and standby intervals unless `env` says otherwise.
 */
export function spawnReplicator(env: Record<string, string>, args: string[] = ['start'], name = 'replicator'): ChildReplicator {
  mkdirSync(LOG_DIR, { recursive: true });
  const logFile = `${LOG_DIR}/${process.pid}-${name}-${++counter}.log`;
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [...CLI, ...args], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp',
      PG2CRATE_POLL_INTERVAL_MS: '200', PG2CRATE_STANDBY_RETRY_MS: '200', LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  live.add(child);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve(code ?? signal ?? 'unknown');
    });
  });
  if (child.pid === undefined) throw new Error('could not start the replicator child process');
  return {
    pid: child.pid,
    child,
    logFile,
    exited,
    log: () => readFileSync(logFile, 'utf8'),
    kill: (signal = 'SIGTERM') => { child.kill(signal); },
    async killHard() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs the CLI to completion and returns its exit code and output. */
export function runCli(env: Record<string, string>, args: string[]): Promise<{ code: number | string; stdout: string; stderr: string }> {
  return runCliUntil(env, args);
}

/**
 * Runs the CLI to completion like runCli, unless `signal` aborts first: the child is then killed
 * (SIGKILL) and the result carries that signal as its code.
 */
export async function runCliUntil(env: Record<string, string>, args: string[], signal?: AbortSignal): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [...CLI, ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const kill = () => child.kill('SIGKILL');
  if (signal?.aborted) kill();
  else signal?.addEventListener('abort', kill, { once: true });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const code = await new Promise<number | string>((resolve) => child.once('close', (c, s) => resolve(c ?? s ?? 'unknown')));
  signal?.removeEventListener('abort', kill);
  live.delete(child);
  return { code, stdout, stderr };
}

/** Kills every child process this file started that is still running (SIGKILL) and waits for them. */
export async function killReplicators(): Promise<void> {
  const waits = [...live].map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) return resolve();
    c.once('exit', () => resolve());
    c.kill('SIGKILL');
  }));
  await Promise.all(waits);
}

/** Waits until a child's log contains `text` (a log message, e.g. 'holding the stream'). */
export async function waitForLog(r: ChildReplicator, text: string, timeoutMs = 30_000): Promise<void> {
  await waitFor(`"${text}" in ${r.logFile}`, async () => {
    if (r.log().includes(text)) return true;
    const code = r.child.exitCode ?? r.child.signalCode;
    if (code !== null) throw new Error(`the replicator exited (${code}) before logging "${text}":\n${r.log().slice(-2000)}`);
    return false;
  }, timeoutMs, 50);
}

/** Resident set size now and its peak (VmRSS, VmHWM) of a live process, in bytes. */
export function memoryOf(pid: number): { rss: number; peak: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}
