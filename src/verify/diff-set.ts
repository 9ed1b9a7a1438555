// The differing keys of one table, found by comparing row hashes. Holds at most `cap` keys (memory
// stays bounded however far a target is off); beyond that it only counts, and the report says how
// many differences were not kept (and so neither re-checked nor repaired).
//
// The same key may be found twice when the two sides order keys differently (missing in one range,
// extra in another): it is kept once, as 'different', and the re-check by exact key decides.
import type { KeyRef, RowHash } from './verify-target.js';

export type DiffKind = 'missing' | 'extra' | 'different';
export const DIFF_KINDS: readonly DiffKind[] = ['missing', 'extra', 'different'];

export interface Diff {
  kind: DiffKind;
  /** for 'extra' the target's key, otherwise the source's */
  key: KeyRef;
}

export class DiffSet {
  readonly #cap: number;
  readonly #diffs = new Map<string, Diff>();
  /** differences seen beyond the cap, counted only */
  dropped = 0;

  constructor(cap: number) {
    this.#cap = cap;
  }

  add(kind: DiffKind, key: KeyRef): void {
    const prev = this.#diffs.get(key.text);
    if (prev) {
      if (prev.kind !== kind) this.#diffs.set(key.text, { kind: 'different', key: prev.kind === 'extra' ? key : prev.key });
      return;
    }
    if (this.#diffs.size >= this.#cap) {
      this.dropped++;
      return;
    }
    this.#diffs.set(key.text, { kind, key });
  }

  /** Compares the row hashes of one range (or one set of keys) on both sides. */
  compare(source: readonly RowHash[], target: readonly RowHash[]): void {
    const t = new Map<string, RowHash>();
    for (const h of target) t.set(h.key.text, h);
    for (const s of source) {
      const other = t.get(s.key.text);
      if (!other) this.add('missing', s.key);
      else {
        if (other.hash !== s.hash) this.add('different', s.key);
        t.delete(s.key.text);
      }
    }
    for (const h of t.values()) this.add('extra', h.key);
  }

  /** Kept differences (without the dropped ones). */
  get size(): number {
    return this.#diffs.size;
  }

  /** Kept plus dropped. */
  get total(): number {
    return this.#diffs.size + this.dropped;
  }

  counts(): Record<DiffKind, number> {
    const out: Record<DiffKind, number> = { missing: 0, extra: 0, different: 0 };
    for (const d of this.#diffs.values()) out[d.kind]++;
    return out;
  }

  diffs(): IterableIterator<Diff> {
    return this.#diffs.values();
  }

  keys(kind?: DiffKind): KeyRef[] {
    const out: KeyRef[] = [];
    for (const d of this.#diffs.values()) if (!kind || d.kind === kind) out.push(d.key);
    return out;
  }
}
