// The CrateDB target of verify, in the 'client' digest form: CrateDB has no md5 over rows, so rows
// are read over HTTP (numbers parsed losslessly; bigint and numeric as ::TEXT), turned into the
// canonical Row of what CrateDB holds (cratedb-normalise.ts), and hashed here. The source turns its
// rows into the same form through `form.normaliseSourceRow`, which applies the sink's own value
// conversion and then the same normalisation, so only what CrateDB cannot hold exactly (timestamps in
// milliseconds, quantised geo points …) is forgiven.
//
// Reads. Ranges: `WHERE key > after AND key <= upTo ORDER BY key LIMIT n`, the row comparison
// spelled out (key-range.ts lexicographicCondition). Lookups by key: `k = ANY(?)` (composite keys:
// an OR of `(a = ? AND b = ?)`), which are searches and see only refreshed rows, so they refresh
// first. Visibility: verify calls refresh() (REFRESH TABLE) before each phase.
//
// Memory: one page of at most `limit` (or PAGE_ROWS for digests) rows at a time.
//
// A target table that does not exist yet answers as empty; a source column it lacks is read as
// NULL (a column added with NULLs everywhere compares equal, one added with values does not). A
// table with soft deletes (table-shape.ts) is compared by its live rows (deletion time NULL).
import type { JsonValue, TableInfo } from '../core/change.js';
import { displayName } from '../core/identifiers.js';
import type { Logger } from '../core/logger.js';
import type { PlanOptions } from '../sink/cratedb/column-types.js';
import { CrateClient, type CrateConnection } from '../sink/cratedb/crate-client.js';
import { COLUMNS_QUERY } from '../sink/cratedb/sql.js';
import { crateColumnName } from '../sink/cratedb/names.js';
import { quoteIdent } from '../core/identifiers.js';
import { keyTextOf, md5Hex, rangeDigester, rowHashOf } from './canonical.js';
import { crateReadPlan, keyParams, normaliseSourceRow, targetKeyJson, targetRow, type CrateReadPlan } from './cratedb-normalise.js';
import { lexicographicCondition, type SqlPart } from './key-range.js';
import type { DigestForm, KeyRange, KeyRef, RowCounts, RowHash, TargetTableState, VerifyTarget } from './verify-target.js';

/** rows per request when a range is digested page by page */
const PAGE_ROWS = 10_000;
/** keys per lookup request: one array parameter for a single key column, an OR of (ANDs of) equalities otherwise */
const LOOKUP_KEYS = 1000;
const LOOKUP_COMPOSITE_KEYS = 100;

export interface CrateVerifyTargetOptions {
  /** the sink's value mapping (crate.jsonColumn, crate.textColumn) */
  plan: PlanOptions;
  logger?: Logger;
}

export function crateVerifyTarget(conn: CrateConnection, opts: CrateVerifyTargetOptions): VerifyTarget {
  return new CrateVerifyTarget(conn, opts);
}

/** The bounds of a range on the key's compare expressions (pure). */
export function rangeConditionSql(plan: CrateReadPlan, range: KeyRange): SqlPart {
  const names = plan.keys.map((k) => k.info.name);
  const compare = new Map(plan.keys.map((k) => [k.info.name, k.compare]));
  const quote = (c: string) => compare.get(c)!;
  const parts: string[] = [];
  const params: unknown[] = [];
  for (const [bound, op] of [[range.after, '>'], [range.upTo, '<=']] as const) {
    if (!bound) continue;
    const values = keyParams(plan, bound.json, 'bound');
    if (!values) throw new TypeError('a key range bound has a NULL key value');
    const c = lexicographicCondition(names, op, values, { quote });
    parts.push(c.sql);
    params.push(...c.params);
  }
  return { sql: parts.length > 0 ? parts.join(' AND ') : 'true', params };
}

/** ` AND <deletion time> IS NULL` for a table with soft deletes, '' otherwise: the rows that count. */
export function liveRowsSql(t: TableInfo): string {
  return t.shape?.deletes === 'soft' ? ` AND ${quoteIdent(crateColumnName(t.shape.deletedAtColumn))} IS NULL` : '';
}

/** Rows of a range in key order, at most `limit`. */
export function rangeSelectSql(plan: CrateReadPlan, range: KeyRange, limit: number): SqlPart {
  const cond = rangeConditionSql(plan, range);
  return {
    sql: `SELECT ${plan.columns.map((c) => c.select).join(', ')} FROM ${plan.qualified} WHERE ${cond.sql}${liveRowsSql(plan.table)}` +
      ` ORDER BY ${plan.keys.map((k) => k.compare).join(', ')} LIMIT ?`,
    params: [...cond.params, limit],
  };
}

/** Rows with these keys (CrateDB values from keyParams(…, 'lookup')), compared natively; `c = ANY(?)` where CrateDB allows it. */
export function lookupSql(plan: CrateReadPlan, keys: readonly JsonValue[][]): SqlPart {
  const select = `SELECT ${plan.columns.map((c) => c.select).join(', ')} FROM ${plan.qualified} WHERE `;
  const live = liveRowsSql(plan.table);
  const cols = plan.keys.map((k) => k.column);
  if (cols.length === 1 && plan.keys[0].anyLookup) return { sql: `${select}${cols[0]} = ANY(?)${live}`, params: [keys.map((k) => k[0])] };
  const one = `(${cols.map((c) => `${c} = ?`).join(' AND ')})`;
  const any = keys.map(() => one).join(' OR ');
  return { sql: select + (live ? `(${any})${live}` : any), params: keys.flat() };
}

class CrateVerifyTarget implements VerifyTarget {
  readonly name = 'cratedb';
  readonly form: DigestForm;
  readonly #client: CrateClient;
  readonly #opts: PlanOptions;
  readonly #log: Logger | undefined;
  readonly #plans = new Map<string, CrateReadPlan>();

  constructor(conn: CrateConnection, opts: CrateVerifyTargetOptions) {
    this.#log = opts.logger?.child({ component: 'verify-cratedb' });
    this.#client = new CrateClient(conn, { maxSockets: 4, log: this.#log });
    this.#opts = opts.plan;
    this.form = { kind: 'client', normaliseSourceRow: (row, t) => normaliseSourceRow(this.#planNow(t), row) };
  }

  /** The plan inspect() made for these columns; before it, one assuming the table as the sink creates it. */
  #planNow(t: TableInfo): CrateReadPlan {
    const known = this.#plans.get(id(t));
    return known && sameColumns(known.table, t) ? known : crateReadPlan(t, this.#opts, undefined);
  }

  async #plan(t: TableInfo): Promise<CrateReadPlan> {
    const known = this.#plans.get(id(t));
    if (known && sameColumns(known.table, t)) return known;
    await this.inspect(t);
    return this.#plans.get(id(t))!;
  }

  async inspect(t: TableInfo): Promise<TargetTableState> {
    // The names in TableInfo are CrateDB's already (mapped when the table was added).
    const res = await this.#client.sql(COLUMNS_QUERY, [t.targetSchema, t.targetTable]);
    const types = new Map(res.rows.map((r) => [String(r[0]), String(r[1])]));
    const plan = crateReadPlan(t, this.#opts, types.size > 0 ? types : null);
    this.#plans.set(id(t), plan);
    const notes: string[] = [];
    if (!plan.exists) notes.push(`target table ${displayName(t.targetSchema, t.targetTable)} does not exist; compared as empty`);
    else if (plan.missing.length > 0) notes.push(`target lacks column(s) ${plan.missing.join(', ')}; compared as NULL`);
    return { exists: plan.exists, notes };
  }

  async refresh(t: TableInfo): Promise<void> {
    const plan = await this.#plan(t);
    if (!plan.exists) return;
    const started = Date.now();
    await this.#client.sql(`REFRESH TABLE ${plan.qualified}`);
    this.#log?.debug({ table: displayName(t.targetSchema, t.targetTable), durationMs: Date.now() - started }, 'refreshed target table');
  }

  async count(t: TableInfo): Promise<RowCounts> {
    const plan = await this.#plan(t);
    if (!plan.exists) return { rows: 0, nullKeys: 0 };
    const res = await this.#client.sql(`SELECT count(*) FROM ${plan.qualified} WHERE true${liveRowsSql(t)}`);
    // A CrateDB primary key column cannot hold NULL.
    return { rows: Number(res.rows[0][0]), nullKeys: 0 };
  }

  async rangeDigest(t: TableInfo, range: KeyRange): Promise<string> {
    const plan = await this.#plan(t);
    if (!plan.exists) return md5Hex('');
    const digest = rangeDigester();
    let after = range.after;
    for (;;) {
      const page = await this.#rows(plan, { after, upTo: range.upTo }, PAGE_ROWS);
      for (const h of page) digest.add(h.hash);
      if (page.length < PAGE_ROWS) break;
      after = page[page.length - 1].key;
    }
    return digest.digest();
  }

  async rowHashes(t: TableInfo, range: KeyRange, limit: number): Promise<RowHash[]> {
    const plan = await this.#plan(t);
    return plan.exists ? this.#rows(plan, range, limit) : [];
  }

  async rowHashesByKeys(t: TableInfo, keys: KeyRef[]): Promise<RowHash[]> {
    const plan = await this.#plan(t);
    if (!plan.exists || keys.length === 0) return [];
    // Lookups of many keys are searches: only refreshed rows are seen.
    await this.refresh(t);
    const wanted = new Map<string, JsonValue[]>();
    for (const k of keys) {
      const values = keyParams(plan, k.json, 'lookup');
      // A key the sink would never write (a sub-millisecond timestamp …) has no row here.
      if (values) wanted.set(JSON.stringify(values.map((v) => (typeof v === 'object' && v !== null ? String(v) : v))), values);
    }
    const all = [...wanted.values()];
    const batch = plan.keys.length === 1 && plan.keys[0].anyLookup ? LOOKUP_KEYS : LOOKUP_COMPOSITE_KEYS;
    const out: RowHash[] = [];
    for (let i = 0; i < all.length; i += batch) {
      const q = lookupSql(plan, all.slice(i, i + batch));
      const res = await this.#client.sql(q.sql, q.params as JsonValue[]);
      for (const r of res.rows) out.push(this.#hashOf(plan, r));
    }
    return out;
  }

  async #rows(plan: CrateReadPlan, range: KeyRange, limit: number): Promise<RowHash[]> {
    const q = rangeSelectSql(plan, range, limit);
    const res = await this.#client.sql(q.sql, q.params as JsonValue[]);
    return res.rows.map((r) => this.#hashOf(plan, r));
  }

  #hashOf(plan: CrateReadPlan, values: JsonValue[]): RowHash {
    const row = targetRow(plan, values);
    return { key: { text: keyTextOf(row, plan.table.keyColumns), json: targetKeyJson(plan, row) }, hash: rowHashOf(row) };
  }

  async close(): Promise<void> {
    this.#client.close();
  }
}

function sameColumns(a: TableInfo, b: TableInfo): boolean {
  if (a === b) return true;
  return a.columns.length === b.columns.length && a.columns.every((c, i) => c.name === b.columns[i].name && c.type === b.columns[i].type) &&
    a.keyColumns.join('\u0000') === b.keyColumns.join('\u0000');
}

function id(t: TableInfo): string {
  return `${t.targetSchema}\u0000${t.targetTable}`;
}
