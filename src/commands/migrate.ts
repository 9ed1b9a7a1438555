// `pg2crate migrate`: creates or upgrades the tool's schema in the source database, then captures
// the tables the configuration lists.
import { TableError } from '../core/errors.js';
import { readCaptureState } from '../capture/capture-state.js';
import { migrate as migrateSchema } from '../capture/migrate.js';
import { addTable, listTables, resolveTable, type RegisteredTable } from '../capture/registry.js';
import { targetNameFor } from '../runner.js';
import type { Command, CommandContext } from './command.js';
import { targetNameMappings } from './tables.js';

export async function migrate(ctx: CommandContext): Promise<{ ran: string[]; tables: RegisteredTable[] }> {
  const { config: c, pool } = ctx;
  // Check every configured table before writing anything: a typo must not leave a half-made schema.
  for (const spec of c.tables) await resolveTable(pool, spec);
  const ran = await migrateSchema(pool, c.schema);
  const tables: RegisteredTable[] = [];
  if ((await readCaptureState(pool, c.schema, c.stream)).mode !== 'trigger') {
    // pgoutput mode: installing triggers again would fill an outbox nobody reads.
    const registered = await listTables(pool, c.schema);
    for (const spec of c.tables) {
      const t = registered.find((r) => r.sourceSchema === spec.schema && r.sourceTable === spec.table);
      if (!t) throw new TableError(`${spec.schema}.${spec.table} is not captured yet and the stream is in pgoutput mode; tables are added in trigger mode, where their initial load runs: see docs/pgoutput.md`);
      tables.push(t);
    }
    return { ran, tables };
  }
  for (const spec of c.tables) {
    const t = await addTable(pool, c.schema, spec, targetNameFor(c));
    tables.push(t);
    for (const m of await targetNameMappings(ctx, t)) {
      ctx.logger.warn({ table: `${t.sourceSchema}.${t.sourceTable}`, kind: m.kind, from: m.from, to: m.to, reason: m.reason }, 'name mapped for the target');
    }
  }
  return { ran, tables };
}

export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'create or upgrade the pg2crate schema, capture configured tables',
  usage: 'migrate',
  details: ['Safe to run twice or concurrently; refuses a schema newer than this build.'],
  async run({ runner, print }) {
    const { ran, tables } = await migrate(runner);
    print(`migrated schema ${runner.config.schema}${ran.length ? ` (ran ${ran.join(', ')})` : ' (already current)'}; ${tables.length} configured table(s) captured`);
    return 0;
  },
};
