// `pg2crate verify [tables] [--repair] [--json]`: compares source and target table by table; exit 0
// equal, 1 different, 2 an error.
import { parseQualifiedName } from '../core/config.js';
import { describe } from '../core/errors.js';
import { verifyConfigured, type RunVerifyOptions, type VerifyResult } from '../verify/run-verify.js';
import type { Command, CommandContext } from './command.js';

export type VerifyOptions = Pick<RunVerifyOptions, 'tables' | 'repair' | 'json' | 'out' | 'rangeRows' | 'catchUpTimeoutMs' | 'signal'>;

/** Compares source and target table by table; with repair, re-sends differing rows through the outbox. */
export async function verify(ctx: CommandContext, opts: VerifyOptions): Promise<VerifyResult> {
  return verifyConfigured({ ...opts, config: ctx.config, pool: ctx.pool, logger: ctx.logger });
}

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'compare source and target; exit 0 equal, 1 different, 2 error',
  details: ['Counts, then checksums over key ranges, then keys.'],
  usage: 'verify [<schema.table>…] [--repair] [--json]',
  positionals: { name: '<schema.table>…', summary: 'the tables to compare; all captured tables when none is named' },
  options: {
    repair: { type: 'boolean', summary: 're-send exactly the differing rows through the stream' },
    json: { type: 'boolean', summary: 'one JSON document at the end instead of a report per table' },
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
