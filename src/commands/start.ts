// `pg2crate start`: runs the replicator until SIGINT/SIGTERM: initial loads, draining, wake-ups,
// schedules and the HTTP endpoints the configuration asks for.
import type { Runner } from '../runner.js';
import type { Command } from './command.js';

export async function start(runner: Runner): Promise<void> {
  await runner.run();
}

export const startCommand: Command = {
  name: 'start',
  summary: 'run the replicator (long-running)',
  usage: 'start',
  details: [
    'Stops gracefully on the first SIGINT/SIGTERM (after the page in flight), at once on the second.',
    'Logs to stdout: pino JSON lines, or readable lines when stdout is a terminal (LOG_FORMAT=json|pretty chooses).',
  ],
  stoppable: true,
  logsToStdout: true,
  async run({ runner }) {
    await start(runner);
    return 0;
  },
};
