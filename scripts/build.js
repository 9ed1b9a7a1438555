// `npm run build`: compiles src/ to dist/ and stamps dist/ with the sources it was built from
// (bin/source-stamp.js), so that bin/pg2crate.js never runs a build older than the sources.
// Sources that change while the compiler runs leave dist/ unstamped: it is not used then.
import { execFileSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sourceStamp, STAMP_FILE } from '../bin/source-stamp.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stampPath = join(root, STAMP_FILE);
rmSync(stampPath, { force: true });
const before = sourceStamp(root);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
if (sourceStamp(root) !== before) {
  process.stderr.write('build: sources changed while they were compiled; dist/ is left unstamped (bin/pg2crate.js will not run it): build again\n');
  process.exit(1);
}
writeFileSync(stampPath, `${before}\n`);
