// Where a drain into CrateDB spends its time: the CPU of CrateDB's JVM (read from /proc, so the
// server must run on this machine), and how long this process had no request to CrateDB in flight
// (every HTTP request of this process to the CrateDB endpoints, seen through Node's http
// diagnostics channel, so the sink is measured without a hook in its code).
import diagnostics_channel from 'node:diagnostics_channel';
import type { ClientRequest } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { processCpuSeconds } from './server-cpu.js';

/** Pids of the CrateDB JVMs on this machine (command lines that run io.crate.bootstrap.CrateDB). */
export function crateJvmPids(): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('io.crate.bootstrap.CrateDB')) out.push(Number(entry));
    } catch { /* gone meanwhile */ }
  }
  return out;
}

/** CPU seconds the CrateDB JVMs have used so far (0 without one on this machine). */
export function crateCpuSeconds(pids: readonly number[]): number {
  return pids.reduce((n, pid) => n + processCpuSeconds(pid), 0);
}

/**
 * Counts this process's requests to `hosts` (host:port as in the Host header) while started: the
 * time with none in flight and the time-weighted mean of how many were.
 */
export class InFlightMeter {
  readonly #hosts: Set<string>;
  #inFlight = 0;
  #since = 0;
  #idleMs = 0;
  #busyArea = 0;
  #started = 0;
  requests = 0;
  readonly #onStart = (message: unknown) => {
    const req = (message as { request: ClientRequest }).request;
    if (!this.#hosts.has(String(req.getHeader('host')))) return;
    this.requests++;
    this.#step(1);
    req.once('close', () => this.#step(-1));
  };

  constructor(urls: readonly string[]) {
    this.#hosts = new Set(urls.map((u) => new URL(u).host));
  }

  #step(d: number): void {
    const now = performance.now();
    if (this.#inFlight === 0) this.#idleMs += now - this.#since;
    this.#busyArea += this.#inFlight * (now - this.#since);
    this.#since = now;
    this.#inFlight += d;
  }

  start(): void {
    this.#started = this.#since = performance.now();
    diagnostics_channel.subscribe('http.client.request.start', this.#onStart);
  }

  /** Seconds with nothing in flight, and the mean number in flight, since start(). */
  stop(): { idleSeconds: number; meanInFlight: number } {
    this.#step(0);
    diagnostics_channel.unsubscribe('http.client.request.start', this.#onStart);
    const total = performance.now() - this.#started;
    return { idleSeconds: this.#idleMs / 1000, meanInFlight: total > 0 ? this.#busyArea / total : 0 };
  }
}
