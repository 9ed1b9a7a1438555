// `pg2crate status`: where the stream stands: backlog, last apply, drainer, tables, initial loads,
// dead letters, and in pgoutput mode the slot's retained WAL.
import { streamLockText } from '../capture/names.js';
import { assertSchemaCurrent } from '../capture/migrate.js';
import { readStatus, type StreamStatus } from '../ops/status.js';
import { JSON_OPTION, type Command, type CommandContext } from './command.js';

export async function status(ctx: CommandContext): Promise<StreamStatus> {
  const c = ctx.config;
  await assertSchemaCurrent(ctx.pool, c.schema);
  return readStatus(ctx.pool, c.schema, c.stream, streamLockText(c.schema, c.stream), { slotName: c.slotName, warnBytes: c.slotWarnBytes });
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'where the stream stands: backlog, last apply, tables, dead letters',
  details: ['In pgoutput mode also the slot\'s retained WAL.'],
  usage: 'status [--json]',
  options: { json: JSON_OPTION },
  async run({ runner, values, print }) {
    const st = await status(runner);
    if (values.json) {
      print(JSON.stringify(st, null, 2));
      return 0;
    }
    const lines = [
      `mode ${st.mode}, schema ${st.schema}, stream ${st.stream}: ${st.drainerPid ? `drained by pid ${st.drainerPid}${st.idle ? ' (idle)' : ''}` : 'no drainer running'}`,
      `backlog ${st.backlogEvents} event(s); applied ${st.appliedEvents} in ${st.windows} window(s); last applied ${st.lastAppliedAt ?? 'never'}${st.secondsSinceApplied !== null ? ` (${st.secondsSinceApplied} s ago)` : ''}`,
      `dead letters ${st.deadLetters}`,
      ...(st.strandedEvents > 0 ? [`WARNING: ${st.strandedEvents} event(s) lie below the windows' lower id bound and no window will apply them; run \`pg2crate verify --repair\` to bring the target in line, and please report this`] : []),
      ...(st.boundViolations > 0 ? [`window bound guard: kept a lower id bound ${st.boundViolations} time(s) that would have skipped events (the log names them); please report this`] : []),
      ...(st.slot ? [`slot ${st.slot.name}: ${st.slot.active ? `streaming to pid ${st.slot.activePid}` : 'inactive'}, retains ${(st.slot.retainedBytes / 1048576).toFixed(1)} MB of WAL${st.slot.warn ? ` — WARNING: over PG2CRATE_SLOT_WARN_MB (${runner.config.slotWarnBytes / 1048576}); drain it or \`pg2crate slot drop\`` : ''}`] : []),
      ...st.tables.map((t) => `  ${t.name} → ${t.target} key (${t.key.join(', ')})${t.captured ? '' : ' NOT CAPTURED (triggers missing)'}${t.backfill && t.backfill !== 'done' ? `, initial load ${t.backfill} (${t.backfillRows} rows)` : ''}`),
    ];
    for (const l of lines) print(l);
    return 0;
  },
};
