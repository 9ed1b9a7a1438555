// Metrics and health over HTTP: /metrics (Prometheus text, prom-client), /healthz (the process
// runs), /readyz (source and target answer, and the lag is under the threshold). Gauges that need
// the database are read when scraped, never on the replication path.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry } from 'prom-client';
import { describe } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { DrainerStats } from '../drain/drainer.js';
import type { StreamStatus } from './status.js';

export interface HealthProbe {
  drainer: () => DrainerStats | null;
  status: () => Promise<StreamStatus>;
  /** throws when the target does not answer */
  pingTarget: () => Promise<void>;
  readyMaxLagSeconds: number;
}

export class MetricsServer {
  readonly registry = new Registry();
  readonly #probe: HealthProbe;
  readonly #log: Logger;
  #server: Server | null = null;

  constructor(probe: HealthProbe, logger: Logger) {
    this.#probe = probe;
    this.#log = logger.child({ component: 'http' });
    const r = this.registry;
    const drainer = () => probe.drainer();
    const status = () => probe.status();
    const counterFrom = (name: string, help: string, value: (s: DrainerStats) => number) =>
      new Counter({ name, help, registers: [r], collect() { const s = drainer(); if (s) { this.reset(); this.inc(value(s)); } } });
    counterFrom('pg2crate_events_applied_total', 'Outbox events applied to the target by this process', (s) => s.appliedEvents);
    counterFrom('pg2crate_rows_applied_total', 'Rows written (upserted or deleted) in the target after per-key coalescing', (s) => s.appliedRows);
    counterFrom('pg2crate_pages_total', 'Pages applied', (s) => s.pages);
    counterFrom('pg2crate_dead_letters_parked_total', 'Changes parked as dead letters by this process', (s) => s.deadLetters);
    new Counter({
      name: 'pg2crate_errors_total', help: 'Errors by kind (retryable, data, schema, fatal)', labelNames: ['kind'], registers: [r],
      collect() { const s = drainer(); if (s) { this.reset(); for (const [k, v] of Object.entries(s.errors)) this.inc({ kind: k }, v); } },
    });
    new Gauge({
      name: 'pg2crate_drainer_state', help: '1 for the state the drainer is in', labelNames: ['state'], registers: [r],
      collect() { const s = drainer(); this.reset(); if (s) this.set({ state: s.state }, 1); },
    });
    // One status read per scrape feeds the database gauges.
    let pending: Promise<StreamStatus | null> | null = null;
    const once = () => (pending ??= status().catch(() => null).finally(() => setTimeout(() => { pending = null; }, 0)));
    const dbGauge = (name: string, help: string, value: (s: StreamStatus) => number) =>
      new Gauge({ name, help, registers: [r], async collect() { const s = await once(); if (s) this.set(value(s)); } });
    dbGauge('pg2crate_backlog_events', 'Captured events not yet applied', (s) => s.backlogEvents);
    dbGauge('pg2crate_stranded_events', 'Unapplied events below the lower id bound of the windows, which no window reads (always 0 unless a bound is wrong)', (s) => s.strandedEvents);
    dbGauge('pg2crate_window_bound_violations', 'Times the window bound guard kept a lower id bound that would have skipped events', (s) => s.boundViolations);
    dbGauge('pg2crate_lag_seconds', 'Age of the oldest change that may not be applied yet', (s) => s.lagSeconds);
    dbGauge('pg2crate_dead_letters', 'Dead letters waiting in pg2crate.dead_letters', (s) => s.deadLetters);
    dbGauge('pg2crate_outbox_bytes', 'Size of the outbox partitions', (s) => s.outboxBytes);
    dbGauge('pg2crate_slot_retained_wal_bytes', 'WAL the replication slot holds back (pgoutput mode): current WAL position minus its confirmed position', (s) => s.slot?.retainedBytes ?? 0);
    dbGauge('pg2crate_slot_over_warn', '1 when the slot retains more WAL than PG2CRATE_SLOT_WARN_MB', (s) => (s.slot?.warn ? 1 : 0));
  }

  async start(port: number): Promise<number> {
    const server = createServer((req, res) => {
      this.#handle(req.url ?? '/').then(
        ({ code, type, body }) => { res.writeHead(code, { 'content-type': type }); res.end(body); },
        (err) => { res.writeHead(500, { 'content-type': 'text/plain' }); res.end(describe(err)); },
      );
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, () => resolve());
    });
    const bound = (server.address() as { port: number }).port;
    this.#log.info({ port: bound }, 'serving /metrics, /healthz, /readyz');
    return bound;
  }

  async #handle(url: string): Promise<{ code: number; type: string; body: string }> {
    const path = url.split('?')[0];
    if (path === '/metrics') return { code: 200, type: this.registry.contentType, body: await this.registry.metrics() };
    if (path === '/healthz') {
      const s = this.#probe.drainer();
      const alive = s !== null && s.state !== 'stopped';
      return { code: alive ? 200 : 503, type: 'application/json', body: JSON.stringify({ alive, state: s?.state ?? 'stopped' }) };
    }
    if (path === '/readyz') {
      const problems: string[] = [];
      let lag: number | null = null;
      try {
        lag = (await this.#probe.status()).lagSeconds;
        if (lag > this.#probe.readyMaxLagSeconds) problems.push(`lag ${Math.round(lag)} s is over ${this.#probe.readyMaxLagSeconds} s`);
      } catch (err) {
        problems.push(`source: ${describe(err)}`);
      }
      try {
        await this.#probe.pingTarget();
      } catch (err) {
        problems.push(`target: ${describe(err)}`);
      }
      return { code: problems.length ? 503 : 200, type: 'application/json', body: JSON.stringify({ ready: problems.length === 0, lagSeconds: lag, problems }) };
    }
    return { code: 404, type: 'text/plain', body: 'not found: try /metrics, /healthz or /readyz\n' };
  }

  async stop(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    if (s) await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
  }
}
