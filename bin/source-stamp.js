// Whether dist/ was compiled from the sources beside it. A checkout built once (`npm run build`,
// `npm pack`) and edited afterwards must not run the old build: bin/pg2crate.js runs dist/ only
// when the stamp the build left there matches the sources, and the TypeScript source under tsx
// otherwise. The npm package and the Docker image hold no src/: there dist/ is all there is.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const STAMP_FILE = join('dist', '.source-stamp');

/** A digest of the names and contents of every file under src/ and of the tsconfig files the build reads. */
export function sourceStamp(root) {
  const files = [];
  const walk = (dir) => {
    for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
      const rel = join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else files.push(rel);
    }
  };
  walk('src');
  for (const f of ['tsconfig.json', 'tsconfig.build.json']) if (existsSync(join(root, f))) files.push(f);
  const hash = createHash('sha256');
  for (const f of files.sort()) {
    hash.update(`${f}\u0000`);
    hash.update(readFileSync(join(root, f)));
    hash.update('\u0000');
  }
  return hash.digest('hex');
}

/** 'dist' when the compiled CLI is there and, beside sources, was built from exactly them; 'src' otherwise. */
export function entryPoint(root) {
  if (!existsSync(join(root, 'dist', 'cli.js'))) return 'src';
  if (!existsSync(join(root, 'src'))) return 'dist';
  let stamp;
  try {
    stamp = readFileSync(join(root, STAMP_FILE), 'utf8').trim();
  } catch {
    return 'src';
  }
  return stamp === sourceStamp(root) ? 'dist' : 'src';
}
