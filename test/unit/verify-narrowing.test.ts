// verifyTable over in-memory sides: it ends and finds exactly the true differences whatever order
// each side keeps its keys in, holds no more than a range of rows per answer, and splits a range the
// source outgrew since the walk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TableInfo } from '../../src/core/change.js';
import { createLogger } from '../../src/core/logger.js';
import { rangeDigestOf } from '../../src/verify/canonical.js';
import { DEFAULT_SETTINGS, verifyTable } from '../../src/verify/verify.js';
import type { KeyRange, KeyRef, RowCounts, RowHash, VerifySource, VerifyTarget, WalkedRange } from '../../src/verify/verify-target.js';

const TABLE: TableInfo = {
  id: 1, relid: 1, sourceSchema: 'public', sourceTable: 't', targetSchema: 'public', targetTable: 't', keyColumns: ['w'],
  columns: [{ name: 'w', type: 'text', baseType: 'text', baseFormatted: 'text', dims: 0, typtype: 'b', notNull: true }],
};
const logger = createLogger('silent');

type Compare = (a: string, b: string) => number;
const codeUnits: Compare = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const reversed: Compare = (a, b) => codeUnits(b, a);
const caseless: Compare = (a, b) => codeUnits(a.toLowerCase(), b.toLowerCase()) || codeUnits(a, b);

const ref = (w: string): KeyRef => ({ text: JSON.stringify([w]), json: JSON.stringify({ w }) });
const wOf = (k: KeyRef): string => (JSON.parse(k.json) as { w: string }).w;

/** One side: rows (key → hash) kept in its own order; records the largest answer it gave. */
class MemorySide implements VerifySource, VerifyTarget {
  readonly name = 'memory';
  readonly form = { kind: 'postgres-md5' } as const;
  largestAnswer = 0;
  onWalk: (() => void) | null = null;
  constructor(readonly rows: Map<string, string>, readonly cmp: Compare) {}
  #in(w: string, r: KeyRange): boolean {
    return (r.after === null || this.cmp(w, wOf(r.after)) > 0) && (r.upTo === null || this.cmp(w, wOf(r.upTo)) <= 0);
  }
  #range(r: KeyRange, limit = Infinity): RowHash[] {
    const out = [...this.rows.keys()].filter((w) => this.#in(w, r)).sort(this.cmp).slice(0, limit).map((w) => ({ key: ref(w), hash: this.rows.get(w)! }));
    if (Number.isFinite(limit)) this.largestAnswer = Math.max(this.largestAnswer, out.length);
    return out;
  }
  async inspect() { return { exists: true, notes: [] }; }
  async refresh() {}
  async count(): Promise<RowCounts> { return { rows: this.rows.size, nullKeys: 0 }; }
  async nextRange(_t: TableInfo, after: KeyRef | null, limit: number): Promise<WalkedRange> {
    const rows = this.#range({ after, upTo: null }, limit);
    this.onWalk?.();
    return { rows: rows.length, digest: rangeDigestOf(rows.map((r) => r.hash)), last: rows.at(-1)?.key ?? null };
  }
  async rangeDigest(_t: TableInfo, r: KeyRange) { return rangeDigestOf(this.#range(r).map((h) => h.hash)); }
  async rowHashes(_t: TableInfo, r: KeyRange, limit: number) { return this.#range(r, limit); }
  async rowHashesByKeys(_t: TableInfo, keys: readonly KeyRef[]) {
    return keys.filter((k) => this.rows.has(wOf(k))).map((k) => ({ key: ref(wOf(k)), hash: this.rows.get(wOf(k))! }));
  }
  async close() {}
}

function words(n: number, prefix = ''): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}${String.fromCharCode(65 + (i % 26))}${i % 2 ? String.fromCharCode(97 + (i % 23)) : ''}${i}`);
}

async function run(source: MemorySide, target: MemorySide, rangeRows: number) {
  return verifyTable({
    table: TABLE, source, target, logger, settings: { ...DEFAULT_SETTINGS, rangeRows },
    waitForReplicator: async () => 'no-replicator',
    writeRepair: async () => { throw new Error('no repair in these tests'); },
  });
}

for (const [name, cmp] of [['the same order', codeUnits], ['a case-insensitive order', caseless], ['the reverse order', reversed]] as const) {
  test(`with the target in ${name}, exactly the true differences are found, answers stay within a range`, async () => {
    const keys = words(300);
    const source = new MemorySide(new Map(keys.map((w) => [w, `h-${w}`])), codeUnits);
    const t = new Map(source.rows);
    const missing = keys.filter((_, i) => i % 29 === 3);
    const different = keys.filter((_, i) => i % 31 === 5);
    const extra = [...words(40, 'x'), ...words(25, '~')]; // a run after the source's last key as well
    for (const w of missing) t.delete(w);
    for (const w of different) t.set(w, 'changed');
    for (const w of extra) t.set(w, `h-${w}`);
    const target = new MemorySide(t, cmp);
    const R = 7;
    const report = await run(source, target, R);
    const sorted = (ws: string[]) => ws.map((w) => JSON.stringify({ w })).sort();
    assert.deepEqual([...report.differences.missing.keys].sort(), sorted(missing));
    assert.deepEqual([...report.differences.different.keys].sort(), sorted(different));
    assert.equal(report.differences.extra.count, extra.length);
    assert.ok(source.largestAnswer <= R + 1 && target.largestAnswer <= R + 1, `largest answers ${source.largestAnswer}/${target.largestAnswer}`);
  });
}

test('a range the source outgrew after the walk is split, and the rows added are found', async () => {
  const keys = words(60);
  const source = new MemorySide(new Map(keys.map((w) => [w, `h-${w}`])), codeUnits);
  const target = new MemorySide(new Map(source.rows), codeUnits);
  target.rows.delete('A0'); // so that the first range differs and is narrowed
  const added = words(30, 'A'); // 'AA0' … sort inside the first range, which the walk read before they came
  source.onWalk = () => { for (const w of added) source.rows.set(w, `h-${w}`); source.onWalk = null; };
  const report = await run(source, target, 5);
  assert.equal(report.differences.missing.count, added.length + 1);
  assert.equal(report.differences.extra.count + report.differences.different.count, 0);
  assert.equal(source.largestAnswer, 6, 'the source answered one row over a range: the range was split');
});
