// The PostgreSQL version the tests run against, known when a test file loads, so that a test a
// version cannot run is declared skipped with the reason (`test(name, { skip: needsServer(15,
// 'MERGE') }, …)`) rather than failing or passing without doing anything. It is the chosen binaries'
// version (postgres-binaries.ts), or, with TEST_DATABASE_URL, that server's, asked once.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { postgresBinaries } from './postgres-binaries.js';

let known: { version: string; major: number } | undefined;

function externalVersion(url: string): string {
  const pgPath = createRequire(import.meta.url).resolve('pg');
  const script = `const pg = require(${JSON.stringify(pgPath)});
    const c = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
    c.connect().then(() => c.query("select current_setting('server_version') as v"))
      .then((r) => { process.stdout.write(r.rows[0].v); return c.end(); })
      .catch((e) => { process.stderr.write(String(e.message)); process.exit(1); });`;
  const res = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', env: { ...process.env, TEST_DATABASE_URL: url } });
  if (res.status !== 0) throw new Error(`cannot read the version of TEST_DATABASE_URL's server: ${res.stderr}`);
  return res.stdout.trim().split(' ')[0];
}

/** "13.23" and 13, say. */
export function serverVersion(): { version: string; major: number } {
  if (known) return known;
  const external = process.env.TEST_DATABASE_URL;
  if (external) {
    const version = externalVersion(external);
    return (known = { version, major: Number(version.split('.')[0]) });
  }
  const { version, major } = postgresBinaries();
  return (known = { version, major });
}

/** false when the server is PostgreSQL `major` or later; else why a test of `what` is skipped. */
export function needsServer(major: number, what: string): false | string {
  const s = serverVersion();
  return s.major >= major ? false : `${what} needs PostgreSQL ${major}+, this server is ${s.version}`;
}

/** false when the server is older than PostgreSQL `major`; else why a test of `what`, which only older ones show, is skipped. */
export function onlyBefore(major: number, what: string): false | string {
  const s = serverVersion();
  return s.major < major ? false : `${what} happens only before PostgreSQL ${major}, this server is ${s.version}`;
}
