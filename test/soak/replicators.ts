// Two replicator processes (test/helpers/child-replicator.ts): one holds the stream, the other waits
// as its standby. A killed one is replaced, so there is always a standby; one that exits by itself
// is counted, its log tail printed, and replaced too.
//
// Which one is active is read from their logs (the last "holding the stream" / "took over the
// stream" line of a live process): good enough to aim a kill, never used to judge the outcome.
import { readFileSync } from 'node:fs';
import { spawnReplicator, type ChildReplicator } from '../helpers/child-replicator.js';
import type { Timeline } from './tally.js';

interface Member {
  name: string;
  proc: ChildReplicator;
  /** set when the soak stops it on purpose */
  stopping: boolean;
}

export class ReplicatorPair {
  #env: Record<string, string>;
  readonly #timeline: Timeline;
  readonly #members: Member[] = [];
  readonly #all: ChildReplicator[] = [];
  /** replicators that exited without being told to */
  readonly crashed: { name: string; pid: number; code: number | string; reason: string; logFile: string; at: number }[] = [];
  #counter = 0;
  #closed = false;
  /** while held (a capture switch), nothing is started or killed */
  #held = false;

  readonly #onBuildChanged: (reason: string) => void;

  /** `onBuildChanged`: a replicator refused the schema as older than its build (the tree changed under the soak) */
  constructor(env: Record<string, string>, timeline: Timeline, onBuildChanged: (reason: string) => void = () => {}) {
    this.#env = env;
    this.#timeline = timeline;
    this.#onBuildChanged = onBuildChanged;
  }

  /** every process started so far (their log files are evidence) */
  get processes(): readonly ChildReplicator[] {
    return this.#all;
  }

  get env(): Readonly<Record<string, string>> {
    return this.#env;
  }

  /** the environment for replicators started from now on (e.g. another capture mode) */
  setEnv(env: Record<string, string>): void {
    this.#env = env;
  }

  /** starts replicators until two run */
  fill(): void {
    while (!this.#closed && !this.#held && this.#members.length < 2) this.#start();
  }

  /** stops both gracefully and starts none until release() (the capture switch runs meanwhile) */
  async hold(): Promise<void> {
    this.#held = true;
    await this.stopAll();
  }

  release(): void {
    this.#held = false;
    this.fill();
  }

  #start(): Member {
    const name = `soak-r${++this.#counter}`;
    const proc = spawnReplicator(this.#env, ['start'], name);
    const m: Member = { name, proc, stopping: false };
    this.#members.push(m);
    this.#all.push(proc);
    proc.exited.then((code) => {
      const i = this.#members.indexOf(m);
      if (i >= 0) this.#members.splice(i, 1);
      if (m.stopping || this.#closed) return;
      // Not killed by the soak: the replicator gave up by itself. That is worth a line and a count.
      const reason = exitReason(proc.log());
      this.crashed.push({ name, pid: proc.pid, code, reason, logFile: proc.logFile, at: Date.now() });
      this.#timeline.note(`replicator ${name} (pid ${proc.pid}) exited by itself with ${code}: ${reason}`);
      if (/not migrated to this build/.test(reason)) this.#onBuildChanged(reason);
      // One that exits again at once (the target still away) is replaced after a growing pause.
      const recent = this.crashed.filter((c) => Date.now() - c.at < 60_000).length;
      setTimeout(() => this.fill(), Math.min(15_000, 500 * 2 ** recent)).unref();
    });
    return m;
  }

  /** the member that most recently said it holds the stream, if any */
  active(): Member | null {
    let best: { m: Member; at: number } | null = null;
    for (const m of this.#members) {
      const at = lastHoldingTime(m.proc.logFile);
      if (at !== null && (!best || at > best.at)) best = { m, at };
    }
    return best?.m ?? null;
  }

  describe(): string {
    const active = this.active();
    return this.#members.map((m) => `${m.name}${m === active ? '*' : ''}`).join(' ') || 'none';
  }

  /** SIGKILL: the active one (or, without one known, any) */
  async killActive(): Promise<string | null> {
    if (this.#held) return null;
    const m = this.active() ?? this.#members[0];
    if (!m) return null;
    m.stopping = true;
    await m.proc.killHard();
    return `${m.name} (pid ${m.proc.pid})`;
  }

  /** a graceful stop of every running replicator (SIGTERM; SIGKILL after `timeoutMs`) */
  async stopAll(timeoutMs = 60_000): Promise<void> {
    const ms = [...this.#members];
    for (const m of ms) {
      m.stopping = true;
      m.proc.kill('SIGTERM');
    }
    await Promise.all(ms.map(async (m) => {
      const t = setTimeout(() => m.proc.kill('SIGKILL'), timeoutMs);
      await m.proc.exited;
      clearTimeout(t);
    }));
  }

  /** stops everything for good; later exits are expected */
  async close(): Promise<void> {
    this.#closed = true;
    await this.stopAll(30_000);
  }
}

/** The time of the last "holding the stream" or "took over the stream" line of a replicator's log. */
function lastHoldingTime(file: string): number | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const i = Math.max(text.lastIndexOf('"msg":"holding the stream"'), text.lastIndexOf('"msg":"took over the stream"'));
  if (i < 0) return null;
  const start = text.lastIndexOf('\n', i) + 1;
  const m = /"time":"([^"]+)"/.exec(text.slice(start, i));
  return m ? Date.parse(m[1]) : 0;
}

/** The line that says why a process ended: an uncaught error's message, or the CLI's last word. */
function exitReason(log: string): string {
  const lines = log.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'));
  const uncaught = lines.findIndex((l) => /Unhandled 'error' event|triggerUncaughtException/.test(l));
  // "Error: …", "error: …", "Error [TransformError]: …" (a source file caught mid-edit), "pg2crate: …"
  const message = lines.find((l, i) => i > uncaught && /^\s*(\w*Error( \[\w+\])?|error|pg2crate):/.test(l));
  const prefix = uncaught >= 0 ? 'uncaught error event: ' : '';
  return `${prefix}${(message ?? lines[lines.length - 1] ?? '(no output)').trim()}`;
}
