// Benchmark scripts (never timed tests): `npm run bench -- <scenario> [--name=value …]`.
//
// A scenario is a file bench/<scenario>.ts. When it exports `run(args)`, this script calls it and
// writes what it returns, with the machine's state, to bench/results/<scenario>-<timestamp>.json
// (gitignored); `description` is shown in the list. A file without `run` is simply executed (its
// top-level code is the benchmark). Each scenario starts its own throwaway cluster(s) and prints a
// short table. Run one at a time: the figures are only as quiet as the machine.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadavg } from 'node:os';
import { fmtSpread, machine, note, spread, writeResult, type BenchArgs } from './report.js';

interface ScenarioModule {
  description?: string;
  run?: (args: BenchArgs) => Promise<object>;
}

const HERE = dirname(fileURLToPath(import.meta.url));
const NOT_SCENARIOS = new Set(['run', 'report', 'server-cpu', 'pgbench', 'capture-shapes', 'capture-common', 'crate-raw', 'crate-meter', 'crate-replay']);

function scenarios(): string[] {
  return readdirSync(HERE)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
    .map((f) => f.slice(0, -3))
    .filter((n) => !NOT_SCENARIOS.has(n))
    .sort();
}

function parseArgs(argv: string[]): { scenario: string | undefined; args: BenchArgs } {
  const args: BenchArgs = {};
  let scenario: string | undefined;
  for (const a of argv) {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (m) args[m[1]] = m[2] ?? 'true';
    else if (!scenario) scenario = a;
    else throw new Error(`unexpected argument ${JSON.stringify(a)}; options are --name=value`);
  }
  return { scenario, args };
}

async function main(): Promise<number> {
  const { scenario, args } = parseArgs(process.argv.slice(2));
  const known = scenarios();
  if (!scenario || args.help || !known.includes(scenario)) {
    if (scenario && !known.includes(scenario)) process.stderr.write(`unknown scenario ${JSON.stringify(scenario)}\n`);
    process.stdout.write('usage: npm run bench -- <scenario> [--name=value …]\n\nscenarios:\n');
    const width = Math.max(14, ...known.map((n) => n.length));
    for (const name of known) {
      // Read, not imported: importing a standalone script would run it.
      const text = readFileSync(join(HERE, `${name}.ts`), 'utf8');
      const description = /^export const description = '([^']*)'/m.exec(text)?.[1] ?? '';
      process.stdout.write(`  ${name.padEnd(width)} ${description}\n`);
    }
    return scenario && !args.help ? 2 : 0;
  }
  const started = machine();
  note(`bench ${scenario}: ${started.cores} cores (${started.cpu}), node ${started.node}, commit ${started.commit}${started.dirty ? ' + uncommitted changes in src/ or migrations/' : ''}, load average ${started.loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  const mod = (await import(pathToFileURL(join(HERE, `${scenario}.ts`)).href)) as ScenarioModule;
  if (typeof mod.run !== 'function') return 0;
  // Other jobs on a 2-core machine are noise: sample the 1-minute load average during the run.
  const load: number[] = [];
  const sampler = setInterval(() => load.push(loadavg()[0]), 15_000);
  sampler.unref();
  let result: object;
  try {
    result = await mod.run(args);
  } finally {
    clearInterval(sampler);
  }
  load.push(loadavg()[0]);
  const loadDuring = spread(load);
  note(`\nload average (1 min) during the run, sampled every 15 s: ${fmtSpread(loadDuring, 2)} (min / median / max)`);
  const file = writeResult(scenario, started, { args, loadDuring, ...result });
  note(`wrote ${file}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
