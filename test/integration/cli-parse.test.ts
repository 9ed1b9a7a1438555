// The command line is checked whole before anything connects: a mistyped command or option, or an
// option without its value, is refused with one line on stderr that names it and the fix (exit 2);
// every command answers --help with its usage (exit 0). No database: the source "database" here is
// a TCP port that counts connections and answers none. test/unit/command-line.test.ts has the
// parser's other cases without a process each.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { runCli } from '../helpers/child-replicator.js';
import { CATALOG } from '../../src/commands/catalog.js';

let connections = 0;
const server = createServer((s) => {
  connections++;
  s.destroy();
});
const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
const url = `postgres://app@127.0.0.1:${port}/app`;
const env = { DATABASE_URL: url, TARGET_DATABASE_URL: url };
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** Runs the CLI and expects it to refuse the command line: exit 2, one stderr line, no connection. */
async function refused(args: string[]): Promise<string> {
  const before = connections;
  const res = await runCli(env, args);
  assert.equal(res.code, 2, `exit code of pg2crate ${args.join(' ')}; stderr:\n${res.stderr}`);
  const lines = res.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${res.stderr}`);
  assert.equal(res.stdout, '');
  assert.equal(connections, before, 'nothing may connect before the command line is accepted');
  return lines[0];
}

test('an unknown command is refused with the nearest command suggested', async () => {
  assert.equal(await refused(['verfy']), 'pg2crate: unknown command "verfy"; did you mean "verify"?');
});

test('verify --repiar is refused with --repair suggested, and nothing runs', async () => {
  assert.equal(await refused(['verify', '--repiar']), 'pg2crate: unknown option --repiar for verify; did you mean --repair?');
});

test('an option without its value is refused', async () => {
  assert.equal(await refused(['migrate', '--config']), 'pg2crate: option --config for migrate needs a value: --config <file.json>');
  assert.equal(await refused(['tables', 'add', 'public.t', '--key', '--json']), 'pg2crate: option --key for tables add needs a value: --key <col,col>');
});

test('every command and subcommand answers --help with its usage and what it does', async () => {
  const commands = CATALOG.flatMap((e) => ('commands' in e ? e.commands : [e]));
  // two at a time: each is a Node process with tsx
  for (let i = 0; i < commands.length; i += 2) {
    await Promise.all(commands.slice(i, i + 2).map(async (c) => {
      const res = await runCli(env, [...c.name.split(' '), '--help']);
      assert.equal(res.code, 0, `${c.name} --help: ${res.stderr}`);
      assert.ok(res.stdout.startsWith(`usage: pg2crate ${c.usage}\n`), `${c.name} --help printed:\n${res.stdout}`);
      assert.ok(res.stdout.includes(`\n${c.summary}\n`), `${c.name} --help says what it does`);
      // a standalone command (the demo) builds its own configuration and takes no file
      if ('standalone' in c) assert.doesNotMatch(res.stdout, /--config/);
      else assert.match(res.stdout, /--config <file\.json>/);
      // every command but the service and the demo prints a result, and --json gives its machine form
      if (c.name !== 'start' && !('standalone' in c)) assert.match(res.stdout, /\n {2}--json +print the result as one JSON document/, `${c.name} --help documents --json`);
    }));
  }
  const general = await runCli(env, ['--help']);
  assert.equal(general.code, 0);
  for (const c of commands) assert.ok(general.stdout.includes(c.usage), `pg2crate --help lists ${c.name}`);
  const viaHelp = await runCli(env, ['help', 'dead-letters', 'retry']);
  assert.equal(viaHelp.code, 0);
  assert.ok(viaHelp.stdout.startsWith('usage: pg2crate dead-letters retry <id…|--all> [--json]\n'), viaHelp.stdout);
  const group = await runCli(env, ['tables', '--help']);
  assert.equal(group.code, 0);
  assert.match(group.stdout, /^usage: pg2crate tables <add\|remove\|list>/);
  assert.equal(connections, 0, 'help connects to nothing');
});

test('no command prints the usage and exits 2', async () => {
  const res = await runCli(env, []);
  assert.equal(res.code, 2);
  assert.match(res.stdout, /^usage: pg2crate <command> \[options\]/);
});

test('a valid command line does reach the database (the connection counter sees it)', async () => {
  const before = connections;
  const res = await runCli({ ...env, LOG_LEVEL: 'fatal' }, ['status', '--json']);
  assert.notEqual(res.code, 0);
  assert.ok(connections > before, `status must have tried to connect; stderr:\n${res.stderr}`);
});
