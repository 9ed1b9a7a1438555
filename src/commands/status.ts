// `pg2crate status`: where the stream stands: backlog, last apply, drainer, tables, initial loads,
// dead letters, and in pgoutput mode the slot's retained WAL.
import { streamLockText } from '../capture/names.js';
import { assertSchemaCurrent } from '../capture/migrate.js';
import { readStatus, type StreamStatus, type TableStatus } from '../ops/status.js';
import { JSON_OPTION, type Command, type CommandContext } from './command.js';
import { alignColumns, count, duration, loadProgressText } from './human-output.js';

export async function status(ctx: CommandContext): Promise<StreamStatus> {
  const c = ctx.config;
  await assertSchemaCurrent(ctx.pool, c.schema);
  return readStatus(ctx.pool, c.schema, c.stream, streamLockText(c.schema, c.stream), { slotName: c.slotName, warnBytes: c.slotWarnBytes });
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'where the stream stands: backlog, last apply, tables, initial loads, dead letters',
  details: [
    'A running initial load shows rows copied of the estimate, rows/s and ETA. In pgoutput mode also the slot\'s retained WAL.',
    '--json prints the same as one JSON document.',
  ],
  usage: 'status [--json]',
  options: { json: JSON_OPTION },
  async run({ runner, values, print }) {
    const st = await status(runner);
    if (values.json) print(JSON.stringify(st, null, 2));
    else for (const l of statusText(st, runner.config.slotWarnBytes)) print(l);
    return 0;
  },
};

/** The human form: the stream as aligned name/value lines, warnings, then a table of tables. */
export function statusText(st: StreamStatus, slotWarnBytes: number): string[] {
  const since = st.secondsSinceApplied !== null ? ` (${duration(st.secondsSinceApplied)} ago)` : '';
  const head = alignColumns([
    ['stream', `${st.stream} (${st.mode} capture, schema ${st.schema})`],
    ['drainer', st.drainerPid ? `pid ${st.drainerPid}${st.idle ? ', idle' : ''}` : 'not running'],
    ['backlog', `${count(st.backlogEvents)} event(s), lag ${duration(st.lagSeconds)}`],
    ['applied', `${count(st.appliedEvents)} event(s) in ${count(st.windows)} window(s), last ${st.lastAppliedAt ?? 'never'}${since}`],
    ['dead letters', `${count(st.deadLetters)}${st.deadLetters > 0 ? ' (pg2crate dead-letters list)' : ''}`],
    ...(st.slot ? [['slot', `${st.slot.name}: ${st.slot.active ? `streaming to pid ${st.slot.activePid}` : 'inactive'}, retains ${(st.slot.retainedBytes / 1048576).toFixed(1)} MB of WAL`]] : []),
  ]);
  const warnings = [
    ...(st.strandedEvents > 0 ? [`WARNING: ${st.strandedEvents} event(s) lie below the windows' lower id bound and no window will apply them; run \`pg2crate verify --repair\` to bring the target in line, and please report this`] : []),
    ...(st.boundViolations > 0 ? [`window bound guard: kept a lower id bound ${st.boundViolations} time(s) that would have skipped events (the log names them); please report this`] : []),
    ...st.tables.filter((t) => t.triggersDisabledOn.length > 0).map((t) =>
      `WARNING: the capture triggers of ${t.name} are disabled on ${t.triggersDisabledOn.join(', ')}: writes there are not captured; enable them (\`pg2crate tables add ${t.name}\` makes them again), then \`pg2crate verify --repair ${t.name}\``),
    ...(st.slot?.warn ? [`WARNING: slot ${st.slot.name} retains more WAL than PG2CRATE_SLOT_WARN_MB (${slotWarnBytes / 1048576}); drain it or \`pg2crate slot drop\``] : []),
  ];
  const tables = st.tables.length === 0 ? ['no tables are captured (pg2crate tables add)'] : alignColumns([
    ['table', 'target', 'key', 'capture', 'initial load'],
    ...st.tables.map((t) => [t.name, t.target, t.key.join(', '), !t.captured ? 'NO (triggers missing)' : t.triggersDisabledOn.length > 0 ? `NO (triggers disabled on ${t.triggersDisabledOn.join(', ')})` : 'yes', loadText(t.load)]),
  ]);
  return [...head, ...warnings, '', ...tables];
}

function loadText(load: TableStatus['load']): string {
  if (!load) return '-';
  if (load.status === 'pending') return 'waiting to start';
  if (load.done) return load.applied ? `done, ${count(load.rowsCopied)} rows` : `copied ${count(load.rowsCopied)} rows, applying`;
  return `copying: ${loadProgressText(load)}`;
}
