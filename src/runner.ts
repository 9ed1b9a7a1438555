// The composition root: builds the source, sink, drainer and listener from the configuration,
// starts them in order and stops them in reverse order.
import pg from 'pg';
import type { Config, TableSpec } from './core/config.js';
import { backoffDelay, classify, StreamBusyError, TableError } from './core/errors.js';
import { MetricsServer } from './ops/metrics.js';
import { createVerifyTarget, runVerify, type RunVerifyOptions, type VerifyResult } from './verify/run-verify.js';
import { Scheduler } from './ops/scheduler.js';
import { runRetention, type RetentionResult } from './ops/retention.js';
import { Drainer } from './drain/drainer.js';
import type { Logger } from './core/logger.js';
import { assertSchemaCurrent, migrate } from './capture/migrate.js';
import { Backfiller, backfillState, type BackfillProgress } from './load/backfill.js';
import { scheduleBackfill } from './capture/backfill-request.js';
import { emitWaitMark, slotPassed } from './source/catch-up-state.js';
import { sleep } from './core/sleep.js';
import { Listener } from './source/listener.js';
import { streamLockText, wakeupChannel } from './capture/names.js';
import { readStatus, type StreamStatus } from './ops/status.js';
import { PartitionWatcher, watchPartitions } from './ops/partition-watch.js';
import { OutboxSource } from './source/outbox.js';
import { readCaptureState } from './capture/capture-state.js';
import { PgoutputSource } from './source/pgoutput/pgoutput-source.js';
import { dropSlot } from './source/pgoutput/slot.js';
import { toPgoutput, toTrigger, type SwitchOptions } from './source/pgoutput/switch.js';
import { addTable, describeColumns, listTables, RegistryCatalog, removeTable, resolveTable, type RegisteredTable } from './capture/registry.js';
import { discardDeadLetters, listDeadLetters, retryDeadLetters, type DeadLetterRow } from './ops/dead-letters.js';
import { crateNameMappings, type CrateNameMapping } from './sink/cratedb/names.js';
import { PostgresSink } from './sink/postgres/postgres-sink.js';
import { PgCopyLoader } from './sink/postgres/copy-load.js';
import type { Sink } from './sink/sink.js';
import { crateTargetName, CrateSink } from './sink/cratedb/cratedb-sink.js';
import { createPool } from './core/pg-pool.js';

export function sourceConnection(config: Config): pg.ClientConfig {
  return config.sourceUrl ? { connectionString: config.sourceUrl } : {};
}

export function createSink(config: Config, logger: Logger): Sink {
  const t = config.target;
  return t.kind === 'postgres' ? new PostgresSink(t.connectionString, logger) : new CrateSink(t, config.crate, logger);
}

/** Where a source table lands; CrateDB has stricter rules for names than Postgres. */
export function targetNameFor(config: Config): (spec: TableSpec) => { schema: string; table: string } {
  return (spec) => {
    const schema = spec.targetSchema ?? config.targetSchema ?? spec.schema;
    const table = spec.targetTable ?? spec.table;
    return config.target.kind === 'cratedb' ? crateTargetName(schema, table) : { schema, table };
  };
}

export interface RunnerOptions {
  /** a seam for tests: wraps the sink (to fail the Nth page, count calls …) */
  wrapSink?: (sink: Sink) => Sink;
  /** a seam for tests: runs at each step of a capture switch (switch.ts); throwing crashes the switch there */
  switchStep?: SwitchOptions['step'];
}

export class Runner {
  readonly #config: Config;
  readonly #log: Logger;
  readonly #opts: RunnerOptions;
  #pool: pg.Pool | null = null;
  #drainer: Drainer | null = null;
  #listener: Listener | null = null;
  #sink: Sink | null = null;
  #copyLoader: PgCopyLoader | null = null;
  #backfiller: Backfiller | null = null;

  constructor(config: Config, logger: Logger, opts: RunnerOptions = {}) {
    this.#config = config;
    this.#opts = opts;
    this.#log = logger.child({ component: 'runner' });
  }

  get drainer(): Drainer | null {
    return this.#drainer;
  }

  get pool(): pg.Pool {
    if (!this.#pool) {
      this.#pool = createPool({ ...sourceConnection(this.#config), max: 4, application_name: 'pg2crate' }, this.#log, 'source');
    }
    return this.#pool;
  }

  /** Creates or upgrades the tool's schema, then captures the tables the configuration lists. */
  async migrate(): Promise<{ ran: string[]; tables: RegisteredTable[] }> {
    // Check every configured table before writing anything: a typo must not leave a half-made schema.
    for (const spec of this.#config.tables) await resolveTable(this.pool, spec);
    const ran = await migrate(this.pool, this.#config.schema);
    const tables: RegisteredTable[] = [];
    if ((await readCaptureState(this.pool, this.#config.schema, this.#config.stream)).mode !== 'trigger') {
      // pgoutput mode: installing triggers again would fill an outbox nobody reads.
      const registered = await listTables(this.pool, this.#config.schema);
      for (const spec of this.#config.tables) {
        const t = registered.find((r) => r.sourceSchema === spec.schema && r.sourceTable === spec.table);
        if (!t) throw new TableError(`${spec.schema}.${spec.table} is not captured yet and the stream is in pgoutput mode; tables are added in trigger mode, where their initial load runs: see docs/pgoutput.md`);
        tables.push(t);
      }
      return { ran, tables };
    }
    for (const spec of this.#config.tables) {
      const t = await addTable(this.pool, this.#config.schema, spec, targetNameFor(this.#config));
      tables.push(t);
      for (const m of await this.targetNameMappings(t)) {
        this.#log.warn({ table: `${t.sourceSchema}.${t.sourceTable}`, kind: m.kind, from: m.from, to: m.to, reason: m.reason }, 'name mapped for the target');
      }
    }
    return { ran, tables };
  }

  async addTables(specs: TableSpec[]): Promise<RegisteredTable[]> {
    await assertSchemaCurrent(this.pool, this.#config.schema);
    if ((await readCaptureState(this.pool, this.#config.schema, this.#config.stream)).mode !== 'trigger') {
      throw new TableError('the stream is in pgoutput mode; tables are added in trigger mode, where their initial load runs: `pg2crate switch-capture trigger`, `tables add`, wait for the load, `switch-capture pgoutput`');
    }
    const out: RegisteredTable[] = [];
    for (const spec of specs) {
      const configured = this.#config.tables.find((t) => t.schema === spec.schema && t.table === spec.table);
      out.push(await addTable(this.pool, this.#config.schema, { ...configured, ...spec, keyColumns: spec.keyColumns ?? configured?.keyColumns }, targetNameFor(this.#config)));
    }
    return out;
  }

  /** Names that do not reach the target as they are (CrateDB's naming rules), with the reason. */
  async targetNameMappings(t: RegisteredTable): Promise<CrateNameMapping[]> {
    if (this.#config.target.kind !== 'cratedb') return [];
    const spec = this.#config.tables.find((x) => x.schema === t.sourceSchema && x.table === t.sourceTable);
    const intended = { schema: spec?.targetSchema ?? this.#config.targetSchema ?? t.sourceSchema, table: spec?.targetTable ?? t.sourceTable };
    const columns = await describeColumns(this.pool, t.relid);
    return crateNameMappings(intended, columns.map((c) => c.name));
  }

  async removeTables(specs: TableSpec[]): Promise<boolean[]> {
    await assertSchemaCurrent(this.pool, this.#config.schema);
    const out: boolean[] = [];
    for (const spec of specs) out.push(await removeTable(this.pool, this.#config.schema, spec));
    return out;
  }

  async status(): Promise<StreamStatus> {
    const c = this.#config;
    await assertSchemaCurrent(this.pool, c.schema);
    return readStatus(this.pool, c.schema, c.stream, streamLockText(c.schema, c.stream), { slotName: c.slotName, warnBytes: c.slotWarnBytes });
  }

  /**
   * Switches the stream's capture mode without a gap (docs/pgoutput.md): this process takes the
   * stream, drains the old mode up to the hand-over point, and returns. Stop running replicators first.
   */
  async switchCapture(to: 'trigger' | 'pgoutput'): Promise<'switched' | 'already'> {
    const c = this.#config;
    await assertSchemaCurrent(this.pool, c.schema);
    if ((await readCaptureState(this.pool, c.schema, c.stream)).mode === to) return 'already';
    const base = createSink(c, this.#log);
    const sink = this.#opts.wrapSink ? this.#opts.wrapSink(base) : base;
    await sink.start();
    let halted = false;
    this.#stopped = () => { halted = true; };
    let mode: string = '';
    try {
      // A drain ends after the windows a catch-up needs; the way to pgoutput can need one more (the
      // window a stopped replicator left open, then the final one), so it goes on from where it is.
      for (let round = 0; round < 3 && !halted; round++) {
        const drainer = this.#newDrainer(sink, { untilCaughtUp: true, waitForStream: false, switchTo: to });
        this.#drainer = drainer;
        try {
          await drainer.start();
        } finally {
          await drainer.stop();
        }
        mode = (await readCaptureState(this.pool, c.schema, c.stream)).mode;
        if (mode === to) return 'switched';
      }
    } finally {
      this.#stopped = null;
      await sink.stop();
    }
    throw new Error(`the switch to ${to} mode stopped half-way (the stream is in ${mode} mode); run it again to finish`);
  }

  /** Drops the replication slot; refuses while the stream reads from it unless forced. */
  async dropSlot(force: boolean): Promise<boolean> {
    const c = this.#config;
    await assertSchemaCurrent(this.pool, c.schema);
    const { mode } = await readCaptureState(this.pool, c.schema, c.stream);
    if (mode !== 'trigger' && !force) {
      throw new TableError(
        `stream ${c.stream} is in ${mode} mode and reads slot ${c.slotName}: dropping it loses the changes not yet applied; ` +
          'pass --force to drop it anyway, then resync with `pg2crate switch-capture trigger` and `pg2crate backfill`',
      );
    }
    return dropSlot(this.pool, c.slotName);
  }

  /** Compares source and target table by table; with repair, re-sends differing rows through the outbox. */
  async verify(opts: Pick<RunVerifyOptions, 'tables' | 'repair' | 'json' | 'out' | 'rangeRows' | 'catchUpTimeoutMs' | 'signal'>): Promise<VerifyResult> {
    await assertSchemaCurrent(this.pool, this.#config.schema);
    const target = createVerifyTarget(this.#config, this.#log);
    try {
      return await runVerify({ ...opts, config: this.#config, pool: this.pool, target, logger: this.#log });
    } finally {
      await target.close();
    }
  }

  async deadLetters(): Promise<DeadLetterRow[]> {
    await assertSchemaCurrent(this.pool, this.#config.schema);
    return listDeadLetters(this.pool, this.#config.schema, this.#config.stream);
  }

  async retryDeadLetters(ids: number[] | 'all'): Promise<number> {
    await assertSchemaCurrent(this.pool, this.#config.schema);
    return retryDeadLetters(this.pool, this.#config.schema, this.#config.stream, new RegistryCatalog(this.pool, this.#config.schema), ids);
  }

  async discardDeadLetters(ids: number[] | 'all'): Promise<number> {
    await assertSchemaCurrent(this.pool, this.#config.schema);
    return discardDeadLetters(this.pool, this.#config.schema, this.#config.stream, ids);
  }

  async listTables(): Promise<RegisteredTable[]> {
    await assertSchemaCurrent(this.pool, this.#config.schema);
    return listTables(this.pool, this.#config.schema);
  }

  /**
   * Runs the replicator until stop() (or, with untilCaughtUp, until everything committed before
   * the call is applied). Rejects on a fatal error.
   */
  async run(opts: { untilCaughtUp?: boolean; listen?: boolean; waitForStream?: boolean; schedules?: boolean } = {}): Promise<void> {
    const c = this.#config;
    await assertSchemaCurrent(this.pool, c.schema);
    const base = createSink(c, this.#log);
    const sink = this.#opts.wrapSink ? this.#opts.wrapSink(base) : base;
    this.#sink = sink;
    await sink.start();
    const scheduled = opts.schedules !== false && !opts.untilCaughtUp;
    if (scheduled && c.httpPort !== undefined) await this.#startHttp(c.httpPort);
    if (scheduled) this.#startSchedules();
    if (scheduled && c.schedules.catchUp) {
      // Scheduled mode: no LISTEN connection and no standing drainer; catch-up runs on the schedule.
      this.#log.info({ target: sink.name, schema: c.schema, stream: c.stream, cron: c.schedules.catchUp }, 'replicator started in scheduled mode');
      await new Promise<void>((resolve) => { this.#stopped = resolve; });
      await this.stop();
      return;
    }
    if (opts.untilCaughtUp) await this.#watchPartitionsOnce();
    else {
      this.#partitions = new PartitionWatcher(this.pool, { schema: c.schema, stream: c.stream, logger: this.#log, intervalMs: c.partitionWatchMs });
      this.#partitions.start();
    }
    const drainer = this.#newDrainer(sink, { untilCaughtUp: opts.untilCaughtUp, waitForStream: opts.waitForStream });
    this.#drainer = drainer;
    const done = drainer.start();
    // In pgoutput mode no trigger sends wake-ups; initial loads still write the outbox, which the
    // slot publishes (backfill.ts).
    const triggers = c.capture === 'trigger';
    if (!opts.untilCaughtUp) {
      const backfiller = this.#newBackfiller(drainer, sink);
      this.#backfiller = backfiller;
      // The copier watches for new jobs for as long as the replicator runs, so a source restart or
      // failover reaches it too: like the drainer, it waits and goes on (a copy resumes after its
      // last committed chunk). Only a fatal error stops the replicator.
      const copy = (attempt: number): void => {
        backfiller.start(true).catch(async (err) => {
          if (classify(err) === 'retryable' && this.#backfiller === backfiller) {
            const delay = backoffDelay(attempt, 500, 30_000);
            this.#log.warn({ err, retryInMs: delay }, 'initial loads interrupted; retrying');
            // unref: a runner stopped meanwhile must not be kept alive by this timer
            await new Promise((r) => setTimeout(r, delay).unref());
            if (this.#backfiller === backfiller) copy(attempt + 1);
            return;
          }
          if (this.#backfiller !== backfiller) return;
          this.#log.error({ err }, 'initial load failed; stopping');
          this.#failure = err;
          await drainer.stop();
        });
      };
      copy(0);
    }
    if (opts.listen !== false && !opts.untilCaughtUp && triggers) {
      this.#listener = new Listener(sourceConnection(c), wakeupChannel(c.schema), () => drainer.wake(), this.#log);
      await this.#listener.start();
    }
    this.#log.info({ target: sink.name, schema: c.schema, stream: c.stream, pageSize: c.pageSize }, 'replicator started');
    try {
      await done;
    } finally {
      await this.stop();
    }
    if (this.#failure) throw this.#failure;
  }

  #stopped: (() => void) | null = null;
  #partitions: PartitionWatcher | null = null;
  #scheduler: Scheduler | null = null;
  #http: MetricsServer | null = null;
  get schedulerStats(): Scheduler['stats'] | null {
    return this.#scheduler?.stats ?? null;
  }

  /** the port the HTTP server listens on, once started */
  httpPort: number | null = null;

  #newDrainer(sink: Sink, opts: { untilCaughtUp?: boolean; waitForStream?: boolean; switchTo?: 'trigger' | 'pgoutput' }): Drainer {
    const c = this.#config;
    const connection = sourceConnection(c);
    const switching: SwitchOptions | null = opts.switchTo
      ? { connection, schema: c.schema, stream: c.stream, slot: c.slotName, publication: c.publicationName, logger: this.#log, step: this.#opts.switchStep }
      : null;
    // A switch drains the mode it leaves.
    const pgoutput = opts.switchTo ? opts.switchTo === 'trigger' : c.capture === 'pgoutput';
    let drainer: Drainer | null = null;
    const source = pgoutput
      ? new PgoutputSource({
        connection, schema: c.schema, stream: c.stream, slot: c.slotName, publication: c.publicationName, standbyRetryMs: c.standbyRetryMs,
        pageSize: c.pageSize, slotWarnBytes: c.slotWarnBytes, logger: this.#log, onData: () => drainer?.wake(),
        catchUp: opts.untilCaughtUp && !switching, stopAt: switching ? toTrigger(switching) : undefined,
      })
      : new OutboxSource({
        connection, schema: c.schema, stream: c.stream, standbyRetryMs: c.standbyRetryMs, logger: this.#log, finalWindow: switching ? toPgoutput(switching) : undefined,
      });
    return drainer = new Drainer(source, sink, {
      pageSize: c.pageSize, pollIntervalMs: c.pollIntervalMs, deadLetterPolicy: c.deadLetterPolicy, rejectAttempts: c.rejectAttempts,
      stopTimeoutMs: c.stopTimeoutMs, untilCaughtUp: opts.untilCaughtUp, waitForStream: opts.waitForStream,
    }, this.#log);
  }

  #startSchedules(): void {
    const c = this.#config;
    const scheduler = new Scheduler(c.schedules.timezone, this.#log);
    this.#scheduler = scheduler;
    if (c.schedules.catchUp) scheduler.add('catch-up', c.schedules.catchUp, () => this.#catchUpOnce());
    if (c.schedules.retention) scheduler.add('retention', c.schedules.retention, () => this.retention().then(() => {}));
    if (c.schedules.verify) {
      scheduler.add('verify', c.schedules.verify, async () => {
        const res = await this.verify({ repair: false, json: false, out: () => {} });
        if (res.equal) this.#log.info('scheduled verify: source and target agree');
        else this.#log.warn('scheduled verify: source and target differ; run `pg2crate verify` for the keys');
      });
    }
  }

  /** Partitions created or attached since the last run get their triggers before a catch-up drains. */
  async #watchPartitionsOnce(): Promise<void> {
    const c = this.#config;
    await watchPartitions(this.pool, { schema: c.schema, stream: c.stream, logger: this.#log })
      .catch((err: unknown) => this.#log.warn({ err }, 'partition watch failed; the next run tries again'));
  }

  /** One scheduled catch-up: drains what is committed and returns; skips when another instance holds the stream. */
  async #catchUpOnce(): Promise<void> {
    const sink = this.#sink;
    if (!sink) return;
    await this.#watchPartitionsOnce();
    const drainer = this.#newDrainer(sink, { untilCaughtUp: true, waitForStream: false });
    this.#drainer = drainer;
    try {
      await drainer.start();
      this.#log.info({ events: drainer.stats.appliedEvents }, 'scheduled catch-up done');
    } catch (err) {
      if (err instanceof StreamBusyError) {
        this.#log.info('scheduled catch-up skipped: another instance holds the stream');
        return;
      }
      throw err;
    } finally {
      await drainer.stop();
    }
  }

  /** Truncates applied outbox generations and rotates the current one when it is large. */
  async retention(): Promise<RetentionResult> {
    const c = this.#config;
    return runRetention(this.pool, { schema: c.schema, rotateBytes: c.retentionRotateBytes, lockTimeoutMs: 2000, logger: this.#log });
  }

  async #startHttp(port: number): Promise<void> {
    const c = this.#config;
    const server = new MetricsServer({
      drainer: () => this.#drainer?.stats ?? null,
      status: () => readStatus(this.pool, c.schema, c.stream, streamLockText(c.schema, c.stream), { slotName: c.slotName, warnBytes: c.slotWarnBytes }),
      pingTarget: async () => {
        if (!this.#sink?.ping) throw new Error('target not connected');
        await this.#sink.ping();
      },
      readyMaxLagSeconds: c.readyMaxLagSeconds,
    }, this.#log);
    this.httpPort = await server.start(port);
    this.#http = server;
  }

  #failure: unknown = null;

  #newBackfiller(drainer: Drainer, sink: Sink): Backfiller {
    const c = this.#config;
    // A Postgres target takes plain tables' initial loads as binary COPY; a wrapped sink (tests
    // that inject faults) sees every row itself.
    if (c.target.kind === 'postgres' && c.capture === 'trigger' && c.initialLoad === 'direct' && !this.#opts.wrapSink) {
      this.#copyLoader ??= new PgCopyLoader(c.target.connectionString, this.#log);
    }
    return new Backfiller(this.pool, {
      schema: c.schema, stream: c.stream, chunkRows: c.backfillChunkRows, inflight: c.backfillInflight, pollMs: Math.min(c.pollIntervalMs, 200),
      logger: this.#log, isLeader: () => drainer.stats.state !== 'acquiring' && drainer.stats.state !== 'stopped',
      slot: c.capture === 'pgoutput' ? c.slotName : undefined,
      direct: c.capture === 'trigger' && c.initialLoad === 'direct'
        ? { sink, catalog: new RegistryCatalog(this.pool, c.schema), rejectAttempts: c.rejectAttempts, deadLetterPolicy: c.deadLetterPolicy, pgCopy: this.#copyLoader ?? undefined }
        : undefined,
    });
  }

  /**
   * Copies the named tables' rows again (all captured tables when none is named) and returns once
   * they are applied. Drains in this process unless another instance holds the stream.
   */
  async backfill(specs: TableSpec[], onProgress?: (p: BackfillProgress) => void): Promise<void> {
    const c = this.#config;
    await assertSchemaCurrent(this.pool, c.schema);
    const mode = (await readCaptureState(this.pool, c.schema, c.stream)).mode;
    if (mode !== 'trigger' && mode !== 'pgoutput') {
      throw new TableError(`the stream is switching capture modes (${mode}); finish the switch (\`pg2crate switch-capture\`), then run \`pg2crate backfill\``);
    }
    if (mode !== c.capture) throw new TableError(`the stream is in ${mode} mode; run \`pg2crate backfill\` with PG2CRATE_CAPTURE=${mode}`);
    const tables = await listTables(this.pool, c.schema);
    const chosen = specs.length === 0 ? tables : specs.map((s) => {
      const t = tables.find((x) => x.sourceSchema === s.schema && x.sourceTable === s.table);
      if (!t) throw new TableError(`${s.schema}.${s.table} is not captured; run \`pg2crate tables add ${s.schema}.${s.table}\` first`);
      return t;
    });
    for (const t of chosen) await scheduleBackfill(this.pool, c.schema, t.id, true);
    // Copy and drain here if this instance gets the stream; otherwise the instance holding it does
    // both, and this one reports progress from the database until the copy reached the target.
    let ended = false;
    const running = this.run({ listen: false, schedules: false }).finally(() => { ended = true; });
    running.catch(() => {});
    const ids = chosen.map((t) => t.id);
    // pgoutput mode: backfillState's `applied` reads the outbox checkpoint, which trails the slot
    // there; once every copy is done, a mark emitted after that is applied when the slot passed it.
    let mark: string | null = null;
    try {
      for (;;) {
        const state = await backfillState(this.pool, c.schema, c.stream, ids);
        if (mode === 'pgoutput' && state.every((p) => p.done)) {
          mark ??= await emitWaitMark(this.pool);
          const applied = await slotPassed(this.pool, c.slotName, mark);
          for (const p of state) p.applied = applied;
        }
        for (const p of state) onProgress?.(p);
        if (state.every((p) => p.applied) || ended) break;
        await sleep(500);
      }
    } finally {
      await this.stop();
    }
    await running;
  }

  /** Stops in reverse order of start. Safe to call twice. */
  async stop(): Promise<void> {
    this.#stopped?.();
    this.#stopped = null;
    const scheduler = this.#scheduler;
    this.#scheduler = null;
    await scheduler?.stop();
    const partitions = this.#partitions;
    this.#partitions = null;
    await partitions?.stop();
    const listener = this.#listener;
    this.#listener = null;
    await listener?.stop();
    const backfiller = this.#backfiller;
    this.#backfiller = null;
    await backfiller?.stop();
    const copyLoader = this.#copyLoader;
    this.#copyLoader = null;
    await copyLoader?.close();
    const drainer = this.#drainer;
    await drainer?.stop();
    const sink = this.#sink;
    this.#sink = null;
    await sink?.stop();
    const http = this.#http;
    this.#http = null;
    await http?.stop();
  }

  /** Releases the source pool; call once the runner is done. */
  async close(): Promise<void> {
    await this.stop();
    const pool = this.#pool;
    this.#pool = null;
    await pool?.end().catch(() => {});
  }
}
