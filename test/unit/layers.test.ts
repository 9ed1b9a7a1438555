// The layout is the architecture: each folder of src/ is a layer, and a file imports only from its
// own folder or from a layer below it, never in a circle. This test reads every import in src/
// (type-only imports too) and fails on an upward import, an import across folders of the same
// layer, or an import circle, naming the files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** Bottom first; the README's layout section lists the same order. */
const LAYERS: readonly (readonly string[])[] = [
  ['core'],
  ['capture', 'sink'],
  ['source'],
  ['drain', 'resend.ts'],
  ['load'],
  ['verify', 'ops'],
  ['runner.ts', 'demo'],
  ['commands'],
  ['cli.ts'],
];

function unitOf(file: string): string {
  return file.split('/')[0];
}

function rankOf(file: string): number {
  const unit = unitOf(file);
  const rank = LAYERS.findIndex((l) => l.includes(unit));
  if (rank < 0) throw new Error(`src/${file} is in no layer: add ${unit} to LAYERS here and to the README's layout section`);
  return rank;
}

function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [relative(SRC, join(dir, e.name))] : [],
  );
}

function importsOf(file: string): string[] {
  const text = readFileSync(join(SRC, file), 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+'(\.{1,2}\/[^']+)'/g)) {
    out.push(normalize(join(dirname(file), m[1])).replace(/\.js$/, '.ts'));
  }
  return out;
}

const files = sourceFiles();
const graph = new Map(files.map((f) => [f, importsOf(f)]));

test('src/ has the layers the README describes', () => {
  const units = new Set(files.map(unitOf));
  for (const layer of LAYERS) for (const u of layer) assert.ok(units.has(u), `LAYERS names ${u}, which src/ does not have`);
  for (const f of files) rankOf(f);
});

test('no file imports from a layer above its own or from another folder of its layer', () => {
  const wrong: string[] = [];
  for (const [from, targets] of graph) {
    for (const to of targets) {
      if (unitOf(from) === unitOf(to)) continue;
      if (rankOf(to) >= rankOf(from)) wrong.push(`src/${from} imports src/${to}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('no import circle between files', () => {
  const circles: string[] = [];
  const state = new Map<string, 'open' | 'done'>();
  const path: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'open');
    path.push(f);
    for (const to of graph.get(f) ?? []) {
      if (!graph.has(to)) continue;
      if (state.get(to) === 'open') circles.push([...path.slice(path.indexOf(to)), to].map((p) => `src/${p}`).join(' → '));
      else if (!state.has(to)) visit(to);
    }
    path.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  assert.deepEqual(circles, []);
});

test('every relative import names a file that exists', () => {
  const missing = [...graph].flatMap(([from, targets]) => targets.filter((t) => !graph.has(t)).map((t) => `src/${from} → src/${t}`));
  assert.deepEqual(missing, []);
});
