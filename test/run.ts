// Runs the test suites with Node's test runner: unit and integration by default (and the CrateDB
// suite, which skips itself visibly unless CRATEDB_URL is set); `--cratedb` runs only the CrateDB suite.
import { spawnSync } from 'node:child_process';
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const args = process.argv.slice(2);
const only = args.filter((a) => !a.startsWith('--'));
const suites = args.includes('--cratedb') ? ['test/cratedb'] : ['test/unit', 'test/integration', 'test/cratedb'];
const files = only.length > 0
  ? only
  : suites.flatMap((dir) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.test.ts')).sort().map((f) => join(dir, f)) : []));

const res = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(res.status ?? 1);
