// `pg2crate switch-capture trigger|pgoutput`: moves the stream between trigger capture and a logical
// replication slot without a gap (docs/pgoutput.md), draining the old mode in this process.
import { ConfigError } from '../core/errors.js';
import { readCaptureState } from '../capture/capture-state.js';
import { assertSchemaCurrent } from '../capture/migrate.js';
import type { Runner } from '../runner.js';
import { JSON_OPTION, type Command } from './command.js';

export type CaptureMode = 'trigger' | 'pgoutput';

/**
 * Switches the stream's capture mode: this process takes the stream, drains the old mode up to the
 * hand-over point, and returns. Stop running replicators first. runner.stop() ends it half-way
 * (a rerun finishes it).
 */
export async function switchCapture(runner: Runner, to: CaptureMode): Promise<'switched' | 'already'> {
  const { config: c, pool } = runner;
  await assertSchemaCurrent(pool, c.schema);
  if ((await readCaptureState(pool, c.schema, c.stream)).mode === to) return 'already';
  const sink = runner.newSink();
  await sink.start();
  let halted = false;
  const forget = runner.onStop(() => { halted = true; });
  let mode: string = '';
  try {
    // A drain ends after the windows a catch-up needs; the way to pgoutput can need one more (the
    // window a stopped replicator left open, then the final one), so it goes on from where it is.
    for (let round = 0; round < 3 && !halted; round++) {
      await runner.drainOnce(sink, { switchTo: to });
      mode = (await readCaptureState(pool, c.schema, c.stream)).mode;
      if (mode === to) return 'switched';
    }
  } finally {
    forget();
    await sink.stop();
  }
  throw new Error(`the switch to ${to} mode stopped half-way (the stream is in ${mode} mode); run it again to finish`);
}

export const switchCaptureCommand: Command = {
  name: 'switch-capture',
  summary: 'switch the capture mode without a gap',
  usage: 'switch-capture <trigger|pgoutput> [--json]',
  details: [
    'Stop the replicator first; then start it with PG2CRATE_CAPTURE set to the new mode. docs/pgoutput.md',
    'has the procedure and what a rerun does after a stop at each step. --json prints',
    '{"stream", "mode", "switched"} (switched false: it was in that mode already).',
  ],
  options: { json: JSON_OPTION },
  positionals: { name: 'trigger|pgoutput', summary: 'the mode to switch to' },
  stoppable: true,
  async run({ runner, positionals, values, print }) {
    const [to] = positionals;
    if (positionals.length !== 1 || (to !== 'trigger' && to !== 'pgoutput')) throw new ConfigError('switch-capture', 'expected "switch-capture trigger" or "switch-capture pgoutput"');
    const outcome = await switchCapture(runner, to);
    const stream = runner.config.stream;
    if (values.json) {
      print(JSON.stringify({ stream, mode: to, switched: outcome === 'switched' }));
      return 0;
    }
    print(outcome === 'already'
      ? `stream ${stream} is in ${to} mode already`
      : `stream ${stream} now captures with ${to === 'pgoutput' ? 'pgoutput' : 'triggers'}; start the replicator with PG2CRATE_CAPTURE=${to}`);
    return 0;
  },
};
