// What a CLI command is: the function that does the work lives beside its description here, the
// name, usage and options cli.ts parses argv against, and a `run` that prints and says the exit code.
import type { Runner } from '../runner.js';

/** What the commands' functions need of a runner: configuration, logger, source pool. */
export type CommandContext = Pick<Runner, 'config' | 'logger' | 'pool'>;

export interface OptionSpec {
  type: 'string' | 'boolean';
  /** the value's placeholder in the help, for a string option: `--key <col,col>` */
  value?: string;
  summary: string;
}

/** --json, for the commands that can print one JSON document instead of text */
export const JSON_OPTION: OptionSpec = { type: 'boolean', summary: 'print the result as one JSON document (for scripts) instead of text' };

/** What a command's `run` gets: the runner and the parsed command line, and where to write. */
export interface Invocation {
  runner: Runner;
  /** the options given, by name without dashes */
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
  /** writes one line of output (stdout) */
  print: (line: string) => void;
  /** stderr, for messages and the progress display (which needs to know whether it is a terminal) */
  stderr: NodeJS.WriteStream;
}

/** What the help and the parser know of a command. */
export interface CommandDescription {
  /** 'verify', or 'tables add' for a subcommand */
  name: string;
  /** one line: what it does */
  summary: string;
  /** what follows `pg2crate ` in the usage line */
  usage: string;
  /** more lines for its --help: exit codes, what to run next */
  details?: string[];
  /** the positional arguments, for the help; a command without them refuses any */
  positionals?: { name: string; summary: string };
  /** its own options; --config and --help are every command's */
  options?: Record<string, OptionSpec>;
}

/** A command that works on the configured databases: the CLI builds the configuration and a runner. */
export interface Command extends CommandDescription {
  /** runs until done or stopped: the CLI installs its graceful-stop signal handlers first */
  stoppable?: boolean;
  /**
   * a service (`start`): its log is its output and goes to stdout. Every other command prints its
   * result on stdout and logs to stderr, so that the two never mix.
   */
  logsToStdout?: boolean;
  run(call: Invocation): Promise<number>;
}

/** What a standalone command's `run` gets: the environment instead of a configuration, and the signals. */
export interface StandaloneInvocation extends Omit<Invocation, 'runner'> {
  env: Readonly<Record<string, string | undefined>>;
  /** stdout, for a display that needs to know whether it is a terminal */
  stdout: NodeJS.WriteStream;
  /** aborted at the first SIGINT/SIGTERM; the second one ends the process at once (exit 130) */
  stop: AbortSignal;
}

/**
 * A command that builds its own configuration (`demo`, on a server it starts itself): the CLI reads
 * no configuration for it and hands it the environment; it installs the signal handlers for it.
 */
export interface StandaloneCommand extends CommandDescription {
  standalone: true;
  run(call: StandaloneInvocation): Promise<number>;
}

export type AnyCommand = Command | StandaloneCommand;

/** Subcommands under one word (`tables add`, `tables list` …). */
export interface CommandGroup {
  name: string;
  summary: string;
  commands: Command[];
  /** the subcommand that runs when none is named (`dead-letters` lists them) */
  fallback?: Command;
}
