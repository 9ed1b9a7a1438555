// What `verify` needs from a target (the Postgres target implements it in postgres-target.ts; the
// CrateDB target will too), and the shapes both sides exchange.
//
// The contract. Verify walks the SOURCE in key order and asks the target about the same key ranges.
// For every question both sides must answer in one canonical form, so that equal rows give equal
// hashes whatever each side can hold:
// - 'postgres-md5': both sides compute in SQL md5(jsonb text of the source's columns) with the same
//   session settings (see pg-session.ts); the source casts user-defined types to text, as the
//   Postgres sink stores them. Nothing but hashes crosses the wire.
// - 'client': the target fetches its rows, turns each into a canonical Row (only the source's
//   columns; values as the target holds them: timestamps as epoch ms, exact numbers as text …) and
//   hashes it with rowHashOf() from canonical.ts; the source fetches its rows as JSON (parsed
//   losslessly) and passes each through `normaliseSourceRow`, which the target supplies because only
//   it knows what it cannot hold exactly (microseconds, infinity, …). Range digests are
//   rangeDigestOf() over the row hashes in key order on both sides.
//
// Keys. A KeyRef carries a key two ways: `text`, the canonical key text that must be equal on both
// sides for the same key (keyOf() of the canonical key values), and `json`, a JSON object of the key
// columns that Postgres can cast into the SOURCE's column types (jsonb_populate_record). Range bounds
// from either side are passed as `json` to both sides; a delete event for a row the source lacks
// carries the target's `json`. A target receiving a source key must find the row the sink wrote for
// it (e.g. cut microseconds before looking up a timestamp key).
//
// Ranges are half-open (after, upTo]: after = null starts at the beginning, upTo = null runs to the
// end. Each side orders and compares keys in its own way. Verify only ever bounds the SOURCE by
// source keys and pages the TARGET by its own keys within a range, so a disagreement of the two
// orders (collations, user-defined key types stored as text) can make a row look missing in one
// range and extra in another, but never hides one. Every difference is re-checked by exact key
// lookup before it is reported, so such disagreement costs time, never a false report.
import type { Row, TableInfo } from '../core/change.js';

export interface KeyRef {
  /** canonical key text, equal on both sides for the same key */
  text: string;
  /** the key columns as a JSON object castable into the source's column types */
  json: string;
}

export interface RowHash {
  key: KeyRef;
  hash: string;
}

/** Rows whose key is after `after` and at or before `upTo`; null bounds are open. */
export interface KeyRange {
  after: KeyRef | null;
  upTo: KeyRef | null;
}

export interface RowCounts {
  rows: number;
  /** rows with a NULL in a key column (possible only for configured keys); ranges never include them */
  nullKeys: number;
}

export type DigestForm =
  | { kind: 'postgres-md5' }
  | {
      kind: 'client';
      /**
       * The canonical Row of a source row (parsed losslessly from to_jsonb), exactly as the target's
       * own rows are turned into canonical Rows: the source's columns only, each value as the target
       * can hold it. Pure; never throws on a value (map what cannot be held to a fixed form).
       */
      normaliseSourceRow(row: Row, table: TableInfo): Row;
    };

export interface TargetTableState {
  /** false: the target table does not exist (yet); every question answers as for an empty table */
  exists: boolean;
  /** things worth a line in the report (a source column the target lacks is compared as NULL …) */
  notes: string[];
}

/** A range of the source walk: its rows, their digest, and its last key (the next range starts after it). */
export interface WalkedRange {
  rows: number;
  digest: string;
  last: KeyRef | null;
}

/** The source side of verify, answering in the target's digest form (pg-side.ts). */
export interface VerifySource {
  count(table: TableInfo): Promise<RowCounts>;
  /** the next `limit` rows after `after` in key order: the walk defines ranges this way */
  nextRange(table: TableInfo, after: KeyRef | null, limit: number): Promise<WalkedRange>;
  rowHashes(table: TableInfo, range: KeyRange, limit: number): Promise<RowHash[]>;
  rowHashesByKeys(table: TableInfo, keys: readonly KeyRef[]): Promise<RowHash[]>;
}

/**
 * The target side of verify. All reads see what the sink has written and confirmed; a target that
 * makes writes visible later (CrateDB) does so in refresh(), which verify calls before each phase.
 */
export interface VerifyTarget {
  readonly name: string;
  readonly form: DigestForm;
  /** Looks at the target table once per verify of a table; later calls use what it learned. */
  inspect(table: TableInfo): Promise<TargetTableState>;
  refresh(table: TableInfo): Promise<void>;
  count(table: TableInfo): Promise<RowCounts>;
  /** md5 over the row hashes of the range, in key order (md5 of '' for an empty range) */
  rangeDigest(table: TableInfo, range: KeyRange): Promise<string>;
  /** row hashes of the range in key order, at most `limit`; `after` may be one of this side's own keys (paging) */
  rowHashes(table: TableInfo, range: KeyRange, limit: number): Promise<RowHash[]>;
  /** row hashes of the rows with these keys (keys from either side); absent keys are left out */
  rowHashesByKeys(table: TableInfo, keys: KeyRef[]): Promise<RowHash[]>;
  close(): Promise<void>;
}
