// `pg2crate backfill [tables]`: copies captured tables' rows again, with a progress display, and
// returns once they reached the target; drains in this process unless another instance holds the stream.
import { parseQualifiedName, type TableSpec } from '../core/config.js';
import { TableError } from '../core/errors.js';
import { sleep } from '../core/sleep.js';
import { scheduleBackfill } from '../capture/backfill-request.js';
import { readCaptureState } from '../capture/capture-state.js';
import { assertSchemaCurrent } from '../capture/migrate.js';
import { listTables } from '../capture/registry.js';
import { emitWaitMark, slotPassed } from '../source/catch-up-state.js';
import { backfillState, type BackfillProgress } from '../load/backfill.js';
import type { Runner } from '../runner.js';
import { JSON_OPTION, type Command } from './command.js';
import { alignColumns, count, loadProgressText } from './human-output.js';

/**
 * Copies the named tables' rows again (all captured tables when none is named) and returns once
 * they are applied. Drains in this process unless another instance holds the stream.
 */
export async function backfill(runner: Runner, specs: TableSpec[], onProgress?: (p: BackfillProgress & { applied: boolean }) => void): Promise<void> {
  const { config: c, pool } = runner;
  await assertSchemaCurrent(pool, c.schema);
  const mode = (await readCaptureState(pool, c.schema, c.stream)).mode;
  if (mode !== 'trigger' && mode !== 'pgoutput') {
    throw new TableError(`the stream is switching capture modes (${mode}); finish the switch (\`pg2crate switch-capture\`), then run \`pg2crate backfill\``);
  }
  if (mode !== c.capture) throw new TableError(`the stream is in ${mode} mode; run \`pg2crate backfill\` with PG2CRATE_CAPTURE=${mode}`);
  const tables = await listTables(pool, c.schema);
  const chosen = specs.length === 0 ? tables : specs.map((s) => {
    const t = tables.find((x) => x.sourceSchema === s.schema && x.sourceTable === s.table);
    if (!t) throw new TableError(`${s.schema}.${s.table} is not captured; run \`pg2crate tables add ${s.schema}.${s.table}\` first`);
    return t;
  });
  for (const t of chosen) await scheduleBackfill(pool, c.schema, t.id, true);
  // Copy and drain here if this instance gets the stream; otherwise the instance holding it does
  // both, and this one reports progress from the database until the copy reached the target.
  let ended = false;
  const running = runner.run({ listen: false, schedules: false }).finally(() => { ended = true; });
  running.catch(() => {});
  const ids = chosen.map((t) => t.id);
  // pgoutput mode: backfillState's `applied` reads the outbox checkpoint, which trails the slot
  // there; once every copy is done, a mark emitted after that is applied when the slot passed it.
  let mark: string | null = null;
  try {
    for (;;) {
      const state = await backfillState(pool, c.schema, c.stream, ids);
      if (mode === 'pgoutput' && state.every((p) => p.done)) {
        mark ??= await emitWaitMark(pool);
        const applied = await slotPassed(pool, c.slotName, mark);
        for (const p of state) p.applied = applied;
      }
      for (const p of state) onProgress?.(p);
      if (state.every((p) => p.applied) || ended) break;
      await sleep(500);
    }
  } finally {
    await runner.stop();
  }
  await running;
}

export const backfillCommand: Command = {
  name: 'backfill',
  summary: 'copy existing rows again (all captured tables when none named)',
  usage: 'backfill [<schema.table>…] [--json]',
  details: [
    'Shows its progress on stderr (rows of the estimate, rows/s, ETA) and returns once the rows reached the target; copies and',
    'drains in this process unless another instance holds the stream. A changed shape applies to the copy.',
    'Prints one line per table when done; --json prints the tables\' final state as one JSON document.',
  ],
  positionals: { name: '<schema.table>…', summary: 'captured tables; all of them when none is named' },
  options: { json: JSON_OPTION },
  stoppable: true,
  async run({ runner, positionals, values, print, stderr }) {
    const specs = positionals.map((r) => parseQualifiedName(r, 'backfill'));
    const bar = new ProgressBar(stderr);
    const last = new Map<string, BackfillProgress & { applied: boolean }>();
    await backfill(runner, specs, (p) => {
      last.set(p.table, p);
      bar.update(p);
    });
    bar.finish();
    const tables = [...last.values()];
    if (values.json) print(JSON.stringify({ tables }, null, 2));
    else {
      for (const l of alignColumns(tables.map((p) => [p.table, p.applied ? 'applied' : p.done ? 'copied, not yet applied' : 'stopped', `${count(p.rowsCopied)} rows`]), new Set([2]))) print(l);
    }
    return 0;
  },
};

/** A one-line progress display on a terminal; a plain line every 10 s elsewhere. */
class ProgressBar {
  readonly #out: NodeJS.WriteStream;
  #last = 0;
  #shown = false;
  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
  }
  update(p: BackfillProgress & { applied?: boolean }): void {
    const pct = p.rowsEstimate ? Math.min(100, (100 * p.rowsCopied) / Math.max(p.rowsEstimate, 1)) : null;
    const width = 24;
    const filled = pct === null ? 0 : Math.round((pct / 100) * width);
    const state = p.applied ? 'applied' : p.done ? 'copied, applying' : loadProgressText(p);
    const line = `${p.table} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${state}`;
    if (this.#out.isTTY) {
      this.#out.write(`\r\x1b[K${line}`);
      this.#shown = true;
    } else if (Date.now() - this.#last > 10_000 && !p.done) {
      this.#last = Date.now();
      this.#out.write(`${line}\n`);
    }
  }
  finish(): void {
    // The result follows on stdout; the terminal's progress line is cleared so that it does not stay beside it.
    if (this.#shown) this.#out.write('\r\x1b[K');
  }
}
