// What the soak counts while it runs, and its timeline: every fault and operation is printed with
// the time since the start and kept in the run folder's soak.log.
import { appendFileSync } from 'node:fs';

export class Tally {
  /** transactions the source confirmed (COMMIT answered, or an autocommit statement) */
  committed = 0;
  /** transactions the workload rolled back on purpose */
  rolledBack = 0;
  /** deadlocks, key collisions, lock timeouts: rolled back and skipped */
  conflicts = 0;
  /** transactions lost to a connection that went away (the source restarted) */
  connectionErrors = 0;
  /** errors the workload did not expect; the first few are kept */
  unexpected = 0;
  readonly unexpectedSamples: string[] = [];
  readonly byKind = new Map<string, number>();
  readonly faults = new Map<string, number>();
  readonly operations = new Map<string, number>();

  count(map: Map<string, number>, key: string, n = 1): void {
    map.set(key, (map.get(key) ?? 0) + n);
  }

  unexpectedError(what: string, err: unknown): void {
    this.unexpected++;
    if (this.unexpectedSamples.length < 20) {
      const e = err as { code?: string; message?: string };
      this.unexpectedSamples.push(`${what}: ${e?.code ? `[${e.code}] ` : ''}${e?.message ?? String(err)}`);
    }
  }
}

export function formatCounts(map: Map<string, number>): string {
  if (map.size === 0) return 'none';
  return [...map].sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} ${v}`).join(', ');
}

export class Timeline {
  readonly #start = Date.now();
  #file: string | null = null;

  /** from now on, lines are also appended to this file */
  writeTo(file: string): void {
    this.#file = file;
  }

  elapsedMs(): number {
    return Date.now() - this.#start;
  }

  clock(): string {
    const s = Math.floor(this.elapsedMs() / 1000);
    return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
  }

  note(line: string): void {
    const text = `[soak ${this.clock()}] ${line}\n`;
    process.stdout.write(text);
    if (this.#file) appendFileSync(this.#file, text);
  }
}
