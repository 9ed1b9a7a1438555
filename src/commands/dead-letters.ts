// `pg2crate dead-letters list|retry|discard`: the changes the target refused, parked with its code
// and message; retry re-sends the source's current state of their keys, discard forgets them.
import { ConfigError } from '../core/errors.js';
import { assertSchemaCurrent } from '../capture/migrate.js';
import { RegistryCatalog } from '../capture/registry.js';
import { discardDeadLetters as discard, listDeadLetters, retryDeadLetters as retry, type DeadLetterRow } from '../ops/dead-letters.js';
import { JSON_OPTION, type Command, type CommandContext, type CommandGroup, type Invocation } from './command.js';
import { alignColumns } from './human-output.js';

export async function deadLetters(ctx: CommandContext): Promise<DeadLetterRow[]> {
  await assertSchemaCurrent(ctx.pool, ctx.config.schema);
  return listDeadLetters(ctx.pool, ctx.config.schema, ctx.config.stream);
}

/** Sends the source's current state of the letters' keys through the stream again, then forgets them; returns how many. */
export async function retryDeadLetters(ctx: CommandContext, ids: number[] | 'all'): Promise<number> {
  const c = ctx.config;
  await assertSchemaCurrent(ctx.pool, c.schema);
  return retry(ctx.pool, c.schema, c.stream, new RegistryCatalog(ctx.pool, c.schema), ids, ctx.logger);
}

export async function discardDeadLetters(ctx: CommandContext, ids: number[] | 'all'): Promise<number> {
  await assertSchemaCurrent(ctx.pool, ctx.config.schema);
  return discard(ctx.pool, ctx.config.schema, ctx.config.stream, ids);
}

export const deadLettersListCommand: Command = {
  name: 'dead-letters list',
  summary: 'changes the target refused, with its code and message',
  usage: 'dead-letters list [--json]',
  options: { json: JSON_OPTION },
  async run({ runner, values, print }) {
    const rows = await deadLetters(runner);
    if (values.json) print(JSON.stringify(rows, null, 2));
    else if (rows.length === 0) print('no dead letters');
    else {
      const table = alignColumns([
        ['id', 'event', 'table', 'op', 'attempts', 'parked at', 'error'],
        ...rows.map((r) => [String(r.id), String(r.eventId), r.table, r.op, String(r.attempts), String(r.createdAt), `${r.code ? `[${r.code}] ` : ''}${r.error}`]),
      ], new Set([0, 1, 4]));
      for (const l of table) print(l);
    }
    return 0;
  },
};

const IDS = { name: '<id…>', summary: 'dead-letter ids, as "dead-letters list" shows them' };
const ALL = { all: { type: 'boolean', summary: 'every dead letter of the stream' }, json: JSON_OPTION } as const;

/** The ids named, or 'all' with --all. */
function idsOf(sub: string, { values, positionals }: Invocation): number[] | 'all' {
  const ids = positionals.map((x) => Number(x));
  if ((!values.all && ids.length === 0) || ids.some((n) => !Number.isInteger(n) || n <= 0)) {
    throw new ConfigError(`dead-letters ${sub}`, 'name dead-letter ids (see "dead-letters list") or pass --all');
  }
  return values.all ? 'all' : ids;
}

export const deadLettersRetryCommand: Command = {
  name: 'dead-letters retry',
  summary: 'send the current source state of those keys again',
  details: ['Through the stream, as a change of now; the letters are then forgotten. --json prints {"retried": n}.'],
  usage: 'dead-letters retry <id…|--all> [--json]',
  positionals: IDS,
  options: ALL,
  async run(call) {
    const n = await retryDeadLetters(call.runner, idsOf('retry', call));
    call.print(call.values.json ? JSON.stringify({ retried: n }) : `re-sent the current state of ${n} dead letter(s)`);
    return 0;
  },
};

export const deadLettersDiscardCommand: Command = {
  name: 'dead-letters discard',
  summary: 'forget them',
  details: ['--json prints {"discarded": n}.'],
  usage: 'dead-letters discard <id…|--all> [--json]',
  positionals: IDS,
  options: ALL,
  async run(call) {
    const n = await discardDeadLetters(call.runner, idsOf('discard', call));
    call.print(call.values.json ? JSON.stringify({ discarded: n }) : `discarded ${n} dead letter(s)`);
    return 0;
  },
};

export const deadLettersGroup: CommandGroup = {
  name: 'dead-letters',
  summary: 'changes the target refused: list them (the default), retry or discard them',
  commands: [deadLettersListCommand, deadLettersRetryCommand, deadLettersDiscardCommand],
  fallback: deadLettersListCommand,
};
