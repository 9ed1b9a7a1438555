// The composition root: builds the source, sink, drainer and listener from the configuration,
// starts them in order and stops them in reverse order. The commands (src/commands/) use it for
// the pool, and for draining in this process (catch-up, capture switch, backfill).
import pg from 'pg';
import type { Config, TableSpec } from './core/config.js';
import { backoffDelay, classify, StreamBusyError } from './core/errors.js';
import type { Logger } from './core/logger.js';
import { createPool } from './core/pg-pool.js';
import { assertSchemaCurrent } from './capture/migrate.js';
import { streamLockText, wakeupChannel } from './capture/names.js';
import { RegistryCatalog } from './capture/registry.js';
import { crateTargetName, CrateSink } from './sink/cratedb/cratedb-sink.js';
import { PostgresSink } from './sink/postgres/postgres-sink.js';
import { PgCopyLoader } from './sink/postgres/copy-load.js';
import type { Sink } from './sink/sink.js';
import { Listener } from './source/listener.js';
import { OutboxSource } from './source/outbox.js';
import { PgoutputSource } from './source/pgoutput/pgoutput-source.js';
import { toPgoutput, toTrigger, type SwitchOptions } from './source/pgoutput/switch.js';
import { Drainer } from './drain/drainer.js';
import { Backfiller } from './load/backfill.js';
import { MetricsServer } from './ops/metrics.js';
import { PartitionWatcher, watchPartitions } from './ops/partition-watch.js';
import { watchKeys } from './ops/key-watch.js';
import { runRetention, type RetentionResult } from './ops/retention.js';
import { Scheduler } from './ops/scheduler.js';
import { readStatus } from './ops/status.js';
import { verifyConfigured } from './verify/run-verify.js';

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
  /** the logger given, without a component: what the parts built here get (logger.ts says why) */
  readonly #base: Logger;
  /** the runner's own lines */
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
    this.#base = logger;
    this.#log = logger.child({ component: 'runner' });
  }

  get config(): Config {
    return this.#config;
  }

  /** the logger given (without a component): the commands' own lines, and what they pass down */
  get logger(): Logger {
    return this.#base;
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

  /** A sink for the configured target, not started yet (through the tests' wrapSink seam). */
  newSink(): Sink {
    const base = createSink(this.#config, this.#base);
    return this.#opts.wrapSink ? this.#opts.wrapSink(base) : base;
  }

  /**
   * Drains in this process until everything committed before the call is applied, or, with
   * switchTo, the mode it leaves up to the hand-over point (docs/pgoutput.md); stop() ends it.
   * Rejects with StreamBusyError when another instance holds the stream.
   */
  async drainOnce(sink: Sink, opts: { switchTo?: 'trigger' | 'pgoutput' } = {}): Promise<Drainer> {
    const drainer = this.#newDrainer(sink, { untilCaughtUp: true, waitForStream: false, switchTo: opts.switchTo });
    this.#drainer = drainer;
    try {
      await drainer.start();
    } finally {
      await drainer.stop();
    }
    return drainer;
  }

  /** Calls `fn` at the next stop(); returns a function that takes it back. */
  onStop(fn: () => void): () => void {
    this.#onStop.add(fn);
    return () => { this.#onStop.delete(fn); };
  }

  /**
   * Runs the replicator until stop() (or, with untilCaughtUp, until everything committed before
   * the call is applied). Rejects on a fatal error.
   */
  async run(opts: { untilCaughtUp?: boolean; listen?: boolean; waitForStream?: boolean; schedules?: boolean } = {}): Promise<void> {
    const c = this.#config;
    await assertSchemaCurrent(this.pool, c.schema);
    const sink = this.newSink();
    this.#sink = sink;
    await sink.start();
    const scheduled = opts.schedules !== false && !opts.untilCaughtUp;
    if (scheduled && c.httpPort !== undefined) await this.#startHttp(c.httpPort);
    if (scheduled) this.#startSchedules();
    if (scheduled && c.schedules.catchUp) {
      // Scheduled mode: no LISTEN connection and no standing drainer; catch-up runs on the schedule.
      this.#log.info({ target: sink.name, schema: c.schema, stream: c.stream, cron: c.schedules.catchUp }, 'replicator started in scheduled mode');
      await new Promise<void>((resolve) => { this.onStop(resolve); });
      await this.stop();
      return;
    }
    if (opts.untilCaughtUp) await this.#watchPartitionsOnce();
    else {
      // Before the drainer: a key column renamed while no replicator ran is followed first, so that
      // pgoutput mode's check of the replica identities at start finds the registry's key current.
      await watchKeys(this.pool, { schema: c.schema, logger: this.#log }).catch((err: unknown) => this.#log.warn({ err }, 'key watch failed; the partition watch tries again'));
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
      this.#listener = new Listener(sourceConnection(c), wakeupChannel(c.schema), () => drainer.wake(), this.#base);
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

  readonly #onStop = new Set<() => void>();
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
      ? { connection, schema: c.schema, stream: c.stream, slot: c.slotName, publication: c.publicationName, logger: this.#base, step: this.#opts.switchStep }
      : null;
    // A switch drains the mode it leaves.
    const pgoutput = opts.switchTo ? opts.switchTo === 'trigger' : c.capture === 'pgoutput';
    let drainer: Drainer | null = null;
    const source = pgoutput
      ? new PgoutputSource({
        connection, schema: c.schema, stream: c.stream, slot: c.slotName, publication: c.publicationName, standbyRetryMs: c.standbyRetryMs,
        pageSize: c.pageSize, slotWarnBytes: c.slotWarnBytes, logger: this.#base, onData: () => drainer?.wake(),
        catchUp: opts.untilCaughtUp && !switching, stopAt: switching ? toTrigger(switching) : undefined,
      })
      : new OutboxSource({
        connection, schema: c.schema, stream: c.stream, standbyRetryMs: c.standbyRetryMs, logger: this.#base, finalWindow: switching ? toPgoutput(switching) : undefined,
      });
    return drainer = new Drainer(source, sink, {
      pageSize: c.pageSize, pollIntervalMs: c.pollIntervalMs, deadLetterPolicy: c.deadLetterPolicy, rejectAttempts: c.rejectAttempts,
      stopTimeoutMs: c.stopTimeoutMs, untilCaughtUp: opts.untilCaughtUp, waitForStream: opts.waitForStream,
      // A catch-up reads ahead like a running replicator; a switch's drain stays one page at a time.
      readAhead: !switching,
    }, this.#base);
  }

  #startSchedules(): void {
    const c = this.#config;
    const scheduler = new Scheduler(c.schedules.timezone, this.#base);
    this.#scheduler = scheduler;
    if (c.schedules.catchUp) scheduler.add('catch-up', c.schedules.catchUp, () => this.#catchUpOnce());
    if (c.schedules.retention) scheduler.add('retention', c.schedules.retention, () => this.retention().then(() => {}));
    if (c.schedules.verify) {
      scheduler.add('verify', c.schedules.verify, async () => {
        const res = await verifyConfigured({ config: c, pool: this.pool, logger: this.#base, repair: false, json: false, out: () => {} });
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
    try {
      const drainer = await this.drainOnce(sink);
      this.#log.info({ events: drainer.stats.appliedEvents }, 'scheduled catch-up done');
    } catch (err) {
      if (err instanceof StreamBusyError) {
        this.#log.info('scheduled catch-up skipped: another instance holds the stream');
        return;
      }
      throw err;
    }
  }

  /** Truncates applied outbox generations and rotates the current one when it is large (the retention schedule). */
  async retention(): Promise<RetentionResult> {
    const c = this.#config;
    return runRetention(this.pool, { schema: c.schema, rotateBytes: c.retentionRotateBytes, lockTimeoutMs: 2000, logger: this.#base });
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
    }, this.#base);
    this.httpPort = await server.start(port);
    this.#http = server;
  }

  #failure: unknown = null;

  #newBackfiller(drainer: Drainer, sink: Sink): Backfiller {
    const c = this.#config;
    // A Postgres target takes plain tables' initial loads as binary COPY; a wrapped sink (tests
    // that inject faults) sees every row itself.
    if (c.target.kind === 'postgres' && c.capture === 'trigger' && c.initialLoad === 'direct' && !this.#opts.wrapSink) {
      this.#copyLoader ??= new PgCopyLoader(c.target.connectionString, this.#base);
    }
    return new Backfiller(this.pool, {
      schema: c.schema, stream: c.stream, chunkRows: c.backfillChunkRows, inflight: c.backfillInflight, pollMs: Math.min(c.pollIntervalMs, 200),
      logger: this.#base, isLeader: () => drainer.stats.state !== 'acquiring' && drainer.stats.state !== 'stopped',
      slot: c.capture === 'pgoutput' ? c.slotName : undefined,
      direct: c.capture === 'trigger' && c.initialLoad === 'direct'
        ? { sink, catalog: new RegistryCatalog(this.pool, c.schema), rejectAttempts: c.rejectAttempts, deadLetterPolicy: c.deadLetterPolicy, pgCopy: this.#copyLoader ?? undefined }
        : undefined,
    });
  }

  /** Stops in reverse order of start. Safe to call twice. */
  async stop(): Promise<void> {
    const onStop = [...this.#onStop];
    this.#onStop.clear();
    for (const fn of onStop) fn();
    // The drainer first: no page begins while the other parts stop (it finishes its pages below).
    this.#drainer?.halt();
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
