// pg_snapshot text ("xmin:xmax:xip,xip,…") and pg_visible_in_snapshot(), in JavaScript, so the
// window check can test every event against every window without a query each.

export interface Snapshot {
  xmin: number;
  xmax: number;
  xip: Set<number>;
}

export function parseSnapshot(text: string): Snapshot {
  const m = /^(\d+):(\d+):([\d,]*)$/.exec(text.trim());
  if (!m) throw new Error(`not a pg_snapshot: ${JSON.stringify(text)}`);
  const n = (s: string) => {
    const v = Number(s);
    if (!Number.isSafeInteger(v)) throw new Error(`xid ${s} is beyond what the check handles`);
    return v;
  };
  return { xmin: n(m[1]), xmax: n(m[2]), xip: new Set(m[3] === '' ? [] : m[3].split(',').map(n)) };
}

/** Postgres' pg_visible_in_snapshot(xid, snapshot): committed (or aborted) before the snapshot. */
export function visible(s: Snapshot, xid: number): boolean {
  if (xid < s.xmin) return true;
  if (xid >= s.xmax) return false;
  return !s.xip.has(xid);
}
