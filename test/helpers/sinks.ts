// Sink wrappers for the Runner's `wrapSink` seam: count and record what is applied, fail the Nth
// page, slow pages down. They delegate to the real sink, so the target is really written.
import type { TableInfo } from '../../src/core/change.js';
import type { ApplyResult, CopyRowSql, Fence, Sink, SinkTableBatch } from '../../src/sink/sink.js';

export interface ApplyCall {
  /** 1-based number of the apply call in this sink's life */
  n: number;
  /** outbox ids of the changes in the call (after coalescing), sorted */
  ids: number[];
}

export interface Hooks {
  /** runs before the real apply; may wait or throw */
  before?(call: ApplyCall, batches: SinkTableBatch[]): Promise<void> | void;
  /** runs after the real apply confirmed; may throw (the page is then applied but not confirmed) */
  after?(call: ApplyCall, batches: SinkTableBatch[]): Promise<void> | void;
  /** runs when the drainer stages a page ahead (Sink.stage), before the real sink's stage; may throw */
  stage?(batches: SinkTableBatch[]): void;
  /**
   * offer Sink.applier even where the real sink does not (its pages then go to its apply, which
   * must take two at once): the drainer's overlapping of pages, tested on any target
   */
  overlap?: boolean;
}

export class RecordingSink implements Sink {
  readonly calls: ApplyCall[] = [];
  readonly #inner: Sink;
  readonly #hooks: Hooks;

  /** the inner sink's fence, where it has one (a wrapper must not claim a fence its target lacks) */
  readonly raiseFence?: (fence: Fence) => Promise<void>;
  /** likewise the inner sink's look into a target table, which lets a load keep rows it finds */
  readonly holdsRows?: (table: TableInfo) => Promise<boolean>;
  /** likewise the SQL with which a load has the source build the inner sink's parameter rows */
  readonly copyRowSql?: (table: TableInfo, alias: string) => Promise<CopyRowSql | null>;
  /** the inner sink's stage, or the hook's where given */
  readonly stage?: (batches: SinkTableBatch[]) => void;
  /** the inner sink's applier (or, with the overlap hook, its apply), recorded like apply */
  readonly applier?: () => (batches: SinkTableBatch[]) => Promise<ApplyResult>;

  constructor(inner: Sink, hooks: Hooks = {}) {
    this.#inner = inner;
    this.#hooks = hooks;
    if (inner.raiseFence) this.raiseFence = (fence) => inner.raiseFence!(fence);
    if (inner.holdsRows) this.holdsRows = (table) => inner.holdsRows!(table);
    if (inner.copyRowSql) this.copyRowSql = (table, alias) => inner.copyRowSql!(table, alias);
    if (inner.applier || hooks.overlap) {
      this.applier = () => {
        const apply = inner.applier?.() ?? ((batches: SinkTableBatch[]) => inner.apply(batches));
        return (batches) => this.#record(batches, () => apply(batches));
      };
    }
    if (inner.stage || hooks.stage) {
      this.stage = (batches) => {
        hooks.stage?.(batches);
        inner.stage?.(batches);
      };
    }
  }

  get name(): string {
    return this.#inner.name;
  }

  start(): Promise<void> {
    return this.#inner.start();
  }

  prepare(...args: Parameters<Sink['prepare']>): Promise<void> {
    return this.#inner.prepare(...args);
  }

  apply(batches: SinkTableBatch[], fence?: Fence): Promise<ApplyResult> {
    return this.#record(batches, () => this.#inner.apply(batches, fence));
  }

  async #record(batches: SinkTableBatch[], apply: () => Promise<ApplyResult>): Promise<ApplyResult> {
    const ids = batches.flatMap((b) => [...b.deletes, ...b.upserts].map((c) => c.id)).sort((a, b) => a - b);
    const call: ApplyCall = { n: this.calls.length + 1, ids };
    this.calls.push(call);
    await this.#hooks.before?.(call, batches);
    const result = await apply();
    await this.#hooks.after?.(call, batches);
    return result;
  }

  stop(): Promise<void> {
    return this.#inner.stop();
  }
}

/** A crash that the error table classifies as fatal (no code, not a network error). */
export class SimulatedCrash extends Error {
  override name = 'SimulatedCrash';
}

/** Wraps sinks and remembers the last one made, for tests that inspect its calls. */
export function recorder(hooks: Hooks = {}): { wrapSink: (s: Sink) => Sink; readonly sink: RecordingSink } {
  let last: RecordingSink | null = null;
  return {
    wrapSink: (s: Sink) => (last = new RecordingSink(s, hooks)),
    get sink(): RecordingSink {
      if (!last) throw new Error('no sink was made yet');
      return last;
    },
  };
}
