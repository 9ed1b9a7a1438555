// bin/pg2crate.js runs the compiled build only when it was built from the sources beside it: a
// checkout built once and edited afterwards runs its sources, never the stale build.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve('.');

/** A checkout in miniature: the real bin/ and build script, a CLI that says where it runs from. */
function checkout(): string {
  const root = mkdtempSync(join(tmpdir(), 'pg2crate-entry-'));
  mkdirSync(join(root, 'bin'));
  mkdirSync(join(root, 'scripts'));
  mkdirSync(join(root, 'src'));
  for (const f of ['bin/pg2crate.js', 'bin/source-stamp.js', 'scripts/build.js']) copyFileSync(join(REPO, f), join(root, f));
  symlinkSync(join(REPO, 'node_modules'), join(root, 'node_modules'));
  writeFileSync(join(root, 'package.json'), JSON.stringify({ type: 'module' }));
  writeFileSync(join(root, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', types: [], rootDir: 'src', outDir: 'dist' }, include: ['src'] }));
  writeFileSync(join(root, 'tsconfig.build.json'), JSON.stringify({ extends: './tsconfig.json' }));
  cli(root, 'one');
  return root;
}

/** src/cli.ts prints its version and whether it runs compiled. */
function cli(root: string, version: string): void {
  writeFileSync(join(root, 'src', 'cli.ts'), `export {};\n(globalThis as any).console.log(${JSON.stringify(version)}, import.meta.url.includes('/dist/') ? 'dist' : 'src');\n`);
}

const run = (root: string) => execFileSync(process.execPath, [join(root, 'bin', 'pg2crate.js')], { encoding: 'utf8' }).trim();

test('a checkout runs the build made from its current sources, and its sources once they change', () => {
  const root = checkout();
  try {
    assert.equal(run(root), 'one src', 'nothing built: the sources run');
    execFileSync(process.execPath, [join(root, 'scripts', 'build.js')], { stdio: 'ignore' });
    assert.equal(run(root), 'one dist', 'built from these sources: the build runs');
    cli(root, 'two');
    assert.equal(run(root), 'two src', 'a source changed after the build: the sources run, not the stale build');
    writeFileSync(join(root, 'src', 'extra.ts'), 'export const x = 1;\n');
    execFileSync(process.execPath, [join(root, 'scripts', 'build.js')], { stdio: 'ignore' });
    assert.equal(run(root), 'two dist');
    rmSync(join(root, 'src', 'extra.ts'));
    assert.equal(run(root), 'two src', 'a source removed after the build: the sources run');
    rmSync(join(root, 'src'), { recursive: true });
    assert.equal(run(root), 'two dist', 'no sources (the npm package, the image): the build runs');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a build left without a stamp (an older `tsc -p tsconfig.build.json`) is not trusted', () => {
  const root = checkout();
  try {
    execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'ignore' });
    assert.equal(run(root), 'one src');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
