// The faults, one at a time at random moments, until told to stop. Each cycle runs every kind once in
// a random order, so a run of a few minutes has several of each:
//
//   kill            SIGKILL of the replicator that holds the stream; the standby takes over, and
//                   a new standby is started 1–5 s later
//   source-restart  the source cluster stopped (fast or immediate shutdown) and started again after
//                   0–5 s; every session (writers, replicators, CLI runs) loses its connection
//   target-away     the target gone for 10–30 s: every connection to it reset by the proxy, or (a
//                   Postgres target) its cluster stopped and started
import type { Cluster } from '../helpers/cluster.js';
import { pause, type Rng } from './random.js';
import type { ReplicatorPair } from './replicators.js';
import type { Tally, Timeline } from './tally.js';
import type { SoakTarget } from './target.js';

export interface FaultDeps {
  rng: Rng;
  tally: Tally;
  timeline: Timeline;
  replicators: ReplicatorPair;
  source: Cluster;
  target: SoakTarget;
  /** a short run gets shorter gaps and outages */
  short: boolean;
  signal: AbortSignal;
}

type Fault = 'kill' | 'source-restart' | 'target-away';

export async function runFaults(d: FaultDeps): Promise<void> {
  const { rng, signal, tally, timeline } = d;
  // the two modes of a fault alternate from cycle to cycle, starting with a random one
  let cycle = rng.int(0, 1);
  while (!signal.aborted) {
    for (const fault of rng.shuffle<Fault>(['kill', 'source-restart', 'target-away'])) {
      await pause(d.short ? rng.int(5_000, 14_000) : rng.int(8_000, 25_000), signal);
      if (signal.aborted) return;
      try {
        await inject(d, fault, cycle);
      } catch (err) {
        // A fault that could not be injected (or undone) is the harness's failure, not pg2crate's: on
        // the timeline, and the soak goes on (the final comparison still decides).
        tally.count(tally.faults, `${fault} failed`);
        timeline.note(`fault ${fault} failed: ${(err as Error).message.split('\n')[0]}`);
        if (fault === 'source-restart') await d.source.restart('fast', 0).catch(() => {}); // brings a source left down back
      }
    }
    cycle++;
  }
}

async function inject(d: FaultDeps, fault: Fault, cycle: number): Promise<void> {
  const { rng, tally, timeline } = d;
  switch (fault) {
    case 'kill': {
      const killed = await d.replicators.killActive();
      if (!killed) return;
      tally.count(tally.faults, 'replicator SIGKILL');
      timeline.note(`fault: SIGKILL ${killed}`);
      await pause(rng.int(1_000, 5_000), d.signal);
      d.replicators.fill();
      return;
    }
    case 'source-restart': {
      const mode = cycle % 2 === 0 ? 'fast' : 'immediate';
      const downMs = rng.int(0, 5_000);
      timeline.note(`fault: source restart (${mode}), down for ${(downMs / 1000).toFixed(1)} s`);
      await d.source.restart(mode, downMs);
      tally.count(tally.faults, `source restart ${mode}`);
      timeline.note('source is back');
      return;
    }
    case 'target-away': {
      const mode = d.target.kind === 'postgres' && cycle % 2 === 1 ? 'stop' : 'proxy';
      const ms = d.short ? rng.int(10_000, 20_000) : rng.int(10_000, 30_000);
      timeline.note(`fault: target away (${mode === 'stop' ? 'cluster stopped' : 'proxy resets connections'}) for ${Math.round(ms / 1000)} s`);
      const what = await d.target.away(mode, ms, d.signal);
      tally.count(tally.faults, `target away (${mode})`);
      timeline.note(`target is back (${what})`);
      return;
    }
  }
}
