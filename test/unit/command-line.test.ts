// The command line against the commands' descriptions (src/commands/command-line.ts), without a
// process: which command runs with which options, and the one-line refusals that name the fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CATALOG } from '../../src/commands/catalog.js';
import { parseCommandLine, UsageError } from '../../src/commands/command-line.js';
import { editDistance, nearest } from '../../src/commands/nearest.js';

const parse = (...argv: string[]) => parseCommandLine(argv, CATALOG);

function run(...argv: string[]) {
  const line = parse(...argv);
  assert.equal(line.kind, 'run', `pg2crate ${argv.join(' ')} must run a command`);
  return line as Extract<typeof line, { kind: 'run' }>;
}

function refusal(...argv: string[]): string {
  try {
    parse(...argv);
  } catch (err) {
    assert.ok(err instanceof UsageError, String(err));
    return err.message;
  }
  assert.fail(`pg2crate ${argv.join(' ')} must be refused`);
}

test('a swap of two neighbours is one step, and a far word suggests nothing', () => {
  assert.equal(editDistance('repiar', 'repair'), 1);
  assert.equal(editDistance('verfy', 'verify'), 1);
  assert.equal(nearest('repiar', ['json', 'repair', 'config']), 'repair');
  assert.equal(nearest('stat', ['start', 'status']), 'start');
  assert.equal(nearest('frobnicate', ['verify', 'status', 'migrate']), undefined);
});

test('options and arguments reach the command, --config before or after the command words', () => {
  const add = run('--config', 'c.json', 'tables', 'add', 'public.a', '--key', 'id,at', 'public.b');
  assert.equal(add.command.name, 'tables add');
  assert.deepEqual(add.positionals, ['public.a', 'public.b']);
  assert.equal(add.values.config, 'c.json');
  assert.equal(add.values.key, 'id,at');
  const verify = run('verify', 'public.t', '--repair', '--json', '--config=x.json');
  assert.deepEqual([verify.command.name, verify.positionals, verify.values.repair, verify.values.json, verify.values.config], ['verify', ['public.t'], true, true, 'x.json']);
  assert.equal(run('dead-letters', '--json').command.name, 'dead-letters list', 'dead-letters alone lists them');
  assert.equal(run('dead-letters', 'retry', '--all').values.all, true);
  assert.equal(run('catch-up', '--wait').values.wait, true);
  assert.equal(run('slot', 'drop', '--force').values.force, true);
  assert.deepEqual(run('switch-capture', 'pgoutput').positionals, ['pgoutput']);
});

test('mistakes are refused with the nearest correct word, or where to look', () => {
  assert.equal(refusal('verfy'), 'unknown command "verfy"; did you mean "verify"?');
  assert.equal(refusal('frobnicate'), 'unknown command "frobnicate"; see pg2crate --help');
  assert.equal(refusal('tables', 'ad', 'public.t'), 'unknown command "tables ad"; did you mean "tables add"?');
  assert.equal(refusal('tables', 'public.t'), 'unknown command "tables public.t"; expected "tables add|remove|list"');
  assert.equal(refusal('tables'), 'tables: expected "tables add|remove|list"');
  assert.equal(refusal('slot'), 'slot: expected "slot drop"');
  assert.equal(refusal('verify', '--repiar'), 'unknown option --repiar for verify; did you mean --repair?');
  assert.equal(refusal('status', '--force'), 'unknown option --force for status; see pg2crate status --help');
  assert.equal(refusal('tables', 'remove', 'public.t', '--key', 'id'), 'unknown option --key for tables remove; see pg2crate tables remove --help');
  assert.equal(refusal('status', '-x'), 'unknown option -x for status; see pg2crate status --help');
  assert.equal(refusal('--confg', 'x.json', 'migrate'), 'unknown option --confg; did you mean --config?');
});

test('a missing value, a value for a flag and a stray argument are refused', () => {
  assert.equal(refusal('migrate', '--config'), 'option --config for migrate needs a value: --config <file.json>');
  assert.equal(refusal('tables', 'add', 'public.t', '--key'), 'option --key for tables add needs a value: --key <col,col>');
  assert.equal(refusal('tables', 'add', 'public.t', '--key', '--json'), 'option --key for tables add needs a value: --key <col,col>');
  assert.equal(refusal('status', '--json=yes'), 'option --json for status takes no value');
  assert.equal(refusal('status', 'now'), 'status takes no arguments, got "now"; see pg2crate status --help');
});

test('--help, -h and help <command> print the usage and exit 0; no command exits 2', () => {
  for (const argv of [['verify', '--help'], ['verify', '-h'], ['help', 'verify'], ['verify', '--repiar', '--help']]) {
    const line = parse(...argv);
    assert.equal(line.kind, 'help', argv.join(' '));
    if (line.kind !== 'help') continue;
    assert.equal(line.exitCode, 0);
    assert.match(line.text, /^usage: pg2crate verify \[<schema\.table>…\] \[--repair\] \[--json\]\n/);
    assert.match(line.text, /--repair +re-send exactly the differing rows/);
  }
  const group = parse('dead-letters', '--help');
  assert.ok(group.kind === 'help' && /dead-letters retry <id…\|--all>/.test(group.text));
  const general = parse('--help');
  assert.ok(general.kind === 'help' && general.exitCode === 0 && /^usage: pg2crate <command>/.test(general.text));
  const none = parse();
  assert.ok(none.kind === 'help' && none.exitCode === 2);
  assert.equal(refusal('help', 'verfy'), 'unknown command "verfy"; did you mean "verify"?');
});
