// The command line: argv → command (src/commands/) → config → runner. The only place that reads
// process.env, installs signal handlers or calls process.exit.
import { loadConfig, readConfigFile, type Config } from './core/config.js';
import { ConfigError, StreamBusyError, TableError, SchemaVersionError, describe } from './core/errors.js';
import { chooseLogFormat, createLogger, logDestination, type Logger } from './core/logger.js';
import { Runner } from './runner.js';
import { CATALOG } from './commands/catalog.js';
import { parseCommandLine, UsageError } from './commands/command-line.js';
import type { StandaloneCommand } from './commands/command.js';

function loadFromProcess(file: string | boolean | undefined): Config {
  const path = file ?? process.env.PG2CRATE_CONFIG;
  return loadConfig(process.env, typeof path === 'string' && path !== '' ? readConfigFile(path) : {});
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

/**
 * A standalone command (the demo) builds its own configuration. First signal: its `stop` signal,
 * on which it winds down (the demo drains and verifies); second: exit at once, which its own exit
 * listeners turn into an immediate cleanup.
 */
async function runStandalone(command: StandaloneCommand, values: Record<string, string | boolean | undefined>, positionals: string[]): Promise<number> {
  const stop = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (stop.signal.aborted) {
      process.stderr.write(`\n${sig} again: stopping at once and removing what the ${command.name} created\n`);
      process.exit(130);
    }
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return command.run({
    env: process.env, values, positionals, stop: stop.signal, stdout: process.stdout, stderr: process.stderr,
    print: (l) => process.stdout.write(`${l}\n`),
  });
}

async function main(argv: string[]): Promise<number> {
  // The command line is checked whole before the configuration is read or anything connects.
  const line = parseCommandLine(argv, CATALOG);
  if (line.kind === 'help') {
    process.stdout.write(line.text);
    return line.exitCode;
  }
  const command = line.command;
  if ('standalone' in command) return runStandalone(command, line.values, line.positionals);
  const config = loadFromProcess(line.values.config);
  // A service logs to stdout; a one-shot command prints its result there and logs to stderr.
  const fd = command.logsToStdout ? 1 : 2;
  const tty = (fd === 1 ? process.stdout : process.stderr).isTTY === true;
  const format = chooseLogFormat(config.logFormat, tty);
  const level = config.logLevel ?? (command.logsToStdout ? 'info' : 'warn');
  const logger = createLogger(level, logDestination({ fd, format, terminal: tty, color: tty && !process.env.NO_COLOR }));
  const runner = new Runner(config, logger);
  try {
    if (command.stoppable) installSignals(logger, () => runner.stop());
    return await command.run({
      runner, values: line.values, positionals: line.positionals, print: (l) => process.stdout.write(`${l}\n`), stderr: process.stderr,
    });
  } finally {
    await runner.close();
    await new Promise<void>((r) => logger.flush(() => r()));
  }
}

const EXPECTED = [UsageError, ConfigError, TableError, SchemaVersionError, StreamBusyError];

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
