// A direct load's chunk held back inside the sink until the test releases it, and a writer that keeps
// changing the table meanwhile: the pieces of the late-chunk scenario (an instance loses the stream
// while its chunk is on its way), shared by the Postgres and CrateDB suites.
import assert from 'node:assert/strict';
import pg from 'pg';
import type { ChildReplicator } from './child-replicator.js';
import { logLines, waitCaughtUp, waitFor } from './replication.js';
import type { ApplyResult, Fence, Sink, SinkTableBatch } from '../../src/sink/sink.js';

/** Holds the `nth` chunk of a direct load back until release(); hides the target's fence unless `fenced`. */
export class LateChunkSink implements Sink {
  readonly name: string;
  readonly raiseFence?: (fence: Fence) => Promise<void>;
  readonly holdsRows?: Sink['holdsRows'];
  readonly copyRowSql?: Sink['copyRowSql'];
  readonly #inner: Sink;
  readonly #nth: number;
  #chunks = 0;
  #release!: () => void;
  readonly #gate = new Promise<void>((r) => { this.#release = r; });
  #held!: () => void;
  /** resolves once the held chunk waits */
  readonly held = new Promise<void>((r) => { this.#held = r; });
  /** what became of the held chunk's write */
  settled: Promise<'applied' | 'refused'> | null = null;
  /** the held chunk, as the copier handed it over */
  heldBatches: SinkTableBatch[] | null = null;

  constructor(inner: Sink, nth: number, fenced: boolean) {
    this.#inner = inner;
    this.#nth = nth;
    this.name = inner.name;
    if (fenced && inner.raiseFence) this.raiseFence = (fence) => inner.raiseFence!(fence);
    // The load asks the sink for these; hiding them would send it down another path than the real one.
    if (inner.holdsRows) this.holdsRows = (t) => inner.holdsRows!(t);
    if (inner.copyRowSql) this.copyRowSql = (t, alias) => inner.copyRowSql!(t, alias);
  }

  start(): Promise<void> { return this.#inner.start(); }
  prepare(...args: Parameters<Sink['prepare']>): Promise<void> { return this.#inner.prepare(...args); }
  stop(): Promise<void> { return this.#inner.stop(); }
  release(): void { this.#release(); }

  apply(batches: SinkTableBatch[], fence?: Fence): Promise<ApplyResult> {
    const chunk = batches.length === 1 && batches[0].upserts.length > 0 && batches[0].upserts.every((c) => c.op === 'B');
    if (!chunk || ++this.#chunks !== this.#nth) return this.#inner.apply(batches, fence);
    this.heldBatches = batches;
    this.#held();
    const write = this.#gate.then(() => this.#inner.apply(batches, fence));
    this.settled = write.then(() => 'applied' as const, () => 'refused' as const);
    return write;
  }
}

/** Updates (90%), deletes and re-inserts random rows of `big` (id 1–20,000) until `stop()`. */
export async function bigTableWriter(url: string, stop: () => boolean): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    while (!stop()) {
      const k = 1 + Math.floor(Math.random() * 20_000);
      const op = Math.random();
      if (op < 0.9) await c.query(`update big set v = v + 1, note = 'changed' where id = $1`, [k]);
      else if (op < 0.95) await c.query(`delete from big where id = $1`, [k]);
      else await c.query(`insert into big values ($1, 0, 'back') on conflict (id) do update set note = 'back'`, [k]);
    }
  } finally {
    await c.end();
  }
}

/**
 * Lets the held chunk's write go on once the standby applied everything, and waits until the old
 * copier dealt with what the target did with it (`expect`: a fence refuses it, else it lands and
 * its rows are sent again) and that is applied too; then stops the standby.
 */
export async function releaseLateChunk(late: LateChunkSink, expect: 'applied' | 'refused', src: pg.Pool, standby: ChildReplicator): Promise<void> {
  late.release();
  assert.equal(await late.settled, expect);
  const after = expect === 'refused' ? 'this copier steps back' : 'a chunk written after another instance took over was sent again';
  await waitFor(`"${after}" in the old leader's log`, () => logLines.some((l) => l.includes(after)), 30_000);
  await waitCaughtUp(src, 'pg2crate', 60_000);
  standby.kill('SIGTERM');
  assert.equal(await standby.exited, 0);
}
