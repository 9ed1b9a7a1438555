// `pg2crate slot drop`: drops the stream's logical replication slot (pgoutput mode), e.g. when it
// holds back too much WAL.
import { TableError } from '../core/errors.js';
import { readCaptureState } from '../capture/capture-state.js';
import { assertSchemaCurrent } from '../capture/migrate.js';
import { dropSlot as dropReplicationSlot } from '../source/pgoutput/slot.js';
import { JSON_OPTION, type Command, type CommandContext, type CommandGroup } from './command.js';

/** Drops the replication slot; refuses while the stream reads from it unless forced. Says whether there was one. */
export async function dropSlot(ctx: CommandContext, force: boolean): Promise<boolean> {
  const c = ctx.config;
  await assertSchemaCurrent(ctx.pool, c.schema);
  const { mode } = await readCaptureState(ctx.pool, c.schema, c.stream);
  if (mode !== 'trigger' && !force) {
    throw new TableError(
      `stream ${c.stream} is in ${mode} mode and reads slot ${c.slotName}: dropping it loses the changes not yet applied; ` +
        'pass --force to drop it anyway, then resync with `pg2crate switch-capture trigger` and `pg2crate backfill`',
    );
  }
  return dropReplicationSlot(ctx.pool, c.slotName);
}

export const slotDropCommand: Command = {
  name: 'slot drop',
  summary: 'drop the replication slot (PG2CRATE_SLOT)',
  details: ['For a slot that holds back too much WAL; refused while the stream reads from it, unless --force. --json prints {"slot", "dropped"}.'],
  usage: 'slot drop [--force] [--json]',
  options: { force: { type: 'boolean', summary: 'drop it while the stream still reads from it (then resync: switch-capture trigger, backfill)' }, json: JSON_OPTION },
  async run({ runner, values, print }) {
    const dropped = await dropSlot(runner, values.force === true);
    if (values.json) {
      print(JSON.stringify({ slot: runner.config.slotName, dropped }));
      return 0;
    }
    print(dropped ? `dropped slot ${runner.config.slotName}` : `there is no slot ${runner.config.slotName}`);
    return 0;
  },
};

export const slotGroup: CommandGroup = {
  name: 'slot',
  summary: 'the stream\'s logical replication slot (pgoutput mode)',
  commands: [slotDropCommand],
};
