// A throwaway Postgres cluster for one test file: initdb into a temporary directory, a free port,
// wal_level=logical, fsync off, with the binaries postgres-binaries.ts chooses (PG2CRATE_TEST_PG,
// else the system's, else the newest npm package). With TEST_DATABASE_URL set, an existing server is
// used instead (fault tests that restart the server are skipped there). Every process started is
// stopped in `stop()`, and again on process exit as a last resort.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, chownSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { clusterOsUser, postgresBinaries } from './postgres-binaries.js';
import { freePort } from '../../src/core/free-port.js';

export interface Cluster {
  /** URL of database `db` on this server */
  url(db?: string): string;
  /** creates a fresh, empty database and returns its URL */
  createDatabase(prefix?: string): Promise<string>;
  /** true when the cluster is ours and may be restarted or killed */
  readonly owned: boolean;
  /** stops the server and starts it again, after `downMs` without a server (an outage, a failover) */
  restart(mode?: 'fast' | 'immediate', downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

let dbCounter = 0;
const live = new Set<() => void>();
process.on('exit', () => { for (const kill of live) kill(); });

export async function startCluster(): Promise<Cluster> {
  const external = process.env.TEST_DATABASE_URL;
  if (external) return externalCluster(external);

  const osUser = clusterOsUser();
  const dir = mkdtempSync(join(tmpdir(), 'pg2crate-test-'));
  const data = join(dir, 'data');
  const { binDir, major } = postgresBinaries();
  const run = (bin: string, args: string[]) => {
    const cmd = join(binDir, bin);
    if (osUser) return execFileSync('runuser', ['-u', osUser, '--', cmd, ...args], { stdio: 'pipe', encoding: 'utf8' });
    return execFileSync(cmd, args, { stdio: 'pipe', encoding: 'utf8' });
  };
  if (osUser) {
    const uid = Number(execFileSync('id', ['-u', osUser], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', osUser], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
  }
  // --no-instructions (the "start it with pg_ctl" lines) came with PostgreSQL 14.
  run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync', ...(major >= 14 ? ['--no-instructions'] : [])]);
  const port = await freePort();
  writeFileSync(join(dir, 'port'), String(port));
  const opts = [
    `-p ${port}`, `-k ${dir}`, `-c listen_addresses=127.0.0.1`, `-c wal_level=logical`, `-c fsync=off`, `-c synchronous_commit=off`,
    `-c full_page_writes=off`, `-c max_connections=200`, `-c max_replication_slots=10`, `-c max_wal_senders=10`, `-c shared_buffers=128MB`,
  ].join(' ');
  const start = () => run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-o', opts, '-w', '-t', '60', 'start']);
  start();
  const killer = () => {
    try { run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']); } catch { /* already down */ }
    rmSync(dir, { recursive: true, force: true });
  };
  live.add(killer);
  const url = (db = 'postgres') => `postgres://postgres@127.0.0.1:${port}/${db}`;
  return {
    owned: true,
    url,
    async createDatabase(prefix = 'db') {
      const name = `${prefix}_${process.pid}_${++dbCounter}`;
      const c = new pg.Client({ connectionString: url() });
      await c.connect();
      try { await c.query(`create database "${name}"`); } finally { await c.end(); }
      return url(name);
    },
    async restart(mode = 'fast', downMs = 0) {
      try {
        run('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
      } catch (err) {
        // A fast shutdown waits for each logical walsender until its consumer confirmed all WAL sent;
        // a replicator with a backlog confirms only what it applied, which can take longer than the
        // wait. Cut it short as a crash would (the server is down either way), or restart() throws and
        // leaves the source down.
        try {
          run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
        } catch {
          if (mode === 'immediate') throw err; // not a slow stop: a server that would not stop at all
        }
      }
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      start();
    },
    async stop() {
      live.delete(killer);
      killer();
    },
  };
}

function externalCluster(base: string): Cluster {
  const url = (db = new URL(base).pathname.slice(1) || 'postgres') => {
    const u = new URL(base);
    u.pathname = `/${db}`;
    return u.toString();
  };
  const created: string[] = [];
  return {
    owned: false,
    url,
    async createDatabase(prefix = 'db') {
      const name = `${prefix}_${process.pid}_${++dbCounter}`;
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      try { await c.query(`create database "${name}"`); } finally { await c.end(); }
      created.push(name);
      return url(name);
    },
    async restart() { throw new Error('cannot restart an external TEST_DATABASE_URL server'); },
    async stop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      try { for (const n of created) await c.query(`drop database if exists "${n}" with (force)`); } finally { await c.end(); }
    },
  };
}
