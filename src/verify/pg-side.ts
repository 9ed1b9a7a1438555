// One Postgres side of a verify: the source, or a Postgres target. Both answer the same questions
// with the same SQL (pg-digest-sql.ts) in the digest form the target asks for:
// - 'postgres-md5': hashes and digests are computed in the database; only hashes cross the wire.
// - 'client': rows come as to_jsonb text, are parsed losslessly and normalised (on the source by
//   the target's normaliseSourceRow), then hashed here (canonical.ts).
// Memory: at most `limit` rows (or hashes) of one range are held at a time.
import type pg from 'pg';
import { keyOf, parseRow, type Row, type TableInfo } from '../core/change.js';
import { keyTextOf, rangeDigester, rangeDigestOf, rowHashOf } from './canonical.js';
import {
  countSql, nextRangeSql, pgVerifyTable, rangeDigestSql, rowHashesByKeysSql, rowHashesSql, type PgVerifyTable,
} from './pg-digest-sql.js';
import { querySettled } from '../core/pg-session.js';
import type { DigestForm, KeyRange, KeyRef, RowCounts, RowHash, VerifySource, WalkedRange } from './verify-target.js';

/** How a client-form side turns one of its rows into a canonical Row. */
export type RowNormaliser = (row: Row, table: TableInfo) => Row;

const KEY_BATCH = 1000;

export class PgSide implements VerifySource {
  readonly #pool: pg.Pool;
  readonly #side: 'source' | 'target';
  readonly #form: DigestForm['kind'];
  readonly #normalise: RowNormaliser | null;
  readonly #missing: (t: TableInfo) => ReadonlySet<string>;

  constructor(pool: pg.Pool, side: 'source' | 'target', form: DigestForm, opts: { normalise?: RowNormaliser; missing?: (t: TableInfo) => ReadonlySet<string> } = {}) {
    this.#pool = pool;
    this.#side = side;
    this.#form = form.kind;
    this.#normalise = form.kind === 'client' ? (opts.normalise ?? (side === 'source' ? form.normaliseSourceRow : null)) : null;
    if (form.kind === 'client' && !this.#normalise) throw new TypeError('a client-form side needs a row normaliser');
    this.#missing = opts.missing ?? (() => new Set());
  }

  #sql(t: TableInfo): PgVerifyTable {
    return pgVerifyTable(t, this.#side, this.#missing(t));
  }

  async count(t: TableInfo): Promise<RowCounts> {
    const [r] = await querySettled<{ rows: string; null_keys: string }>(this.#pool, countSql(this.#sql(t)));
    return { rows: Number(r.rows), nullKeys: Number(r.null_keys) };
  }

  /** The next `limit` rows after `after` in key order (the source walk defines ranges this way). */
  async nextRange(t: TableInfo, after: KeyRef | null, limit: number): Promise<WalkedRange> {
    if (this.#form === 'postgres-md5') {
      const q = nextRangeSql(this.#sql(t), after, limit);
      const [r] = await querySettled<{ n: number; digest: string; last: string | null }>(this.#pool, q.sql, q.params);
      return { rows: r.n, digest: r.digest, last: r.last === null ? null : this.#keyRef(t, r.last) };
    }
    const hashes = await this.rowHashes(t, { after, upTo: null }, limit);
    return { rows: hashes.length, digest: rangeDigestOf(hashes.map((h) => h.hash)), last: hashes.at(-1)?.key ?? null };
  }

  async rangeDigest(t: TableInfo, range: KeyRange, pageRows = 10_000): Promise<string> {
    if (this.#form === 'postgres-md5') {
      const q = rangeDigestSql(this.#sql(t), range);
      const [r] = await querySettled<{ digest: string }>(this.#pool, q.sql, q.params);
      return r.digest;
    }
    // Client form: page through the range by this side's own keys, hashing as we go.
    const digest = rangeDigester();
    let after = range.after;
    for (;;) {
      const page = await this.rowHashes(t, { after, upTo: range.upTo }, pageRows);
      for (const h of page) digest.add(h.hash);
      if (page.length < pageRows) break;
      after = page[page.length - 1].key;
    }
    return digest.digest();
  }

  async rowHashes(t: TableInfo, range: KeyRange, limit: number): Promise<RowHash[]> {
    const q = rowHashesSql(this.#sql(t), range, limit, this.#form === 'client');
    return this.#hashes(t, await querySettled<{ k: string; h?: string; r?: string }>(this.#pool, q.sql, q.params));
  }

  async rowHashesByKeys(t: TableInfo, keys: readonly KeyRef[]): Promise<RowHash[]> {
    const out: RowHash[] = [];
    for (let i = 0; i < keys.length; i += KEY_BATCH) {
      const q = rowHashesByKeysSql(this.#sql(t), keys.slice(i, i + KEY_BATCH), this.#form === 'client');
      out.push(...this.#hashes(t, await querySettled<{ k: string; h?: string; r?: string }>(this.#pool, q.sql, q.params)));
    }
    return out;
  }

  #keyRef(t: TableInfo, json: string): KeyRef {
    return { text: keyOf(parseRow(json), t.keyColumns), json };
  }

  #hashes(t: TableInfo, rows: { k: string; h?: string; r?: string }[]): RowHash[] {
    if (this.#form === 'postgres-md5') return rows.map((r) => ({ key: this.#keyRef(t, r.k), hash: r.h! }));
    return rows.map((r) => {
      const canonical = this.#normalise!(parseRow(r.r!), t);
      return { key: { text: keyTextOf(canonical, t.keyColumns), json: r.k }, hash: rowHashOf(canonical) };
    });
  }
}
