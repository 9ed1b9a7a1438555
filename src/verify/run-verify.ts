// `pg2crate verify [tables] [--repair]`: verifies the named registered tables (all of them by
// default) one after the other, prints a row per table as it is done under a header sized for all
// of them (text) or one JSON document
// at the end, and says whether everything is equal. The CLI maps that to the exit code: 0 equal,
// 1 different, 2 an error (anything thrown from here).
import type pg from 'pg';
import type { Config, TableSpec } from '../core/config.js';
import { ConfigError, StreamBusyError, TableError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { displayName } from '../core/identifiers.js';
import { waitCaughtUp } from '../source/catch-up-state.js';
import { assertSchemaCurrent } from '../capture/migrate.js';
import { listTables, RegistryCatalog, type RegisteredTable } from '../capture/registry.js';
import { crateVerifyTarget } from './cratedb-target.js';
import { PgSide } from './pg-side.js';
import { postgresVerifyTarget } from './postgres-target.js';
import { resendRows } from '../resend.js';
import { formatTableReport, reportHeader, reportLayout, type TableReport } from './report.js';
import { DEFAULT_SETTINGS, verifyTable, type VerifySettings } from './verify.js';
import type { VerifyTarget } from './verify-target.js';

export interface RunVerifyOptions extends Partial<VerifySettings> {
  config: Config;
  /** the source pool (the runner's) */
  pool: pg.Pool;
  target: VerifyTarget;
  /** tables to verify; all registered tables when empty or absent */
  tables?: TableSpec[];
  /** one JSON document instead of text lines */
  json?: boolean;
  logger: Logger;
  /** receives output lines (without newline) */
  out?: (line: string) => void;
  /**
   * drains the stream in this process until what is committed now is applied (the catch-up
   * command's work), rejecting with StreamBusyError when another instance holds the stream. Given,
   * a repair with no replicator running is applied here; absent, it waits in the outbox.
   */
  catchUp?: () => Promise<unknown>;
  signal?: AbortSignal;
}

export interface VerifyResult {
  equal: boolean;
  reports: TableReport[];
}

export async function runVerify(o: RunVerifyOptions): Promise<VerifyResult> {
  const { config, pool, target } = o;
  const settings: VerifySettings = { ...DEFAULT_SETTINGS };
  for (const k of Object.keys(DEFAULT_SETTINGS) as (keyof VerifySettings)[]) {
    if (o[k] !== undefined) (settings as unknown as Record<string, unknown>)[k] = o[k];
  }
  if (!Number.isInteger(settings.rangeRows) || settings.rangeRows < 1) throw new ConfigError('verify range rows', 'expected a whole number of at least 1');
  if (!Number.isInteger(settings.maxKeys) || settings.maxKeys < 1) throw new ConfigError('verify max keys', 'expected a whole number of at least 1');
  await assertSchemaCurrent(pool, config.schema);
  const tables = selectTables(await listTables(pool, config.schema), o.tables ?? []);
  const catalog = new RegistryCatalog(pool, config.schema);
  const source = new PgSide(pool, 'source', target.form);
  const reports: TableReport[] = [];
  const layout = reportLayout(tables.map((t) => ({ table: displayName(t.sourceSchema, t.sourceTable), target: displayName(t.targetSchema, t.targetTable) })));
  if (!o.json && tables.length > 0) o.out?.(reportHeader(layout));
  for (const reg of tables) {
    const table = await catalog.describe(reg.id);
    const waitForReplicator = () => waitCaughtUp(pool, { schema: config.schema, stream: config.stream, timeoutMs: settings.catchUpTimeoutMs, signal: o.signal });
    const catchUp = o.catchUp;
    const report = await verifyTable({
      table, source, target, settings, logger: o.logger, signal: o.signal, waitForReplicator,
      writeRepair: (upserts, deletes) => resendRows(pool, config.schema, table, upserts, deletes, o.logger),
      applyRepairHere: catchUp && (async () => {
        try {
          await catchUp();
          return 'applied-here';
        } catch (err) {
          // A replicator started meanwhile: it applies the repair, as when it ran from the start.
          if (err instanceof StreamBusyError) return waitForReplicator();
          throw err;
        }
      }),
    });
    reports.push(report);
    if (!o.json) for (const line of formatTableReport(report, layout)) o.out?.(line);
  }
  const equal = reports.every((r) => r.equal);
  if (o.json) o.out?.(JSON.stringify({ equal, tables: reports }, null, 2));
  else if (reports.length === 0) o.out?.('no tables are registered; nothing to verify');
  return { equal, reports };
}

function selectTables(registered: RegisteredTable[], wanted: TableSpec[]): RegisteredTable[] {
  if (wanted.length === 0) return registered;
  return wanted.map((w) => {
    const found = registered.find((r) => r.sourceSchema === w.schema && r.sourceTable === w.table);
    if (!found) throw new TableError(`${displayName(w.schema, w.table)} is not captured; see \`pg2crate tables list\``);
    return found;
  });
}

/** runVerify against the configured target, which it opens and closes; the schema is checked first. */
export async function verifyConfigured(o: Omit<RunVerifyOptions, 'target'>): Promise<VerifyResult> {
  await assertSchemaCurrent(o.pool, o.config.schema);
  const target = createVerifyTarget(o.config, o.logger);
  try {
    return await runVerify({ ...o, target });
  } finally {
    await target.close();
  }
}

/** The verify target for the configured target. */
export function createVerifyTarget(config: Config, logger: Logger): VerifyTarget {
  const t = config.target;
  if (t.kind === 'postgres') return postgresVerifyTarget(t.connectionString, { logger });
  return crateVerifyTarget(
    { url: t.urls, username: t.username, password: t.password, timeoutMs: config.crate.requestTimeoutMs },
    { plan: config.crate, logger },
  );
}
