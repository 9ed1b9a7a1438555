// argv against the commands' descriptions: finds the command (and subcommand), parses its options
// with util.parseArgs (strict: an option the command does not know is refused), and writes the
// help. No I/O; a mistake is a UsageError whose one-line message names it and the fix.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { AnyCommand, Command, CommandGroup, OptionSpec } from './command.js';
import { nearest } from './nearest.js';

/** The command line is wrong; the CLI prints the message and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export type CatalogEntry = AnyCommand | CommandGroup;

export type CommandLine =
  | { kind: 'help'; text: string; exitCode: number }
  | { kind: 'run'; command: AnyCommand; values: Record<string, string | boolean | undefined>; positionals: string[] };

/** Every command's options. */
const COMMON: Record<string, OptionSpec> = {
  config: { type: 'string', value: 'file.json', summary: 'configuration file (also PG2CRATE_CONFIG)' },
  help: { type: 'boolean', summary: 'show this help' },
};

type Options = NonNullable<ParseArgsConfig['options']>;
type Token = NonNullable<ReturnType<typeof parseArgs>['tokens']>[number];

function optionsOf(command: AnyCommand): Record<string, OptionSpec> {
  // A standalone command (the demo) builds its own configuration: it takes no file.
  if ('standalone' in command) return { ...command.options, help: COMMON.help };
  return { ...command.options, ...COMMON };
}

function parseOptions(specs: Record<string, OptionSpec>): Options {
  return Object.fromEntries(Object.entries(specs).map(([name, o]) => [name, name === 'help' ? { type: o.type, short: 'h' } : { type: o.type }]));
}

function lenientTokens(args: string[], specs: Record<string, OptionSpec>): Token[] {
  return parseArgs({ args, options: parseOptions(specs), strict: false, allowPositionals: true, tokens: true }).tokens;
}

function isGroup(e: CatalogEntry): e is CommandGroup {
  return 'commands' in e;
}

export function parseCommandLine(argv: string[], catalog: readonly CatalogEntry[]): CommandLine {
  const commands = catalog.flatMap((e) => (isGroup(e) ? e.commands : [e]));
  const known: Record<string, OptionSpec> = Object.assign({}, ...commands.map(optionsOf));
  // A first pass that knows every option of every command finds the command's words.
  const tokens = lenientTokens(argv, known);
  const words = tokens.filter((t) => t.kind === 'positional');
  const help = tokens.some((t) => t.kind === 'option' && t.name === 'help');
  const stray = tokens.find((t) => t.kind === 'option' && t.index < (words[0]?.index ?? Infinity) && !known[t.name]);
  if (stray?.kind === 'option') throw new UsageError(`unknown option ${stray.rawName}; ${suggest('--', stray.name, Object.keys(known), 'pg2crate --help')}`);
  if (words[0]?.value === 'help') return { kind: 'help', text: helpFor(words.slice(1).map((w) => w.value), catalog), exitCode: 0 };
  if (words.length === 0) return { kind: 'help', text: usage(catalog), exitCode: help ? 0 : 2 };

  const entry = find(catalog, words[0].value, catalog.map((e) => e.name).concat('help'));
  let command: AnyCommand = entry as AnyCommand;
  let used = 1;
  if (isGroup(entry)) {
    if (words[1] !== undefined) {
      command = subcommand(entry, words[1].value);
      used = 2;
    } else if (help) return { kind: 'help', text: groupHelp(entry), exitCode: 0 };
    else if (entry.fallback) command = entry.fallback;
    else throw unknownSubcommand(entry, undefined);
  }
  if (help) return { kind: 'help', text: commandHelp(command), exitCode: 0 };

  const consumed = new Set(words.slice(0, used).map((w) => w.index));
  const args = argv.filter((_, i) => !consumed.has(i));
  const specs = optionsOf(command);
  try {
    const parsed = parseArgs({ args, options: parseOptions(specs), strict: true, allowPositionals: command.positionals !== undefined });
    // no option is `multiple`: each value is one string or boolean
    return { kind: 'run', command, values: parsed.values as Record<string, string | boolean | undefined>, positionals: parsed.positionals };
  } catch (err) {
    throw new UsageError(explain(command, args, specs) ?? (err as Error).message.split('\n')[0], { cause: err });
  }
}

function find(catalog: readonly CatalogEntry[], word: string, names: string[]): CatalogEntry {
  const entry = catalog.find((e) => e.name === word);
  if (!entry) throw new UsageError(`unknown command ${JSON.stringify(word)}; ${suggest('', word, names, 'pg2crate --help', true)}`);
  return entry;
}

function subcommand(group: CommandGroup, word: string): Command {
  const command = group.commands.find((c) => c.name === `${group.name} ${word}`);
  if (!command) throw unknownSubcommand(group, word);
  return command;
}

function unknownSubcommand(group: CommandGroup, word: string | undefined): UsageError {
  const subs = group.commands.map((c) => c.name.slice(group.name.length + 1));
  const expected = `expected "${group.name} ${subs.join('|')}"`;
  if (word === undefined) return new UsageError(`${group.name}: ${expected}`);
  const near = nearest(word, subs);
  return new UsageError(`unknown command "${group.name} ${word}"; ${near ? `did you mean "${group.name} ${near}"?` : expected}`);
}

/** "did you mean --repair?", or where to look when nothing is close. */
function suggest(prefix: string, word: string, candidates: string[], helpCommand: string, quote = false): string {
  const near = nearest(word, candidates);
  if (!near) return `see ${helpCommand}`;
  return `did you mean ${quote ? JSON.stringify(prefix + near) : prefix + near}?`;
}

/** The first thing in args that a strict parse refuses, said so that the fix is plain. */
function explain(command: AnyCommand, args: string[], specs: Record<string, OptionSpec>): string | undefined {
  const name = command.name;
  for (const t of lenientTokens(args, specs)) {
    if (t.kind === 'positional' && !command.positionals) return `${name} takes no arguments, got ${JSON.stringify(t.value)}; see pg2crate ${name} --help`;
    if (t.kind !== 'option') continue;
    const spec = specs[t.name];
    if (!spec) return `unknown option ${t.rawName} for ${name}; ${suggest('--', t.name, Object.keys(specs), `pg2crate ${name} --help`)}`;
    if (spec.type === 'string' && (t.value === undefined || (!t.inlineValue && t.value.startsWith('-')))) {
      return `option --${t.name} for ${name} needs a value: --${t.name} <${spec.value ?? 'value'}>`;
    }
    if (spec.type === 'boolean' && t.value !== undefined) return `option --${t.name} for ${name} takes no value`;
  }
  return undefined;
}

const COLUMN = 30;

/** Two columns: the left one padded, or alone on its line when it is too wide. */
function row(left: string, right: string): string {
  const l = `  ${left}`;
  return l.length < COLUMN ? `${l.padEnd(COLUMN)} ${right}` : `${l}\n${' '.repeat(COLUMN + 1)}${right}`;
}

function optionRows(specs: Record<string, OptionSpec>): string[] {
  return Object.entries(specs).map(([n, o]) => row(`--${n}${o.type === 'string' ? ` <${o.value ?? 'value'}>` : ''}`, o.summary));
}

/** `pg2crate --help`: every command, one line each. */
export function usage(catalog: readonly CatalogEntry[]): string {
  const rows = catalog.flatMap((e) => (isGroup(e) ? e.commands : [e])).map((c) => row(c.usage, c.summary));
  return [
    'usage: pg2crate <command> [options]', '', 'commands:', ...rows, '', 'options:', ...optionRows(COMMON), '',
    'pg2crate <command> --help (or pg2crate help <command>) says more about a command.', '',
  ].join('\n');
}

export function commandHelp(c: AnyCommand): string {
  return [
    `usage: pg2crate ${c.usage}`, '', c.summary, ...(c.details ?? []),
    ...(c.positionals ? ['', 'arguments:', row(c.positionals.name, c.positionals.summary)] : []),
    '', 'options:', ...optionRows(optionsOf(c)), '',
  ].join('\n');
}

function groupHelp(g: CommandGroup): string {
  const subs = g.commands.map((c) => c.name.slice(g.name.length + 1));
  return [
    `usage: pg2crate ${g.name} <${subs.join('|')}> [options]`, '', g.summary, '', 'commands:', ...g.commands.map((c) => row(c.usage, c.summary)), '',
    `pg2crate ${g.name} <command> --help says more about each.`, '',
  ].join('\n');
}

/** `pg2crate help [<command> [<subcommand>]]` */
function helpFor(words: string[], catalog: readonly CatalogEntry[]): string {
  if (words.length === 0) return usage(catalog);
  const entry = find(catalog, words[0], catalog.map((e) => e.name));
  if (!isGroup(entry)) return commandHelp(entry);
  return words[1] === undefined ? groupHelp(entry) : commandHelp(subcommand(entry, words[1]));
}
