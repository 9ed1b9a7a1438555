// `pg2crate verify [tables] [--repair] [--json]`: compares source and target table by table; exit 0
// equal, 1 different, 2 an error.
import { parseQualifiedName } from '../core/config.js';
import { describe } from '../core/errors.js';
import { verifyConfigured, type RunVerifyOptions, type VerifyResult } from '../verify/run-verify.js';
import type { Runner } from '../runner.js';
import { catchUp } from './catch-up.js';
import type { Command } from './command.js';

export type VerifyOptions = Pick<RunVerifyOptions, 'tables' | 'repair' | 'json' | 'out' | 'rangeRows' | 'catchUpTimeoutMs' | 'signal'>;

/**
 * Compares source and target table by table; with repair, re-sends differing rows through the
 * outbox, and applies them here (a catch-up) when no replicator is running to do it.
 */
export async function verify(runner: Runner, opts: VerifyOptions): Promise<VerifyResult> {
  return verifyConfigured({
    ...opts, config: runner.config, pool: runner.pool, logger: runner.logger, catchUp: opts.repair ? () => catchUp(runner) : undefined,
  });
}

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'compare source and target; exit 0 equal, 1 different, 2 error',
  details: [
    'Counts, then checksums over key ranges, then keys. --repair re-sends the differing rows through the stream: a running',
    'replicator applies them (verify waits for it); with none running, verify applies them itself, as catch-up would.',
    'Logs go to stderr; the report (or --json\'s document) to stdout.',
  ],
  usage: 'verify [<schema.table>…] [--repair] [--json]',
  positionals: { name: '<schema.table>…', summary: 'the tables to compare; all captured tables when none is named' },
  options: {
    repair: { type: 'boolean', summary: 're-send exactly the differing rows through the stream, and apply them when no replicator runs' },
    json: { type: 'boolean', summary: 'print the result as one JSON document (for scripts) at the end instead of a report per table' },
  },
  async run({ runner, values, positionals, print, stderr }) {
    const tables = positionals.map((n) => parseQualifiedName(n, 'verify'));
    // Exit 1 means "different" here, so an error must not fall through to the top-level handler's 1.
    try {
      const { equal } = await verify(runner, { tables, repair: values.repair === true, json: values.json === true, out: print });
      return equal ? 0 : 1;
    } catch (err) {
      stderr.write(`pg2crate verify: ${describe(err)}\n`);
      return 2;
    }
  },
};
