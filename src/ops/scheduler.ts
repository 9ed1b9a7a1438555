// In-process schedules (node-cron): catch-up, retention, verification. A run never starts while the
// previous run of the same job is still going: it is skipped and counted, so a slow job cannot pile
// up. stop() stops the timers and waits for runs in flight.
import cron, { type ScheduledTask } from 'node-cron';
import { describe } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

export type JobName = 'catch-up' | 'retention' | 'verify';

export interface JobStats {
  runs: number;
  skipped: number;
  failures: number;
  lastDurationMs: number | null;
}

export class Scheduler {
  readonly #log: Logger;
  readonly #timezone: string | undefined;
  readonly #tasks: ScheduledTask[] = [];
  readonly #running = new Map<JobName, Promise<void>>();
  readonly stats = new Map<JobName, JobStats>();

  constructor(timezone: string | undefined, logger: Logger) {
    this.#timezone = timezone;
    this.#log = logger.child({ component: 'scheduler' });
  }

  add(name: JobName, expression: string, job: () => Promise<void>): void {
    this.stats.set(name, { runs: 0, skipped: 0, failures: 0, lastDurationMs: null });
    // The callback returns nothing, so node-cron does not track runs itself: the overlap rule is ours.
    const task = cron.schedule(expression, () => { void this.runNow(name, job); }, { timezone: this.#timezone, name });
    this.#tasks.push(task);
    this.#log.info({ job: name, cron: expression, timezone: this.#timezone ?? 'local' }, 'scheduled');
  }

  /** Runs a job unless its previous run is still going. */
  async runNow(name: JobName, job: () => Promise<void>): Promise<void> {
    const st = this.stats.get(name)!;
    if (this.#running.has(name)) {
      st.skipped++;
      this.#log.info({ job: name }, 'skipped: the previous run is still going');
      return;
    }
    const started = Date.now();
    const run = job().then(
      () => { st.runs++; },
      (err) => {
        st.failures++;
        this.#log.error({ job: name, err }, `scheduled ${name} failed: ${describe(err)}`);
      },
    ).finally(() => {
      st.lastDurationMs = Date.now() - started;
      this.#running.delete(name);
    });
    this.#running.set(name, run);
    await run;
  }

  async stop(): Promise<void> {
    for (const t of this.#tasks.splice(0)) await t.destroy();
    await Promise.all([...this.#running.values()]);
  }
}
