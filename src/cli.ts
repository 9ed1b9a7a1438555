// The command line: argv → config → runner. The only place that reads process.env, installs signal
// handlers or calls process.exit.
import { loadConfig, parseQualifiedName, readConfigFile, type Config } from './core/config.js';
import { ConfigError, StreamBusyError, TableError, SchemaVersionError, describe } from './core/errors.js';
import { createLogger, type Logger } from './core/logger.js';
import { Runner } from './runner.js';
import { displayName } from './core/identifiers.js';
import type { BackfillProgress } from './load/backfill.js';

const USAGE = `usage: pg2crate <command> [options]

commands:
  migrate                      create or upgrade the pg2crate schema, capture configured tables
  start                        run the replicator (long-running)
  catch-up [--wait]            apply everything committed so far, then exit (for cron); if another
                               instance holds the stream, say so and exit 3 (or wait for it)
  tables add <schema.table>…   capture tables (installs triggers)
  tables remove <schema.table>…
  tables list
  backfill [<schema.table>…]   copy existing rows again (all captured tables when none named)
  verify [<schema.table>…] [--repair]   compare source and target; exit 0 equal, 1 different, 2 error
  status                       where the stream stands: backlog, last apply, tables, dead letters,
                               the slot's retained WAL in pgoutput mode
  switch-capture <trigger|pgoutput>
                               switch the capture mode without a gap (stop the replicator first;
                               then start it with PG2CRATE_CAPTURE set to the new mode)
  slot drop [--force]          drop the replication slot (PG2CRATE_SLOT), e.g. when it holds back
                               too much WAL; --force while the stream still reads from it
  dead-letters list            changes the target refused, with its message
  dead-letters retry <id…|--all>    send the current source state of those keys again
  dead-letters discard <id…|--all>  forget them

options:
  --config <file.json>         configuration file (also PG2CRATE_CONFIG)
  --key <col,col>              with "tables add": key columns for a table without a primary key
  --json                       machine-readable output where supported
  --help
`;

interface Args {
  command: string[];
  flags: Map<string, string | true>;
}

function parseArgs(argv: string[]): Args {
  const command: string[] = [];
  const flags = new Map<string, string | true>();
  const withValue = new Set(['--config', '--key']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) flags.set(a.slice(0, eq), a.slice(eq + 1));
      else if (withValue.has(a)) {
        if (i + 1 >= argv.length) throw new ConfigError(a, 'expects a value');
        flags.set(a, argv[++i]);
      } else flags.set(a, true);
    } else command.push(a);
  }
  return { command, flags };
}

function loadFromProcess(flags: Map<string, string | true>): Config {
  const path = flags.get('--config') ?? process.env.PG2CRATE_CONFIG;
  const file = typeof path === 'string' && path !== '' ? readConfigFile(path) : {};
  return loadConfig(process.env, file);
}

function installSignals(logger: Logger, stop: () => Promise<void>): void {
  let signalled = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (signalled) {
      logger.warn({ signal: sig }, 'second signal: exiting now; the page in flight will be replayed on the next start');
      process.exit(130);
    }
    signalled = true;
    logger.info({ signal: sig }, 'stopping gracefully after the page in flight; send the signal again to exit at once');
    stop().catch((err) => logger.error({ err }, 'graceful stop failed'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv);
  if (args.flags.has('--help') || args.command.length === 0) {
    process.stdout.write(USAGE);
    return args.command.length === 0 && !args.flags.has('--help') ? 2 : 0;
  }
  const config = loadFromProcess(args.flags);
  const logger = createLogger(config.logLevel);
  const runner = new Runner(config, logger);
  const json = args.flags.has('--json');
  try {
    const [cmd, sub, ...rest] = args.command;
    switch (cmd) {
      case 'migrate': {
        const { ran, tables } = await runner.migrate();
        process.stdout.write(`migrated schema ${config.schema}${ran.length ? ` (ran ${ran.join(', ')})` : ' (already current)'}; ${tables.length} configured table(s) captured\n`);
        return 0;
      }
      case 'start': {
        installSignals(logger, () => runner.stop());
        await runner.run();
        return 0;
      }
      case 'catch-up': {
        installSignals(logger, () => runner.stop());
        await runner.run({ untilCaughtUp: true, waitForStream: args.flags.has('--wait') });
        const s = runner.drainer?.stats;
        process.stdout.write(`caught up: ${s?.appliedEvents ?? 0} event(s) applied\n`);
        return 0;
      }
      case 'status': {
        const st = await runner.status();
        if (json) {
          process.stdout.write(JSON.stringify(st, null, 2) + '\n');
          return 0;
        }
        const lines = [
          `mode ${st.mode}, schema ${st.schema}, stream ${st.stream}: ${st.drainerPid ? `drained by pid ${st.drainerPid}${st.idle ? ' (idle)' : ''}` : 'no drainer running'}`,
          `backlog ${st.backlogEvents} event(s); applied ${st.appliedEvents} in ${st.windows} window(s); last applied ${st.lastAppliedAt ?? 'never'}${st.secondsSinceApplied !== null ? ` (${st.secondsSinceApplied} s ago)` : ''}`,
          `dead letters ${st.deadLetters}`,
          ...(st.strandedEvents > 0 ? [`WARNING: ${st.strandedEvents} event(s) lie below the windows' lower id bound and no window will apply them; run \`pg2crate verify --repair\` to bring the target in line, and please report this`] : []),
          ...(st.boundViolations > 0 ? [`window bound guard: kept a lower id bound ${st.boundViolations} time(s) that would have skipped events (the log names them); please report this`] : []),
          ...(st.slot ? [`slot ${st.slot.name}: ${st.slot.active ? `streaming to pid ${st.slot.activePid}` : 'inactive'}, retains ${(st.slot.retainedBytes / 1048576).toFixed(1)} MB of WAL${st.slot.warn ? ` — WARNING: over PG2CRATE_SLOT_WARN_MB (${config.slotWarnBytes / 1048576}); drain it or \`pg2crate slot drop\`` : ''}`] : []),
          ...st.tables.map((t) => `  ${t.name} → ${t.target} key (${t.key.join(', ')})${t.captured ? '' : ' NOT CAPTURED (triggers missing)'}${t.backfill && t.backfill !== 'done' ? `, initial load ${t.backfill} (${t.backfillRows} rows)` : ''}`),
        ];
        process.stdout.write(lines.join('\n') + '\n');
        return 0;
      }
      case 'switch-capture': {
        if (sub !== 'trigger' && sub !== 'pgoutput') throw new ConfigError('switch-capture', 'expected "switch-capture trigger" or "switch-capture pgoutput"');
        installSignals(logger, () => runner.stop());
        const outcome = await runner.switchCapture(sub);
        process.stdout.write(outcome === 'already'
          ? `stream ${config.stream} is in ${sub} mode already\n`
          : `stream ${config.stream} now captures with ${sub === 'pgoutput' ? 'pgoutput' : 'triggers'}; start the replicator with PG2CRATE_CAPTURE=${sub}\n`);
        return 0;
      }
      case 'slot': {
        if (sub !== 'drop') throw new ConfigError('slot', 'expected "slot drop"');
        const dropped = await runner.dropSlot(args.flags.has('--force'));
        process.stdout.write(dropped ? `dropped slot ${config.slotName}\n` : `there is no slot ${config.slotName}\n`);
        return 0;
      }
      case 'backfill': {
        const specs = [sub, ...rest].filter((x): x is string => x !== undefined).map((r) => parseQualifiedName(r, 'backfill'));
        installSignals(logger, () => runner.stop());
        const bar = new ProgressBar(process.stderr);
        await runner.backfill(specs, (p) => bar.update(p));
        bar.finish();
        return 0;
      }
      case 'verify': {
        const tables = [sub, ...rest].filter((n): n is string => n !== undefined).map((n) => parseQualifiedName(n, 'verify'));
        // Exit 1 means "different" here, so an error must not fall through to the top-level handler's 1.
        try {
          const { equal } = await runner.verify({ tables, repair: args.flags.has('--repair'), json, out: (l) => process.stdout.write(`${l}\n`) });
          return equal ? 0 : 1;
        } catch (err) {
          process.stderr.write(`pg2crate verify: ${describe(err)}\n`);
          return 2;
        }
      }
      case 'dead-letters': {
        if (sub === 'list' || sub === undefined) {
          const rows = await runner.deadLetters();
          if (json) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
          else if (rows.length === 0) process.stdout.write('no dead letters\n');
          else for (const r of rows) process.stdout.write(`#${r.id} event ${r.eventId} ${r.table} op ${r.op} attempts ${r.attempts} at ${r.createdAt}: ${r.code ? `[${r.code}] ` : ''}${r.error}\n`);
          return 0;
        }
        if (sub !== 'retry' && sub !== 'discard') throw new ConfigError('dead-letters', 'expected "dead-letters list|retry|discard"');
        const all = args.flags.has('--all');
        const ids = rest.map((x) => Number(x));
        if ((!all && ids.length === 0) || ids.some((n) => !Number.isInteger(n) || n <= 0)) {
          throw new ConfigError(`dead-letters ${sub}`, 'name dead-letter ids (see "dead-letters list") or pass --all');
        }
        const n = sub === 'retry' ? await runner.retryDeadLetters(all ? 'all' : ids) : await runner.discardDeadLetters(all ? 'all' : ids);
        process.stdout.write(sub === 'retry' ? `re-sent the current state of ${n} dead letter(s)\n` : `discarded ${n} dead letter(s)\n`);
        return 0;
      }
      case 'tables': {
        if (sub === 'list') {
          const tables = await runner.listTables();
          if (json) process.stdout.write(JSON.stringify(tables, null, 2) + '\n');
          else for (const t of tables) process.stdout.write(`${displayName(t.sourceSchema, t.sourceTable)} → ${displayName(t.targetSchema, t.targetTable)}  key (${t.keyColumns.join(', ')}, ${t.keyOrigin})\n`);
          return 0;
        }
        if (sub !== 'add' && sub !== 'remove') throw new ConfigError('tables', 'expected "tables add|remove|list"');
        if (rest.length === 0) throw new ConfigError(`tables ${sub}`, 'name at least one table as schema.table');
        const key = args.flags.get('--key');
        const specs = rest.map((r) => ({ ...parseQualifiedName(r, `tables ${sub}`), ...(typeof key === 'string' ? { keyColumns: key.split(',').map((k) => k.trim()) } : {}) }));
        if (sub === 'add') {
          for (const t of await runner.addTables(specs)) {
            process.stdout.write(`capturing ${displayName(t.sourceSchema, t.sourceTable)} → ${displayName(t.targetSchema, t.targetTable)}\n`);
            for (const m of await runner.targetNameMappings(t)) {
              process.stdout.write(`  ${m.kind} ${JSON.stringify(m.from)} arrives as ${JSON.stringify(m.to)}: ${m.reason}\n`);
            }
          }
        } else {
          const removed = await runner.removeTables(specs);
          specs.forEach((s, i) => process.stdout.write(`${removed[i] ? 'released' : 'was not captured:'} ${displayName(s.schema, s.table)}\n`));
        }
        return 0;
      }
      default:
        throw new ConfigError('command', `unknown command ${JSON.stringify(cmd)}; see pg2crate --help`);
    }
  } finally {
    await runner.close();
    await new Promise<void>((r) => logger.flush(() => r()));
  }
}

/** A one-line progress display on a terminal; plain lines every 10 s elsewhere. */
class ProgressBar {
  readonly #out: NodeJS.WriteStream;
  #last = 0;
  #lines = new Map<string, string>();
  constructor(out: NodeJS.WriteStream) {
    this.#out = out;
  }
  update(p: BackfillProgress & { applied?: boolean }): void {
    const pct = p.rowsEstimate ? Math.min(100, (100 * p.rowsCopied) / Math.max(p.rowsEstimate, 1)) : null;
    const eta = p.rowsEstimate && p.rowsPerSecond > 0 && !p.done ? Math.max(0, Math.round((p.rowsEstimate - p.rowsCopied) / p.rowsPerSecond)) : null;
    const width = 24;
    const filled = pct === null ? 0 : Math.round((pct / 100) * width);
    const state = p.applied ? 'applied' : p.done ? 'copied, applying' : `ETA ${eta ?? '?'} s`;
    const line = `${p.table} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct === null ? '' : `${pct.toFixed(0)}% `}${p.rowsCopied.toLocaleString('en')} rows, ${Math.round(p.rowsPerSecond).toLocaleString('en')} rows/s, ${state}`;
    this.#lines.set(p.table, line);
    if (this.#out.isTTY) {
      this.#out.write(`\r\x1b[K${line}`);
    } else if (Date.now() - this.#last > 10_000 || p.applied) {
      this.#last = Date.now();
      this.#out.write(`${line}\n`);
    }
  }
  finish(): void {
    if (this.#out.isTTY) this.#out.write('\n');
    else for (const l of this.#lines.values()) this.#out.write(`${l}\n`);
  }
}

const EXPECTED = [ConfigError, TableError, SchemaVersionError, StreamBusyError];

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    // One line that names the problem; the stack only when it is not one of ours.
    const known = EXPECTED.some((E) => err instanceof E);
    process.stderr.write(`pg2crate: ${describe(err)}\n`);
    if (!known && process.env.LOG_LEVEL === 'debug') process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    process.exit(err instanceof StreamBusyError ? 3 : known ? 2 : 1);
  },
);
