// What the demo's live line shows, read the way an operator would: lag and backlog from the stream's
// status (ops/status.ts, what `pg2crate status` prints), events/s from the drainer's counters, and
// the rows of each target table through verify's target reader (which knows both targets; a
// CrateDB table is refreshed first, so the count includes what was just written).
import type pg from 'pg';
import type { Config } from '../core/config.js';
import type { TableInfo } from '../core/change.js';
import type { Logger } from '../core/logger.js';
import { streamLockText } from '../capture/names.js';
import { listTables, RegistryCatalog } from '../capture/registry.js';
import { readStatus } from '../ops/status.js';
import { createVerifyTarget } from '../verify/run-verify.js';
import type { VerifyTarget } from '../verify/verify-target.js';
import type { LiveSample } from './live-line.js';

export interface SamplerSources {
  config: Config;
  /** the source pool */
  pool: pg.Pool;
  logger: Logger;
  /** events applied so far by this process's drainer */
  appliedEvents: () => number;
  /** transactions the writer committed so far */
  transactions: () => number;
}

export class Sampler {
  readonly #s: SamplerSources;
  readonly #target: VerifyTarget;
  readonly #started = Date.now();
  #tables: TableInfo[] | null = null;
  #last = { at: Date.now(), events: 0 };

  constructor(s: SamplerSources) {
    this.#s = s;
    this.#target = createVerifyTarget(s.config, s.logger);
  }

  async sample(): Promise<LiveSample> {
    const { config: c, pool } = this.#s;
    if (!this.#tables) {
      const catalog = new RegistryCatalog(pool, c.schema);
      this.#tables = await Promise.all((await listTables(pool, c.schema)).map((t) => catalog.describe(t.id)));
    }
    const status = await readStatus(pool, c.schema, c.stream, streamLockText(c.schema, c.stream));
    const rows: LiveSample['rows'][number][] = [];
    for (const t of this.#tables) {
      // inspect each time: the target table appears with the initial load
      const { exists } = await this.#target.inspect(t);
      if (exists) await this.#target.refresh(t);
      rows.push({ table: t.targetTable, rows: exists ? (await this.#target.count(t)).rows : 0 });
    }
    const now = Date.now();
    const events = this.#s.appliedEvents();
    const seconds = (now - this.#last.at) / 1000;
    const eventsPerSecond = seconds > 0 ? Math.max(0, events - this.#last.events) / seconds : 0;
    this.#last = { at: now, events };
    return {
      elapsedSeconds: (now - this.#started) / 1000, eventsPerSecond, lagSeconds: status.lagSeconds, backlogEvents: status.backlogEvents,
      rows, transactions: this.#s.transactions(),
    };
  }

  async close(): Promise<void> {
    await this.#target.close();
  }
}
