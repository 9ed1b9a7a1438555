// The demo's live line, for a person watching: events applied per second, lag, backlog and the
// rows of each target table. On a terminal one line is redrawn in place; elsewhere (a pipe, a log
// file, CI) a plain line is written every few seconds, so the output stays readable as a file.

export interface LiveSample {
  /** seconds since the replicator started */
  elapsedSeconds: number;
  eventsPerSecond: number;
  lagSeconds: number;
  backlogEvents: number;
  /** target table name → rows in the target */
  rows: readonly { table: string; rows: number }[];
  /** source transactions written so far */
  transactions: number;
}

const whole = (n: number) => Math.round(n).toLocaleString('en-US');

/**
 * One line of text for a sample (pure). With a width (a terminal's), the first form that fits: the
 * full one, then one without the clock and the writer's count; else that one cut with an ellipsis.
 */
export function formatLiveLine(s: LiveSample, width = Infinity): string {
  const t = Math.floor(s.elapsedSeconds);
  const clock = `${String(Math.floor(t / 60)).padStart(2, '0')}:${String(t % 60).padStart(2, '0')}`;
  const rows = s.rows.map((r) => `${r.table} ${whole(r.rows)}`).join(', ');
  const full = `${clock}  ${whole(s.transactions)} txns written | ${whole(s.eventsPerSecond)} events/s | lag ${s.lagSeconds.toFixed(1)} s | backlog ${whole(s.backlogEvents)} | target rows: ${rows}`;
  if (full.length <= width) return full;
  const compact = `${whole(s.eventsPerSecond)} ev/s lag ${s.lagSeconds.toFixed(1)}s backlog ${whole(s.backlogEvents)} | ${s.rows.map((r) => `${r.table} ${whole(r.rows)}`).join(' ')}`;
  return compact.length <= width ? compact : `${compact.slice(0, Math.max(0, width - 1))}…`;
}

export interface LiveLineOptions {
  /** where to write (stdout) */
  out: { write(text: string): unknown; isTTY?: boolean; columns?: number };
  /** how often to sample, ms */
  everyMs: number;
  /** without a terminal: write a line every this many ms */
  plainEveryMs: number;
  sample: () => Promise<LiveSample>;
}

/**
 * Samples on a timer and shows the result. States: stopped → running → stopped; a sample that
 * fails (a query during shutdown) is skipped. finish() ends the redrawn line with a newline.
 */
export class LiveLine {
  readonly #o: LiveLineOptions;
  #timer: NodeJS.Timeout | null = null;
  #busy = false;
  #lastPlain = 0;
  #drawn = false;

  constructor(o: LiveLineOptions) {
    this.#o = o;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.tick(), this.#o.everyMs);
  }

  /** One sample, shown now; `force`: also without a terminal (the last line before finish()). */
  async tick(force = false): Promise<void> {
    if (this.#busy && !force) return;
    this.#busy = true;
    try {
      const s = await this.#o.sample();
      this.show(s, force);
    } catch {
      // a sample taken while something stops; the next one will do
    } finally {
      this.#busy = false;
    }
  }

  /** Shows a sample: redrawn in place on a terminal (fitted to its width), else printed at most every plainEveryMs. */
  show(sample: LiveSample, force = false): void {
    const out = this.#o.out;
    if (out.isTTY) {
      out.write(`\r\x1b[2K${formatLiveLine(sample, (out.columns ?? 120) - 1)}`);
      this.#drawn = true;
    } else if (force || Date.now() - this.#lastPlain >= this.#o.plainEveryMs) {
      out.write(`${formatLiveLine(sample)}\n`);
      this.#lastPlain = Date.now();
    }
  }

  /** Stops sampling and leaves the cursor on a fresh line. */
  finish(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#drawn) this.#o.out.write('\n');
    this.#drawn = false;
  }
}
