// The soak's command line: `npm run soak -- --minutes=N [--seed=S] [--target=postgres|cratedb]
// [--writers=4..8] [--partitions] [--switch]`.
import { randomInt } from 'node:crypto';

export interface SoakOptions {
  minutes: number;
  seed: number;
  target: 'postgres' | 'cratedb';
  /** writer connections; from the seed (4–8) unless given */
  writers: number | null;
  /** a partitioned table written through its partitions, partitions added while it runs */
  partitions: boolean;
  /** switch the capture mode trigger → pgoutput → trigger while it runs */
  switchCapture: boolean;
}

const USAGE = `usage: npm run soak -- --minutes=N [--seed=S] [--target=postgres|cratedb] [--writers=4..8] [--partitions] [--switch]
  --minutes     how long the writers and faults run (then: catch up, compare, check the windows)
  --seed        repeats the random choices of an earlier run (printed at its start)
  --target      postgres (a second throwaway cluster; the default) or cratedb (CRATEDB_URL; the default when it is set)
  --writers     writer connections (default: 4 to 8, from the seed)
  --partitions  also write a partitioned table through its partitions and add partitions
  --switch      also switch the capture mode to pgoutput and back now and then
`;

export function parseOptions(argv: string[], env: NodeJS.ProcessEnv): SoakOptions {
  const flags = new Map<string, string>();
  for (const a of argv) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(a);
    if (!m) throw new UsageError(`unexpected argument ${JSON.stringify(a)}`);
    flags.set(m[1], m[2] ?? 'true');
  }
  const known = new Set(['minutes', 'seed', 'target', 'writers', 'partitions', 'switch', 'help']);
  for (const k of flags.keys()) if (!known.has(k)) throw new UsageError(`unknown option --${k}`);
  if (flags.has('help')) throw new UsageError('');
  const minutes = Number(flags.get('minutes') ?? 5);
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 24 * 60) throw new UsageError('--minutes expects a number of minutes above 0');
  const seedRaw = flags.get('seed');
  const seed = seedRaw === undefined ? randomInt(1, 2 ** 31 - 1) : Number(seedRaw);
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw new UsageError('--seed expects a whole number below 2^32');
  const target = flags.get('target') ?? (env.CRATEDB_URL ? 'cratedb' : 'postgres');
  if (target !== 'postgres' && target !== 'cratedb') throw new UsageError('--target expects postgres or cratedb');
  if (target === 'cratedb' && !env.CRATEDB_URL) throw new UsageError('--target=cratedb needs CRATEDB_URL (e.g. http://127.0.0.1:4200)');
  const writersRaw = flags.get('writers');
  const writers = writersRaw === undefined ? null : Number(writersRaw);
  if (writers !== null && (!Number.isInteger(writers) || writers < 1 || writers > 32)) throw new UsageError('--writers expects 1 to 32');
  return { minutes, seed, target, writers, partitions: flags.has('partitions'), switchCapture: flags.has('switch') };
}

export class UsageError extends Error {
  readonly usage = USAGE;
}
