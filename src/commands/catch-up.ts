// `pg2crate catch-up [--wait]`: applies everything committed before it started, then exits (for
// cron); exit 3 when another instance holds the stream, unless --wait.
import type { Runner } from '../runner.js';
import { JSON_OPTION, type Command } from './command.js';

/** Drains until everything committed before the call is applied; returns the events applied. */
export async function catchUp(runner: Runner, opts: { wait?: boolean } = {}): Promise<number> {
  await runner.run({ untilCaughtUp: true, waitForStream: opts.wait === true });
  return runner.drainer?.stats.appliedEvents ?? 0;
}

export const catchUpCommand: Command = {
  name: 'catch-up',
  summary: 'apply everything committed so far, then exit (for cron)',
  details: [
    'If another instance holds the stream, says so and exits 3; with --wait, waits for it instead.',
    'Prints how many events it applied; --json prints {"appliedEvents": n}. Logs go to stderr.',
  ],
  usage: 'catch-up [--wait] [--json]',
  options: { wait: { type: 'boolean', summary: 'wait for the instance that holds the stream instead of exiting 3' }, json: JSON_OPTION },
  stoppable: true,
  async run({ runner, values, print }) {
    const applied = await catchUp(runner, { wait: values.wait === true });
    print(values.json ? JSON.stringify({ appliedEvents: applied }) : `caught up: ${applied.toLocaleString('en')} event(s) applied`);
    return 0;
  },
};
