// The nodes of a CrateDB cluster that the client spreads its requests over (one node is a cluster
// of one).
//
// States of a node: unchecked → live (it answered GET / with "ok": true: it is in a cluster with a
// master and knows the tables) → set aside (it refused a connection, lost one before answering,
// did not answer in time, or answered GET / with "ok": false) → due (its back-off is over) →
// unchecked again. Back-off: 500 ms, doubling per failure in a row, at most 10 s. A live node that
// has not been used for a while is unchecked again.
//
// Why check before use: a restarted node opens its HTTP port seconds before it has joined the
// cluster, and meanwhile answers "schema unknown" and empty information_schema reads (CrateDB
// 6.4.3). The sink would take that for a dropped table. A node cannot restart in less than
// RECHECK_AFTER_MS without failing a request we sent it or staying unused that long, so a node in
// use is checked only after a failure.
//
// Requests go round-robin over the nodes that are not set aside. When every node is set aside,
// all are tried anyway, the one due soonest first: the caller (the drainer) has its own back-off,
// and waiting here as well would only delay a node that is back.

/** Back-off of a node after failures in a row. */
export const NODE_BACKOFF = { baseMs: 500, maxMs: 10_000 } as const;
/** A live node unused this long is checked again before its next request. */
export const RECHECK_AFTER_MS = 5_000;

export interface CrateNode {
  /** http(s)://host:port, without credentials or trailing slash */
  readonly base: string;
  /** index in the configured list */
  readonly index: number;
}

interface NodeState {
  node: CrateNode;
  /** set aside until this time (ms); 0: not set aside */
  asideUntil: number;
  /** failures in a row */
  failures: number;
  /** last answer seen (ms); 0: never, so unchecked */
  lastAnswer: number;
  /** the check in progress, shared by concurrent requests */
  checking: Promise<void> | null;
}

export class CrateNodes {
  readonly #nodes: NodeState[];
  readonly #now: () => number;
  #next = 0;

  constructor(bases: readonly string[], opts: { now?: () => number } = {}) {
    if (bases.length === 0) throw new TypeError('a CrateDB connection needs at least one node URL');
    this.#nodes = bases.map((base, index) => ({ node: { base, index }, asideUntil: 0, failures: 0, lastAnswer: 0, checking: null }));
    this.#now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.#nodes.length;
  }

  /**
   * The nodes to try for one request, in order: every node not set aside, starting at the next
   * round-robin position; when all are set aside, all of them, the one due soonest first.
   */
  candidates(): CrateNode[] {
    const now = this.#now();
    const start = this.#next;
    this.#next = (this.#next + 1) % this.#nodes.length;
    const order = [...this.#nodes.slice(start), ...this.#nodes.slice(0, start)];
    const usable = order.filter((s) => s.asideUntil <= now);
    return (usable.length > 0 ? usable : order.sort((a, b) => a.asideUntil - b.asideUntil)).map((s) => s.node);
  }

  /** True when the node must answer GET / with "ok": true before it gets a request. */
  needsCheck(node: CrateNode): boolean {
    const s = this.#nodes[node.index];
    return s.lastAnswer === 0 || this.#now() - s.lastAnswer > RECHECK_AFTER_MS;
  }

  /** Runs `check` once for concurrent callers of the same node. */
  check(node: CrateNode, check: () => Promise<void>): Promise<void> {
    const s = this.#nodes[node.index];
    s.checking ??= check().finally(() => {
      s.checking = null;
    });
    return s.checking;
  }

  /** The node answered (any HTTP answer: it is up and in the cluster); true when it had failed before. */
  answered(node: CrateNode): boolean {
    const s = this.#nodes[node.index];
    const back = s.failures > 0;
    s.failures = 0;
    s.asideUntil = 0;
    s.lastAnswer = this.#now();
    return back;
  }

  /**
   * The node failed: set aside for a back-off that doubles with each failure in a row, and checked
   * before its next request. Returns the back-off and the failures in a row, this one included.
   */
  setAside(node: CrateNode): { ms: number; failures: number } {
    const s = this.#nodes[node.index];
    const ms = Math.min(NODE_BACKOFF.maxMs, NODE_BACKOFF.baseMs * 2 ** Math.min(s.failures, 20));
    s.failures++;
    s.asideUntil = this.#now() + ms;
    s.lastAnswer = 0;
    return { ms, failures: s.failures };
  }

  /** For status and tests: each node and whether it is set aside now. */
  describe(): Array<{ base: string; aside: boolean; failures: number }> {
    const now = this.#now();
    return this.#nodes.map((s) => ({ base: s.node.base, aside: s.asideUntil > now, failures: s.failures }));
  }
}
