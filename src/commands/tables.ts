// `pg2crate tables add|remove|list`: which tables are captured, and where each lands in the target.
import { parseQualifiedName, type TableSpec } from '../core/config.js';
import { ConfigError, TableError } from '../core/errors.js';
import { displayName } from '../core/identifiers.js';
import { assertSchemaCurrent } from '../capture/migrate.js';
import { readCaptureState } from '../capture/capture-state.js';
import { addTable, describeColumns, listTables as listRegistered, removeTable, type RegisteredTable } from '../capture/registry.js';
import { crateNameMappings, type CrateNameMapping } from '../sink/cratedb/names.js';
import { targetNameFor } from '../runner.js';
import { JSON_OPTION, type Command, type CommandContext, type CommandGroup } from './command.js';
import { alignColumns } from './human-output.js';

/** Captures the tables (idempotent); the configuration's options for a table apply unless `specs` say otherwise. */
export async function addTables(ctx: CommandContext, specs: TableSpec[]): Promise<RegisteredTable[]> {
  const c = ctx.config;
  await assertSchemaCurrent(ctx.pool, c.schema);
  if ((await readCaptureState(ctx.pool, c.schema, c.stream)).mode !== 'trigger') {
    throw new TableError('the stream is in pgoutput mode; tables are added in trigger mode, where their initial load runs: `pg2crate switch-capture trigger`, `tables add`, wait for the load, `switch-capture pgoutput`');
  }
  const out: RegisteredTable[] = [];
  for (const spec of specs) {
    const configured = c.tables.find((t) => t.schema === spec.schema && t.table === spec.table);
    out.push(await addTable(ctx.pool, c.schema, { ...configured, ...spec, keyColumns: spec.keyColumns ?? configured?.keyColumns }, targetNameFor(c)));
  }
  return out;
}

/** Names that do not reach the target as they are (CrateDB's naming rules), with the reason. */
export async function targetNameMappings(ctx: CommandContext, t: RegisteredTable): Promise<CrateNameMapping[]> {
  const c = ctx.config;
  if (c.target.kind !== 'cratedb') return [];
  const spec = c.tables.find((x) => x.schema === t.sourceSchema && x.table === t.sourceTable);
  const intended = { schema: spec?.targetSchema ?? c.targetSchema ?? t.sourceSchema, table: spec?.targetTable ?? t.sourceTable };
  const columns = await describeColumns(ctx.pool, t.relid);
  return crateNameMappings(intended, columns.map((col) => col.name));
}

/** Drops the tables' triggers; says per table whether it was captured. */
export async function removeTables(ctx: CommandContext, specs: TableSpec[]): Promise<boolean[]> {
  await assertSchemaCurrent(ctx.pool, ctx.config.schema);
  const out: boolean[] = [];
  for (const spec of specs) out.push(await removeTable(ctx.pool, ctx.config.schema, spec));
  return out;
}

export async function listTables(ctx: CommandContext): Promise<RegisteredTable[]> {
  await assertSchemaCurrent(ctx.pool, ctx.config.schema);
  return listRegistered(ctx.pool, ctx.config.schema);
}

const NAMES = { name: '<schema.table>…', summary: 'quote parts that hold capitals, dots or spaces: \'"Sales"."Order Items"\'; no schema: public' };

/** The named tables, at least one, with --key when given. */
function specsOf(command: string, positionals: string[], key: string | boolean | undefined): TableSpec[] {
  if (positionals.length === 0) throw new ConfigError(command, 'name at least one table as schema.table');
  return positionals.map((r) => ({ ...parseQualifiedName(r, command), ...(typeof key === 'string' ? { keyColumns: key.split(',').map((k) => k.trim()) } : {}) }));
}

export const tablesAddCommand: Command = {
  name: 'tables add',
  summary: 'capture tables (installs triggers)',
  details: [
    'Idempotent; the replicator copies their existing rows first. The configuration\'s options for a table apply.',
    '--json prints the tables as registered, each with the names that reach the target changed (nameMappings).',
  ],
  usage: 'tables add <schema.table>… [--key <col,col>] [--json]',
  positionals: NAMES,
  options: { key: { type: 'string', value: 'col,col', summary: 'key columns, for a table without a primary key' }, json: JSON_OPTION },
  async run({ runner, values, positionals, print }) {
    const added = await addTables(runner, specsOf('tables add', positionals, values.key));
    if (values.json) {
      const out = [];
      for (const t of added) out.push({ ...t, nameMappings: await targetNameMappings(runner, t) });
      print(JSON.stringify(out, null, 2));
      return 0;
    }
    for (const t of added) {
      print(`capturing ${displayName(t.sourceSchema, t.sourceTable)} → ${displayName(t.targetSchema, t.targetTable)}`);
      for (const m of await targetNameMappings(runner, t)) print(`  ${m.kind} ${JSON.stringify(m.from)} arrives as ${JSON.stringify(m.to)}: ${m.reason}`);
    }
    return 0;
  },
};

export const tablesRemoveCommand: Command = {
  name: 'tables remove',
  summary: 'release tables (drops their triggers)',
  details: ['Changes captured before are still applied. --json prints [{"table", "released"}].'],
  usage: 'tables remove <schema.table>… [--json]',
  positionals: NAMES,
  options: { json: JSON_OPTION },
  async run({ runner, values, positionals, print }) {
    const specs = specsOf('tables remove', positionals, undefined);
    const removed = await removeTables(runner, specs);
    if (values.json) {
      print(JSON.stringify(specs.map((s, i) => ({ table: displayName(s.schema, s.table), released: removed[i] })), null, 2));
      return 0;
    }
    specs.forEach((s, i) => print(`${removed[i] ? 'released' : 'was not captured:'} ${displayName(s.schema, s.table)}`));
    return 0;
  },
};

export const tablesListCommand: Command = {
  name: 'tables list',
  summary: 'captured tables, their targets and keys',
  usage: 'tables list [--json]',
  options: { json: JSON_OPTION },
  async run({ runner, values, print }) {
    const tables = await listTables(runner);
    if (values.json) print(JSON.stringify(tables, null, 2));
    else if (tables.length === 0) print('no tables are captured (pg2crate tables add)');
    else {
      const rows = tables.map((t) => [displayName(t.sourceSchema, t.sourceTable), '→', displayName(t.targetSchema, t.targetTable), `key (${t.keyColumns.join(', ')}, ${t.keyOrigin})`]);
      for (const l of alignColumns(rows)) print(l);
    }
    return 0;
  },
};

export const tablesGroup: CommandGroup = {
  name: 'tables',
  summary: 'which tables are captured: add, remove, list',
  commands: [tablesAddCommand, tablesRemoveCommand, tablesListCommand],
};
